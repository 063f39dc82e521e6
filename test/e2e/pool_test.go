package e2e

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/lab"
)

// A pool of one address, announced on the LAN: the second Service that asks for it stays
// pending with a reason and an Event; growing the pool gives it the new address, which then
// answers the LAN client.
func TestExhaustedPoolThenGrown(t *testing.T) {
	// Free addresses of the LAN itself, like the README's layer 2 example.
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "e2e-small"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.200/32"}, AutoAssign: ptr.To(false)}}
	adv := &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "e2e-small"},
		Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{"e2e-small"}, Interfaces: []string{"eth0"}}}
	for _, o := range []client.Object{pool, adv} {
		if err := cl.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// Cleanups run last-in first-out: the Services (registered below) go before the pool.
	t.Cleanup(func() {
		for _, o := range []client.Object{adv, pool} {
			if err := cl.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				t.Error(err)
			}
		}
	})

	first := createService(t, echoService("small-a", "e2e-small"))
	if got := first.Status.LoadBalancer.Ingress[0].IP; got != "192.0.2.200" {
		t.Fatalf("small-a got %s, want the pool's only address 192.0.2.200", got)
	}
	second := echoService("small-b", "e2e-small")
	if _, err := cs.CoreV1().Services(lab.DemoNamespace).Create(ctx, second, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteService(t, lab.DemoNamespace, "small-b") })
	kit.Eventually(t, converge, "small-b pending with PoolExhausted and an Event", func(context.Context) error {
		s, err := cs.CoreV1().Services(lab.DemoNamespace).Get(ctx, "small-b", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) != 0 {
			return fmt.Errorf("got addresses %v from an exhausted pool", s.Status.LoadBalancer.Ingress)
		}
		c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "PoolExhausted" {
			return fmt.Errorf("condition %+v", c)
		}
		events, err := cs.CoreV1().Events(lab.DemoNamespace).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Service,involvedObject.name=small-b,reason=AllocationFailed"})
		if err != nil {
			return err
		}
		if len(events.Items) == 0 {
			return fmt.Errorf("no AllocationFailed Event")
		}
		if events.Items[0].Type != corev1.EventTypeWarning {
			return fmt.Errorf("event type %s", events.Items[0].Type)
		}
		return nil
	})

	if err := cl.Get(ctx, client.ObjectKeyFromObject(pool), pool); err != nil {
		t.Fatal(err)
	}
	pool.Spec.Addresses = []string{"192.0.2.200-192.0.2.201"}
	if err := cl.Update(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var ip string
	kit.Eventually(t, converge, "small-b gets the new address", func(context.Context) error {
		s, err := cs.CoreV1().Services(lab.DemoNamespace).Get(ctx, "small-b", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("still pending: %v", s.Status.Conditions)
		}
		ip = s.Status.LoadBalancer.Ingress[0].IP
		return nil
	})
	if ip != "192.0.2.201" {
		t.Fatalf("small-b got %s, want 192.0.2.201", ip)
	}
	kit.Eventually(t, converge, "small-b answers the LAN client", func(context.Context) error {
		_, err := request(theLab.ClientL2(), addr80(ip))
		return err
	})
}
