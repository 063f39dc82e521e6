package aws_test

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/fairlead-lb/fairlead/providers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/kit"
)

func (e *env) eip(t *testing.T, o fairaws.EIPOptions) *fairaws.EIP {
	t.Helper()
	o.ClusterName = cluster
	p, err := fairaws.NewEIP(clientsFor(t, e.proxy.URL), o)
	if err != nil {
		t.Fatalf("NewEIP: %v", err)
	}
	return p
}

func svcNamed(name string) *providers.Service {
	return &providers.Service{Namespace: "shop", Name: name, Families: []string{"IPv4"},
		Ports: []providers.Port{{Protocol: "TCP", Port: 80}}}
}

func oneIP(t *testing.T, ing providers.Ingress) netip.Addr {
	t.Helper()
	if len(ing.IPs) != 1 || ing.Hostname != "" {
		t.Fatalf("ingress = %+v, want one IP", ing)
	}
	return ing.IPs[0]
}

func TestEIPOnDemandLifecycle(t *testing.T) {
	e := newEnv(t)
	p := e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true})
	ip := oneIP(t, mustEnsure(t, p, svcNamed("web")))
	if got := e.inventory(t).ElasticIPs; !reflect.DeepEqual(got, []string{ip.String() + " shop/web"}) {
		t.Fatalf("Elastic IPs = %v, want %s tagged shop/web", got, ip)
	}
	// A restarted controller gets the same address, allocates nothing.
	if again := oneIP(t, mustEnsure(t, e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true}), svcNamed("web"))); again != ip {
		t.Fatalf("after restart: %s, want %s", again, ip)
	}
	if n, _ := e.proxy.Count("AllocateAddress"); n != 1 {
		t.Fatalf("AllocateAddress called %d times, want 1", n)
	}
	other := oneIP(t, mustEnsure(t, p, svcNamed("api")))
	if other == ip {
		t.Fatalf("two Services got %s", ip)
	}
	if owned, err := p.Owned(ctxFor(t)); err != nil || !reflect.DeepEqual(owned, []string{"shop/api", "shop/web"}) {
		t.Fatalf("Owned = %v, %v", owned, err)
	}
	if _, err := p.Ensure(ctxFor(t), &providers.Service{Namespace: "shop", Name: "v6", Families: []string{"IPv6"}}); providers.ReasonOf(err) != providers.ReasonInvalidService {
		t.Fatalf("IPv6 Service: %v, want reason %s", err, providers.ReasonInvalidService)
	}
	mustRelease(t, p, "shop/web")
	mustRelease(t, p, "shop/api")
	mustRelease(t, p, "shop/api")
	assertEmpty(t, e)
}

// Addresses an operator allocated and tagged with a pool are adopted, returned to the pool on
// release (never released to AWS), and the pool running dry is reported.
func TestEIPAdoptFromPool(t *testing.T) {
	e := newEnv(t)
	var pool []string
	for range 2 {
		out, err := e.direct.EC2.AllocateAddress(context.Background(), &ec2.AllocateAddressInput{
			Domain: ec2types.DomainTypeVpc,
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeElasticIp,
				Tags: []ec2types.Tag{{Key: aws.String(fairaws.TagPool), Value: aws.String("public")}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		pool = append(pool, aws.ToString(out.PublicIp))
	}
	p := e.eip(t, fairaws.EIPOptions{Pool: "public"})
	a := oneIP(t, mustEnsure(t, p, svcNamed("a")))
	b := oneIP(t, mustEnsure(t, p, svcNamed("b")))
	if a == b || !contains(pool, a.String()) || !contains(pool, b.String()) {
		t.Fatalf("adopted %s and %s, want the two pool addresses %v", a, b, pool)
	}
	_, err := p.Ensure(ctxFor(t), svcNamed("c"))
	if providers.ReasonOf(err) != providers.ReasonExhausted {
		t.Fatalf("third Service from a pool of two: %v, want reason %s", err, providers.ReasonExhausted)
	}
	mustRelease(t, p, "shop/a")
	if got := oneIP(t, mustEnsure(t, p, svcNamed("c"))); got != a {
		t.Fatalf("after a's release c got %s, want a's returned %s", got, a)
	}
	mustRelease(t, p, "shop/b")
	mustRelease(t, p, "shop/c")
	inv := e.inventory(t)
	want := []string{pool[0] + " ", pool[1] + " "}
	if !sameSet(inv.ElasticIPs, want) {
		t.Fatalf("Elastic IPs = %q, want the pool's two, untagged for any Service: %q", inv.ElasticIPs, want)
	}
}

// The speaker of the elected node associates the address with its interface; a failover moves
// it with one call; stepping down only detaches an address that still points at the node.
func TestEIPAssociateAndFailover(t *testing.T) {
	e := newEnv(t)
	p := e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true})
	ctx := ctxFor(t)
	ip := oneIP(t, mustEnsure(t, p, svcNamed("web")))
	n1, n2 := e.nodes[0], e.nodes[1]

	at1, err := p.InterfaceFor(ctx, n1.instanceID, n1.privateIP)
	if err != nil || at1.NetworkInterfaceID != n1.eni {
		t.Fatalf("InterfaceFor(%s) = %+v, %v; want %s", n1.instanceID, at1, err, n1.eni)
	}
	at2, err := p.InterfaceFor(ctx, n2.instanceID, n2.privateIP)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := p.Where(ctx, ip); err != nil || ok {
		t.Fatalf("Where before association: %v, %v; want not associated", ok, err)
	}
	if err := p.Associate(ctx, ip, at1); err != nil {
		t.Fatal(err)
	}
	assertWhere(t, e, ip, n1)
	before, _ := e.proxy.Count("AssociateAddress")
	if err := p.Associate(ctx, ip, at1); err != nil {
		t.Fatal(err)
	}
	if after, _ := e.proxy.Count("AssociateAddress"); after != before {
		t.Fatalf("re-associating where it already is called AssociateAddress")
	}

	// Failover: n2 wins the election and takes the address.
	if err := p.Associate(ctx, ip, at2); err != nil {
		t.Fatal(err)
	}
	assertWhere(t, e, ip, n2)
	// AWS refuses to move an associated address unless AllowReassociation is set
	// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AssociateAddress.html); moto
	// 5.2.1 moves it either way, so check the request itself.
	calls := e.proxy.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if c := calls[i]; c.Action == "AssociateAddress" {
			if c.Params.Get("AllowReassociation") != "true" || c.Params.Get("NetworkInterfaceId") != n2.eni ||
				c.Params.Get("PrivateIpAddress") != n2.privateIP.String() {
				t.Fatalf("failover AssociateAddress asked %v, want AllowReassociation=true to %s/%s", c.Params, n2.eni, n2.privateIP)
			}
			break
		}
	}
	// n1, stepping down late, must not detach it from n2.
	if err := p.Disassociate(ctx, ip, at1); err != nil {
		t.Fatal(err)
	}
	assertWhere(t, e, ip, n2)

	// Only this cluster's Service addresses can be moved.
	if err := p.Associate(ctx, netip.MustParseAddr("203.0.113.9"), at1); providers.ReasonOf(err) != providers.ReasonConflict {
		t.Fatalf("Associate of an unknown address: %v, want reason %s", err, providers.ReasonConflict)
	}

	// A throttled move is retried.
	e.proxy.Inject(awsapi.Fault{Service: "ec2", Action: "AssociateAddress", Kind: awsapi.Throttle, Times: 2})
	if err := p.Associate(ctx, ip, at1); err != nil {
		t.Fatalf("Associate with throttling: %v", err)
	}
	assertWhere(t, e, ip, n1)

	// Release while associated: detached, then released.
	mustRelease(t, p, "shop/web")
	assertEmpty(t, e)
}

// A lost AllocateAddress answer makes the SDK allocate again: the extra address, tagged for the
// Service like the first, is released and the Service keeps one.
func TestEIPLostAllocateAnswer(t *testing.T) {
	e := newEnv(t)
	p := e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true})
	e.proxy.Inject(awsapi.Fault{Service: "ec2", Action: "AllocateAddress", Kind: awsapi.DropAfter, Times: 1})
	ip := oneIP(t, mustEnsure(t, p, svcNamed("web")))
	if n, _ := e.proxy.Count("AllocateAddress"); n != 2 {
		t.Fatalf("AllocateAddress called %d times, want 2 (a lost answer, then the retry)", n)
	}
	if got := e.inventory(t).ElasticIPs; !reflect.DeepEqual(got, []string{ip.String() + " shop/web"}) {
		t.Fatalf("Elastic IPs = %v, want only %s", got, ip)
	}
	mustRelease(t, p, "shop/web")
	assertEmpty(t, e)
}

func assertWhere(t *testing.T, e *env, ip netip.Addr, n node) {
	t.Helper()
	out, err := e.direct.EC2.DescribeAddresses(context.Background(), &ec2.DescribeAddressesInput{PublicIps: []string{ip.String()}})
	if err != nil || len(out.Addresses) != 1 {
		t.Fatalf("DescribeAddresses(%s): %v", ip, err)
	}
	a := out.Addresses[0]
	if aws.ToString(a.NetworkInterfaceId) != n.eni || aws.ToString(a.PrivateIpAddress) != n.privateIP.String() {
		t.Fatalf("%s is associated with %s/%s, want %s/%s", ip, aws.ToString(a.NetworkInterfaceId), aws.ToString(a.PrivateIpAddress), n.eni, n.privateIP)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

// Two processes (fairlead-ccm and fairlead-controller, two replicas during a leader hand-over,
// a controller restarted mid-call) can ensure one new Service at the same time; each finds no
// Elastic IP and allocates one. Both must keep the same one, or each releases the other's and
// the Service is left with none.
func TestEIPConcurrentEnsures(t *testing.T) {
	e := newEnv(t)
	// Separate clients, as two processes have.
	a := e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true})
	b := e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true})
	// AllocateAddress answers late, so both calls have read "no address" before either
	// allocation lands; the reads after allocating answer late too, so each call sees both
	// allocations (the case where every caller decides from the same set).
	e.proxy.Inject(awsapi.Fault{Service: "ec2", Action: "AllocateAddress", Kind: awsapi.Delay, Delay: time.Second, Times: 2})
	e.proxy.Inject(awsapi.Fault{Service: "ec2", Action: "DescribeAddresses", Kind: awsapi.Delay, Delay: 500 * time.Millisecond, Skip: 2, Times: 2})

	var wg sync.WaitGroup
	start := make(chan struct{})
	got := make([]providers.Ingress, 2)
	errs := make([]error, 2)
	for i, p := range []*fairaws.EIP{a, b} {
		wg.Go(func() {
			<-start
			got[i], errs[i] = p.Ensure(ctxFor(t), svcNamed("web"))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Ensure %d: %v", i, err)
		}
	}
	if n, _ := e.proxy.Count("AllocateAddress"); n != 2 {
		t.Fatalf("AllocateAddress called %d times, want 2: the calls did not overlap", n)
	}
	ipA, ipB := oneIP(t, got[0]), oneIP(t, got[1])
	if ipA != ipB {
		t.Errorf("the two calls reported %s and %s, want the same address", ipA, ipB)
	}
	if inv := e.inventory(t).ElasticIPs; !reflect.DeepEqual(inv, []string{ipA.String() + " shop/web"}) {
		t.Errorf("Elastic IPs = %q, want only %s tagged shop/web", inv, ipA)
	}
	mustRelease(t, a, "shop/web")
	assertEmpty(t, e)
}

// A Service found with two Elastic IPs (left by calls that overlapped, or by a lost answer)
// keeps the one its status shows, whatever the allocation IDs: that is the one clients use.
// Without a status, every caller keeps the lowest allocation ID.
func TestEIPDuplicatesKeepOne(t *testing.T) {
	e := newEnv(t)
	p := e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true})
	type address struct{ id, ip string }
	allocate := func() address {
		t.Helper()
		out, err := e.direct.EC2.AllocateAddress(context.Background(), &ec2.AllocateAddressInput{
			Domain: ec2types.DomainTypeVpc,
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{
				{Key: aws.String(fairaws.TagCluster), Value: aws.String(cluster)},
				{Key: aws.String(fairaws.TagService), Value: aws.String("shop/web")},
			}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return address{aws.ToString(out.AllocationId), aws.ToString(out.PublicIp)}
	}
	pair := func() (low, high address) {
		x, y := allocate(), allocate()
		if x.id > y.id {
			x, y = y, x
		}
		return x, y
	}

	low, high := pair()
	svc := svcNamed("web")
	svc.StatusIPs = []netip.Addr{netip.MustParseAddr(high.ip)}
	if got := oneIP(t, mustEnsure(t, p, svc)).String(); got != high.ip {
		t.Errorf("with %s in status: kept %s, want %s (the lowest allocation ID is %s's)", high.ip, got, high.ip, low.ip)
	}
	if inv := e.inventory(t).ElasticIPs; !reflect.DeepEqual(inv, []string{high.ip + " shop/web"}) {
		t.Errorf("Elastic IPs = %q, want only %s", inv, high.ip)
	}
	mustRelease(t, p, "shop/web")

	low, high = pair()
	if got := oneIP(t, mustEnsure(t, p, svcNamed("web"))).String(); got != low.ip {
		t.Errorf("no status: kept %s, want %s (allocation ID %s, below %s)", got, low.ip, low.id, high.id)
	}
	if inv := e.inventory(t).ElasticIPs; !reflect.DeepEqual(inv, []string{low.ip + " shop/web"}) {
		t.Errorf("Elastic IPs = %q, want only %s", inv, low.ip)
	}
	mustRelease(t, p, "shop/web")
	assertEmpty(t, e)
}

// When one call reads the Service's addresses before an overlapping call's copy exists, it
// returns its own, the only one it saw, and its caller writes that into the Service's status.
// The later call then sees both; if it keeps the other one, it must still not release the
// first call's copy, or the status names an address that is gone. The next Ensure keeps the
// one the status shows and releases the other.
func TestEIPConcurrentEnsureSawOnlyItsOwn(t *testing.T) {
	e := newEnv(t)
	a := e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true})
	b := e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true})
	exists := func(ip netip.Addr, key string) bool {
		return contains(e.inventory(t).ElasticIPs, ip.String()+" "+key)
	}
	// Which call keeps which depends on the allocation IDs moto draws: the case that matters,
	// the later call keeping its own copy, comes once in two tries.
	for i := range 12 {
		name := fmt.Sprintf("web-%d", i)
		key := "shop/" + name
		// b has read "no address" and its AllocateAddress is on its way while a runs whole.
		e.proxy.Inject(awsapi.Fault{Service: "ec2", Action: "AllocateAddress", Kind: awsapi.Delay, Delay: 2 * time.Second, Times: 1})
		before, _ := e.proxy.Count("AllocateAddress")
		var late providers.Ingress
		var lateErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			late, lateErr = b.Ensure(ctxFor(t), svcNamed(name))
		}()
		kit.Eventually(t, 10*time.Second, "b's AllocateAddress at the proxy", func(context.Context) error {
			if n, _ := e.proxy.Count("AllocateAddress"); n == before {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		first := oneIP(t, mustEnsure(t, a, svcNamed(name)))
		<-done
		if lateErr != nil {
			t.Fatalf("%s: the later Ensure: %v", key, lateErr)
		}
		second := oneIP(t, late)
		for _, ip := range []netip.Addr{first, second} {
			if !exists(ip, key) {
				t.Fatalf("%s: the calls reported %s and %s; %s is no longer allocated for the Service: %q", key, first, second, ip, e.inventory(t).ElasticIPs)
			}
		}
		if first == second {
			mustRelease(t, a, key)
			continue
		}
		// The first call's status write came last.
		svc := svcNamed(name)
		svc.StatusIPs = []netip.Addr{first}
		if got := oneIP(t, mustEnsure(t, e.eip(t, fairaws.EIPOptions{AllocateOnDemand: true}), svc)); got != first {
			t.Fatalf("%s: with %s in status the next Ensure kept %s", key, first, got)
		}
		if inv := e.inventory(t).ElasticIPs; !reflect.DeepEqual(inv, []string{first.String() + " " + key}) {
			t.Fatalf("%s: after the next Ensure, Elastic IPs = %q, want only %s", key, inv, first)
		}
		mustRelease(t, a, key)
		assertEmpty(t, e)
		return
	}
	t.Fatal("in 12 tries the later call never kept its own copy: the case this test is for did not happen")
}
