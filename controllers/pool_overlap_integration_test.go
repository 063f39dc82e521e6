package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// Two overlapping pools created in the same second: the one already handing out addresses
// keeps them, even when the newer one's name sorts first.
func TestOverlapInTheSameSecondKeepsTheEstablishedPool(t *testing.T) {
	ns := newNamespace(t, nil)
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			t.Fatal("could not create both pools within one second in 5 attempts")
		}
		older, newer := fmt.Sprintf("tie-zeta-%d", attempt), fmt.Sprintf("tie-alpha-%d", attempt)
		// Start early in a second, so that the first pool can be loaded before it ends.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
		zeta := poolFor(t, ns, older, v1alpha1.IPPoolSpec{Addresses: []string{fmt.Sprintf("198.51.100.%d/30", 128+8*attempt)}})
		svc := fmt.Sprintf("tie-holder-%d", attempt)
		create(t, lbService(ns, svc, withAnnotations(v1alpha1.AnnotationPool, older)))
		ip := waitAnyIP(t, ns, svc)
		alpha := poolFor(t, ns, newer, v1alpha1.IPPoolSpec{Addresses: []string{fmt.Sprintf("198.51.100.%d/29", 128+8*attempt)}})
		if !zeta.CreationTimestamp.Equal(&alpha.CreationTimestamp) {
			t.Logf("attempt %d: created at %v and %v, not in one second; again", attempt, zeta.CreationTimestamp, alpha.CreationTimestamp)
			deleteSvc(t, ns, svc)
			continue
		}
		p := waitPoolReady(t, newer, metav1.ConditionFalse, "Overlap")
		if msg := findCond(p.Status.Conditions, v1alpha1.ConditionReady).Message; !strings.Contains(msg, `"`+older+`"`) {
			t.Errorf("message %q does not name the pool it overlaps", msg)
		}
		kit.Consistently(t, time.Second, "the established pool and its holder unchanged", func(context.Context) error {
			p := getPool(t, older)
			if c := findCond(p.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("the established pool lost: %+v", c)
			}
			if got := ingressIPs(getSvc(t, ns, svc)); len(got) != 1 || got[0] != ip {
				return fmt.Errorf("holder moved from %s to %v", ip, got)
			}
			return nil
		})
		// And it goes on handing out addresses.
		next := fmt.Sprintf("tie-next-%d", attempt)
		create(t, lbService(ns, next, withAnnotations(v1alpha1.AnnotationPool, older)))
		waitAnyIP(t, ns, next)
		return
	}
}
