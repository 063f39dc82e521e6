package aws_test

import (
	"context"
	"net/netip"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/fairlead-lb/fairlead/providers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/test/awsapi"
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
