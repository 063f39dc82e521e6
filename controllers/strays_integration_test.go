package controllers_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// waitAllocated waits until the Service's IPAllocated condition is True with reason, and
// returns its message.
func waitAllocated(t *testing.T, ns, name, reason string) string {
	t.Helper()
	var msg string
	kit.Eventually(t, 15*time.Second, "Service "+ns+"/"+name+" allocated with reason "+reason, func(context.Context) error {
		s := getSvc(t, ns, name)
		c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != reason {
			return fmt.Errorf("service %s/%s condition %+v, want True/%s", ns, name, c, reason)
		}
		msg = c.Message
		return nil
	})
	return msg
}

func waitPoolStrays(t *testing.T, name string, want int64) *v1alpha1.IPPool {
	t.Helper()
	var p *v1alpha1.IPPool
	kit.Eventually(t, 15*time.Second, "pool "+name+" to count its strays", func(context.Context) error {
		p = getPool(t, name)
		if p.Status.Strays != want {
			return fmt.Errorf("pool %s counts %d strays, want %d (conditions %v)", name, p.Status.Strays, want, p.Status.Conditions)
		}
		return nil
	})
	return p
}

func poolAnnotation(t *testing.T, ns, name string) string {
	t.Helper()
	return getSvc(t, ns, name).Annotations[v1alpha1.AnnotationAllocatedFromPool]
}

// A pool that shrinks under Services that hold its addresses: they keep them (renumbering
// would break their clients), are told so, the pool counts them, and nobody else gets them.
func TestShrunkPoolKeepsAndReportsItsServices(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "shrink", v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.64/28"}})
	held := map[string]string{}
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("s%02d", i)
		create(t, lbService(ns, name))
		held[name] = waitAnyIP(t, ns, name)
	}
	if got := poolAnnotation(t, ns, "s00"); got != "shrink" {
		t.Fatalf("%s = %q, want the pool's name", v1alpha1.AnnotationAllocatedFromPool, got)
	}

	patchPool(t, "shrink", func(p *v1alpha1.IPPool) { p.Spec.Addresses = []string{"192.0.2.64/29"} })
	outside := 0
	for name, ip := range held {
		if netip.MustParseAddr(ip).Compare(netip.MustParseAddr("192.0.2.72")) < 0 {
			continue
		}
		outside++
		msg := waitAllocated(t, ns, name, "OutsidePool")
		if !strings.Contains(msg, ip+" is no longer in pool \"shrink\"") {
			t.Errorf("%s: message %q does not say why", name, msg)
		}
		waitEvent(t, ns, name, "OutsidePool")
		if got := poolAnnotation(t, ns, name); got != "shrink" {
			t.Errorf("%s: pool annotation %q, want shrink", name, got)
		}
	}
	if outside != 4 {
		t.Fatalf("%d Services outside the shrunk pool, want 4: %v", outside, held)
	}
	p := waitPoolStrays(t, "shrink", 4)
	if c := findCond(p.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "4 address(es)") {
		t.Errorf("pool condition %+v: want Ready, saying 4 addresses are kept outside", c)
	}
	waitAllocated(t, ns, "s00", "Allocated")

	// The /29 is full: a newcomer waits, and never gets an address a stray keeps.
	create(t, lbService(ns, "late"))
	waitFailure(t, ns, "late", "PoolExhausted")
	kit.Consistently(t, time.Second, "the holders keep their addresses", func(context.Context) error {
		for name, ip := range held {
			if got := ingressIPs(getSvc(t, ns, name)); len(got) != 1 || got[0] != ip {
				return fmt.Errorf("%s had %s, now %v", name, ip, got)
			}
		}
		return nil
	})

	// Grown back, the pool covers them again.
	patchPool(t, "shrink", func(p *v1alpha1.IPPool) { p.Spec.Addresses = []string{"192.0.2.64/28"} })
	waitPoolStrays(t, "shrink", 0)
	for name := range held {
		waitAllocated(t, ns, name, "Allocated")
	}
	waitIPs(t, ns, "late", "192.0.2.76")
}

// A pool that stops admitting a namespace: the Service there keeps its address, reported
// without naming who else the pool serves, and the address is not handed out again.
func TestNarrowedAllocateToKeepsTheAddress(t *testing.T) {
	stay, leave := newNamespace(t, nil), newNamespace(t, nil)
	poolFor(t, "", "narrow", v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.96/29"},
		AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{stay, leave}}})
	create(t, lbService(leave, "old"))
	waitIPs(t, leave, "old", "192.0.2.96")

	patchPool(t, "narrow", func(p *v1alpha1.IPPool) { p.Spec.AllocateTo.Namespaces = []string{stay} })
	msg := waitAllocated(t, leave, "old", "OutsidePool")
	if !strings.Contains(msg, "no longer allocates to this Service") || strings.Contains(msg, stay) {
		t.Errorf("message %q: want the reason, without the other namespace's name", msg)
	}
	waitPoolStrays(t, "narrow", 1)
	create(t, lbService(stay, "new"))
	waitIPs(t, stay, "new", "192.0.2.97")
	waitIPs(t, leave, "old", "192.0.2.96")
}

// A pool removed although a Service holds its address (its finalizer taken off by hand): the
// Service keeps the address; a pool created over it later does not hand it out again.
func TestPoolDeletedUnderItsFinalizer(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "yanked", v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.112/30"}})
	create(t, lbService(ns, "holder"))
	waitIPs(t, ns, "holder", "192.0.2.112")
	kit.Eventually(t, 10*time.Second, "the pool's finalizer", func(context.Context) error {
		if !slices.Contains(getPool(t, "yanked").Finalizers, v1alpha1.PoolFinalizer) {
			return fmt.Errorf("pool has no finalizer yet")
		}
		return nil
	})
	deletePoolAndWait(t, "yanked")
	patchPool(t, "yanked", func(p *v1alpha1.IPPool) { p.Finalizers = nil })
	kit.Eventually(t, 10*time.Second, "the pool to be gone", func(context.Context) error {
		var p v1alpha1.IPPool
		if err := k8s.Get(ctx, types.NamespacedName{Name: "yanked"}, &p); err == nil {
			return fmt.Errorf("pool still there")
		}
		return nil
	})

	msg := waitAllocated(t, ns, "holder", "OutsidePool")
	if !strings.Contains(msg, `pool "yanked" no longer exists`) {
		t.Errorf("message %q does not say the pool is gone", msg)
	}
	if got := poolAnnotation(t, ns, "holder"); got != "yanked" {
		t.Errorf("pool annotation %q, want yanked (speakers announce by it)", got)
	}

	poolFor(t, ns, "successor", v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.112/29"}})
	create(t, lbService(ns, "late"))
	waitIPs(t, ns, "late", "192.0.2.113")
	waitAllocated(t, ns, "holder", "Allocated")
	waitIPs(t, ns, "holder", "192.0.2.112")
	kit.Eventually(t, 10*time.Second, "holder's pool annotation to name the successor", func(context.Context) error {
		if got := poolAnnotation(t, ns, "holder"); got != "successor" {
			return fmt.Errorf("pool annotation %q, want successor", got)
		}
		return nil
	})
}

// Fairlead's own annotation wins over a MetalLB one left behind, and the disagreement is told.
func TestConflictingAnnotationsWarn(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "conflicting", v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.120/29"}})
	create(t, lbService(ns, "both", withAnnotations(v1alpha1.AnnotationIPs, "192.0.2.122", "metallb.io/loadBalancerIPs", "192.0.2.123")))
	waitIPs(t, ns, "both", "192.0.2.122")
	note := waitEvent(t, ns, "both", "ConflictingAnnotations")
	if !strings.Contains(note, "192.0.2.122") || !strings.Contains(note, "192.0.2.123") {
		t.Errorf("event %q does not name both values", note)
	}
}
