package cloud_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/kit"
)

var nlbClass = withClass(v1alpha1.AWSNLBClass)

// targetsOf returns the instance IDs registered in the Service's target groups, one entry per
// target group and instance.
func targetsOf(inv inventory) []string {
	var out []string
	for _, tg := range inv.Targets {
		_, target, _ := strings.Cut(tg, " ")
		id, _, _ := strings.Cut(target, ":")
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func instances(ns ...testNode) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.instanceID)
	}
	slices.Sort(out)
	return out
}

func times(n int, s []string) []string {
	var out []string
	for range n {
		out = append(out, s...)
	}
	slices.Sort(out)
	return out
}

// The whole life of an NLB Service through the controller: created with a listener per port
// and every eligible node as target; ports changing change the listeners; nodes becoming
// NotReady, excluded by label, or joining change the targets; deletion leaves nothing in AWS.
func TestNLBLifecycle(t *testing.T) {
	e := newEnv(t, 4)
	n1, n2, n3, n4 := e.nodes[0], e.nodes[1], e.nodes[2], e.nodes[3]
	// The fourth instance is not a Node yet: it joins later.
	if err := k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n4.name}}); err != nil {
		t.Fatal(err)
	}
	e.start(t, true, false)
	e.service(t, "web", nlbClass)

	host := e.hostname(t, "web")
	lbName := fairaws.LoadBalancerName(cluster, e.ns+"/web")
	if !strings.HasPrefix(host, lbName) {
		t.Errorf("hostname %q is not the DNS name of %s", host, lbName)
	}
	inv := e.waitInventory(t, func(inv inventory) error {
		if !slices.Equal(targetsOf(inv), instances(n1, n2, n3)) {
			return fmt.Errorf("targets %v, want the three nodes", inv.Targets)
		}
		return nil
	})
	if !slices.Equal(inv.LoadBalancers, []string{lbName}) || !slices.Equal(inv.Listeners, []string{lbName + " 80/TCP"}) ||
		len(inv.TargetGroups) != 1 || len(inv.SecurityGroups) != 1 {
		t.Fatalf("after create: %+v", inv)
	}
	svc := e.getSvc(t, "web")
	if c := meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ConditionIPAllocated); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("condition %s = %+v, want True", v1alpha1.ConditionIPAllocated, c)
	}
	if !slices.Contains(svc.Finalizers, v1alpha1.ProviderFinalizer) || slices.Contains(svc.Finalizers, v1alpha1.ServiceFinalizer) {
		t.Errorf("finalizers %v: want %s only (the local pools' reconciler must leave it alone)", svc.Finalizers, v1alpha1.ProviderFinalizer)
	}
	e.event(t, "web", "LoadBalancerReady")

	// Ports change: one listener (and target group) per port.
	e.patchSvc(t, "web", func(s *corev1.Service) { withPorts(80, 443)(s) })
	e.waitInventory(t, func(inv inventory) error {
		if want := []string{lbName + " 443/TCP", lbName + " 80/TCP"}; !slices.Equal(inv.Listeners, want) {
			return fmt.Errorf("listeners %v, want %v", inv.Listeners, want)
		}
		if len(inv.TargetGroups) != 2 || !slices.Equal(targetsOf(inv), times(2, instances(n1, n2, n3))) {
			return fmt.Errorf("target groups %v, targets %v", inv.TargetGroups, inv.Targets)
		}
		return nil
	})
	e.patchSvc(t, "web", func(s *corev1.Service) { withPorts(443)(s) })
	e.waitInventory(t, func(inv inventory) error {
		if want := []string{lbName + " 443/TCP"}; !slices.Equal(inv.Listeners, want) || len(inv.TargetGroups) != 1 {
			return fmt.Errorf("listeners %v, target groups %v; want only 443", inv.Listeners, inv.TargetGroups)
		}
		return nil
	})

	// Nodes leave: NotReady, then excluded by the well-known label.
	setNodeReady(t, n3.name, false)
	e.waitInventory(t, func(inv inventory) error {
		if got, want := targetsOf(inv), instances(n1, n2); !slices.Equal(got, want) {
			return fmt.Errorf("after %s went NotReady: targets %v, want %v", n3.name, got, want)
		}
		return nil
	})
	var node corev1.Node
	if err := k8s.Get(ctx, types.NamespacedName{Name: n2.name}, &node); err != nil {
		t.Fatal(err)
	}
	node.Labels = map[string]string{corev1.LabelNodeExcludeBalancers: ""}
	if err := k8s.Update(ctx, &node); err != nil {
		t.Fatal(err)
	}
	e.waitInventory(t, func(inv inventory) error {
		if got, want := targetsOf(inv), instances(n1); !slices.Equal(got, want) {
			return fmt.Errorf("after labelling %s excluded: targets %v, want %v", n2.name, got, want)
		}
		return nil
	})
	// A node joins; the NotReady one comes back.
	createNode(t, n4)
	setNodeReady(t, n3.name, true)
	e.waitInventory(t, func(inv inventory) error {
		if got, want := targetsOf(inv), instances(n1, n3, n4); !slices.Equal(got, want) {
			return fmt.Errorf("after %s joined: targets %v, want %v", n4.name, got, want)
		}
		return nil
	})

	e.deleteSvc(t, "web")
	e.assertClean(t)
}

// A Service deleted while no controller runs (its finalizer removed by hand, as an operator
// uninstalling Fairlead might) leaves an NLB behind; the next controller finds it by its tags
// and deletes it. Services that still exist keep theirs.
func TestNLBLeftoversCollectedAtStart(t *testing.T) {
	e := newEnv(t, 2)
	c := e.start(t, true, false)
	e.service(t, "gone", nlbClass)
	e.service(t, "kept", nlbClass)
	e.hostname(t, "gone")
	e.hostname(t, "kept")
	c.stop()

	e.patchSvc(t, "gone", func(s *corev1.Service) { s.Finalizers = nil })
	e.deleteSvc(t, "gone")
	e.start(t, true, false)
	kept := fairaws.LoadBalancerName(cluster, e.ns+"/kept")
	e.waitInventory(t, func(inv inventory) error {
		if !slices.Equal(inv.LoadBalancers, []string{kept}) || len(inv.TargetGroups) != 1 || len(inv.SecurityGroups) != 1 {
			return fmt.Errorf("want only %s's resources, have %+v", kept, inv)
		}
		return nil
	})
	e.deleteSvc(t, "kept")
	e.assertClean(t)
}

// The controller stops in the middle of creating an NLB (the load balancer exists, its target
// group is being created); a new controller finishes the job with the same load balancer:
// no duplicate, and deletion leaves nothing.
func TestNLBRestartMidCreation(t *testing.T) {
	e := newEnv(t, 2)
	e.proxy.Inject(awsapi.Fault{Service: "elasticloadbalancing", Action: "CreateTargetGroup", Kind: awsapi.Delay, Delay: 10 * time.Minute})
	c := e.start(t, true, false)
	e.service(t, "web", nlbClass)
	kit.Eventually(t, time.Minute, "the first CreateTargetGroup call", func(context.Context) error {
		if n, _ := e.proxy.Count("CreateTargetGroup"); n == 0 {
			return fmt.Errorf("CreateTargetGroup not called yet")
		}
		return nil
	})
	c.stop()
	e.proxy.Clear()
	mid := e.inventory(t)
	if len(mid.LoadBalancers) != 1 || len(mid.TargetGroups) != 0 {
		t.Fatalf("stopped between calls, expected a load balancer without target group: %+v", mid)
	}

	e.start(t, true, false)
	e.hostname(t, "web")
	inv := e.waitInventory(t, func(inv inventory) error {
		if len(inv.Listeners) != 1 {
			return fmt.Errorf("listeners %v", inv.Listeners)
		}
		return nil
	})
	if !slices.Equal(inv.LoadBalancers, mid.LoadBalancers) || len(inv.TargetGroups) != 1 || len(inv.SecurityGroups) != 1 {
		t.Fatalf("after the restart: %+v, want the same load balancer and one of everything", inv)
	}
	if n, _ := e.proxy.Count("CreateLoadBalancer"); n != 1 {
		t.Errorf("CreateLoadBalancer called %d times, want once (the new controller adopts)", n)
	}
	e.deleteSvc(t, "web")
	e.assertClean(t)
}

// Throttling and 500s are retried: by the SDK's retryer within one reconcile, and, when a call
// keeps failing past its attempts, by the work queue's backoff. The Service converges with one
// of everything.
func TestNLBTransientFaultsRetried(t *testing.T) {
	e := newEnv(t, 2)
	injected := []awsapi.Fault{
		{Service: "elasticloadbalancing", Action: "CreateLoadBalancer", Kind: awsapi.Throttle, Times: 3},
		{Service: "elasticloadbalancing", Action: "CreateTargetGroup", Kind: awsapi.ServerError, Times: 2},
		{Service: "ec2", Action: "CreateSecurityGroup", Kind: awsapi.Throttle, Times: 2},
		{Service: "elasticloadbalancing", Action: "RegisterTargets", Kind: awsapi.ServerError, Times: 2},
		// More than the SDK's 8 attempts: one reconcile fails, the next succeeds.
		{Service: "elasticloadbalancing", Action: "CreateListener", Kind: awsapi.ServerError, Times: 10},
	}
	for _, f := range injected {
		e.proxy.Inject(f)
	}
	e.start(t, true, false)
	e.service(t, "web", nlbClass)
	e.hostname(t, "web")
	for _, f := range injected {
		total, faulted := e.proxy.Count(f.Action)
		if faulted != f.Times || total <= faulted {
			t.Errorf("%s: %d calls, %d faulted; want all %d faults seen and a successful retry", f.Action, total, faulted, f.Times)
		}
	}
	// The reconcile that gave up reported it.
	if note := e.event(t, "web", providers.ReasonCloudError); !strings.Contains(note, "CreateListener") && !strings.Contains(note, "listener") {
		t.Errorf("CloudError event %q does not say what failed", note)
	}
	inv := e.inventory(t)
	if len(inv.LoadBalancers) != 1 || len(inv.TargetGroups) != 1 || len(inv.Listeners) != 1 || len(inv.SecurityGroups) != 1 {
		t.Fatalf("after retries: %+v, want one of everything", inv)
	}
	e.deleteSvc(t, "web")
	e.assertClean(t)
}

// A permission error surfaces as a Warning Event and condition on the Service; other Services
// keep being reconciled; once the policy is fixed the Service converges.
func TestNLBAccessDeniedIsReported(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t, true, false)
	e.service(t, "good", nlbClass)
	e.hostname(t, "good")

	e.proxy.Inject(awsapi.Fault{Service: "elasticloadbalancing", Action: "CreateLoadBalancer", Kind: awsapi.AccessDenied})
	e.service(t, "denied", nlbClass)
	note := e.event(t, "denied", providers.ReasonPermissionDenied)
	if !strings.Contains(note, "permission denied") || !strings.Contains(note, "CreateLoadBalancer") {
		t.Errorf("event note %q should say permission was denied for CreateLoadBalancer", note)
	}
	svc := e.getSvc(t, "denied")
	if c := meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ConditionIPAllocated); c == nil || c.Reason != providers.ReasonPermissionDenied {
		t.Errorf("condition = %+v, want reason %s", c, providers.ReasonPermissionDenied)
	}
	if len(svc.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("denied Service has ingress %+v", svc.Status.LoadBalancer.Ingress)
	}

	// The other Service is unaffected: its ports change and its listeners follow.
	goodLB := fairaws.LoadBalancerName(cluster, e.ns+"/good")
	e.patchSvc(t, "good", func(s *corev1.Service) { withPorts(80, 8443)(s) })
	e.waitInventory(t, func(inv inventory) error {
		if n := len(slices.DeleteFunc(slices.Clone(inv.Listeners), func(l string) bool { return !strings.HasPrefix(l, goodLB+" ") })); n != 2 {
			return fmt.Errorf("listeners %v, want two on %s", inv.Listeners, goodLB)
		}
		return nil
	})

	// The policy is fixed: the work queue's retry gets it through.
	e.proxy.Clear()
	e.hostname(t, "denied")
	e.deleteSvc(t, "denied")
	e.deleteSvc(t, "good")
	e.assertClean(t)
}

// Elastic IP pools: allocated on demand (released to AWS with the Service) or adopted by tag
// (given back to the pool); the local pools' Services are unaffected.
func TestElasticIPPools(t *testing.T) {
	e := newEnv(t, 1)
	e.start(t, false, true)

	onDemand := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-eip"},
		Spec: v1alpha1.IPPoolSpec{AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{}}}}
	local := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-local"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.16/28"}, AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{e.ns}}}}
	for _, p := range []*v1alpha1.IPPool{onDemand, local} {
		if err := k8s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), p) })
	}
	e.service(t, "public", withAnnotation(v1alpha1.AnnotationPool, onDemand.Name))
	e.service(t, "lan")

	ip := e.ingressIP(t, "public")
	inv := e.inventory(t)
	if want := []string{ip + " " + e.ns + "/public"}; !slices.Equal(inv.ElasticIPs, want) {
		t.Fatalf("Elastic IPs %v, want %v", inv.ElasticIPs, want)
	}
	if got := e.ingressIP(t, "lan"); got != "203.0.113.16" {
		t.Errorf("local pool Service got %s, want 203.0.113.16", got)
	}
	kit.Eventually(t, 30*time.Second, "the on-demand pool's status", func(context.Context) error {
		var p v1alpha1.IPPool
		if err := k8s.Get(ctx, types.NamespacedName{Name: onDemand.Name}, &p); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "ElasticIPs" {
			return fmt.Errorf("pool condition %+v, want Ready by ElasticIPs", c)
		}
		return nil
	})
	e.deleteSvc(t, "public")
	e.waitInventory(t, func(inv inventory) error {
		if len(inv.ElasticIPs) != 0 {
			return fmt.Errorf("Elastic IPs left: %v", inv.ElasticIPs)
		}
		return nil
	})

	// Adopted addresses: an operator set one aside with the pool tag.
	out, err := e.direct.EC2.AllocateAddress(ctx, &ec2.AllocateAddressInput{Domain: ec2types.DomainTypeVpc,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeElasticIp,
			Tags: []ec2types.Tag{{Key: aws.String(fairaws.TagPool), Value: aws.String("partners")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	reserved := aws.ToString(out.PublicIp)
	adopt := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-partners"},
		Spec: v1alpha1.IPPoolSpec{AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{AdoptTagged: "partners", Allocate: v1alpha1.ElasticIPsNever}}}}
	if err := k8s.Create(ctx, adopt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), adopt) })
	e.service(t, "first", withAnnotation(v1alpha1.AnnotationPool, adopt.Name))
	if got := e.ingressIP(t, "first"); got != reserved {
		t.Fatalf("got %s, want the reserved %s", got, reserved)
	}
	e.service(t, "second", withAnnotation(v1alpha1.AnnotationPool, adopt.Name))
	kit.Eventually(t, 30*time.Second, "the second Service to find the adopting pool exhausted", func(context.Context) error {
		s := e.getSvc(t, "second")
		if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated); c == nil || c.Reason != "PoolExhausted" {
			return fmt.Errorf("second Service condition %+v, want PoolExhausted", c)
		}
		return nil
	})
	e.deleteSvc(t, "second")

	// Deleting the pool waits for the Service holding its address, which keeps it meanwhile.
	if err := k8s.Delete(ctx, adopt); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 30*time.Second, "the adopting pool's status", func(context.Context) error {
		var p v1alpha1.IPPool
		if err := k8s.Get(ctx, types.NamespacedName{Name: adopt.Name}, &p); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Reason != "Deleting" {
			return fmt.Errorf("deleting pool condition %+v, want reason Deleting", c)
		}
		return nil
	})
	e.patchSvc(t, "first", func(s *corev1.Service) { s.Labels = map[string]string{"touched": "1"} })
	time.Sleep(time.Second) // a reconcile of the touched Service must not take its address
	s := e.getSvc(t, "first")
	if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated); len(s.Status.LoadBalancer.Ingress) != 1 ||
		s.Status.LoadBalancer.Ingress[0].IP != reserved || c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("while its pool is deleted, the Service has %+v, condition %+v; want it to keep %s", s.Status.LoadBalancer.Ingress, c, reserved)
	}
	e.deleteSvc(t, "first")
	kit.Eventually(t, 30*time.Second, "the adopting pool to go with its last Service", func(context.Context) error {
		var p v1alpha1.IPPool
		if err := k8s.Get(ctx, types.NamespacedName{Name: adopt.Name}, &p); err == nil {
			return fmt.Errorf("pool %s still exists after its last Service went", adopt.Name)
		}
		return nil
	})
	// Given back to the pool, not released to AWS.
	if inv := e.inventory(t); !slices.Equal(inv.ElasticIPs, []string{reserved}) {
		t.Fatalf("Elastic IPs %v, want only %s, untagged for any Service", inv.ElasticIPs, reserved)
	}
	e.deleteSvc(t, "lan")
}

// The API refuses pools that are both local and AWS, or that could never hand out an address.
func TestElasticIPPoolValidation(t *testing.T) {
	for name, spec := range map[string]v1alpha1.IPPoolSpec{
		"both":              {Addresses: []string{"203.0.113.0/28"}, AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{}}},
		"none":              {},
		"never-without-tag": {AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{Allocate: v1alpha1.ElasticIPsNever}}},
		"byoip-never":       {AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{AdoptTagged: "x", Allocate: v1alpha1.ElasticIPsNever, PublicIPv4Pool: "ipv4pool-ec2-0123"}}},
		"bad-byoip":         {AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{PublicIPv4Pool: "mine"}}},
	} {
		p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "invalid-" + name}, Spec: spec}
		if err := k8s.Create(ctx, p); err == nil {
			_ = k8s.Delete(ctx, p)
			t.Errorf("%s: the API accepted %+v", name, spec)
		}
	}
	ok := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "valid-byoip"},
		Spec: v1alpha1.IPPoolSpec{AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{PublicIPv4Pool: "ipv4pool-ec2-0123abc"}}}}
	if err := k8s.Create(ctx, ok); err != nil {
		t.Fatalf("a valid pool was refused: %v", err)
	}
	_ = k8s.Delete(ctx, ok)
}

// ingressIP waits for an IP in the Service's status and returns it.
func (e *env) ingressIP(t *testing.T, name string) string {
	t.Helper()
	var ip string
	kit.Eventually(t, time.Minute, "an address for Service "+name, func(context.Context) error {
		s := e.getSvc(t, name)
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ip = in.IP
				return nil
			}
		}
		return fmt.Errorf("Service %s: no IP yet (conditions %+v)", name, s.Status.Conditions)
	})
	return ip
}

// With ip targets the load balancer sends traffic to the pods: their addresses, from the
// EndpointSlices, are the targets and follow the endpoints.
func TestNLBIPTargetsFollowEndpoints(t *testing.T) {
	e := newEnv(t, 1)
	e.start(t, true, false)
	e.service(t, "pods", nlbClass, withAnnotation(fairaws.AnnotationTargetType, "ip"))
	e.hostname(t, "pods")

	// Pod addresses in the VPC (moto's default VPC is 172.31.0.0/16), as with the VPC CNI.
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: e.ns, Name: "pods-1", Labels: map[string]string{discoveryv1.LabelServiceName: "pods"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("p80"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"172.31.5.10"}},
			{Addresses: []string{"172.31.5.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}
	if err := k8s.Create(ctx, slice); err != nil {
		t.Fatal(err)
	}
	targets := func(want ...string) {
		t.Helper()
		e.waitInventory(t, func(inv inventory) error {
			var got []string
			for _, tg := range inv.Targets {
				_, target, _ := strings.Cut(tg, " ")
				got = append(got, target)
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("targets %v, want %v", got, want)
			}
			return nil
		})
	}
	targets("172.31.5.10:8080")
	slice.Endpoints[1].Conditions.Ready = ptr.To(true)
	if err := k8s.Update(ctx, slice); err != nil {
		t.Fatal(err)
	}
	targets("172.31.5.10:8080", "172.31.5.11:8080")

	e.deleteSvc(t, "pods")
	e.assertClean(t)
}
