package controllers_test

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// Pools with special-purpose addresses (loopback, multicast, link-local, unspecified,
// broadcast) are refused: by the apiserver where CEL can see it, else by the controller as
// Ready=False/Invalid with an Event; either way no Service gets such an address.
func TestSpecialPurposePoolsRefused(t *testing.T) {
	for _, addr := range []string{"0.0.0.0/0", "::/0", "0.0.0.0/8", "0.0.0.0/32", "127.0.0.0/8", "127.0.0.1/32",
		"224.0.0.0/4", "239.255.255.250/32", "240.0.0.0/4", "255.255.255.255/32", "169.254.0.0/16", "::/128", "::1/128",
		"ff00::/8", "ff02::1/128", "fe80::/10", "fe80::/64", "10.0.0.0/4", "127.0.0.1-127.0.0.9", "198.51.100.1-224.0.0.1", "fe80::1-fe80::9"} {
		p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "special"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.0/24", addr}}}
		err := k8s.Create(ctx, p)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), addr+" includes special-purpose addresses") {
			t.Errorf("creating a pool of %s: err %v, want Invalid naming it", addr, err)
		}
		if err == nil {
			_ = k8s.Delete(ctx, p)
		}
	}

	// Ranges that span a block with both ends outside it: only code can tell.
	ns := newNamespace(t, nil)
	for name, addr := range map[string]string{"spans-loopback": "100.0.0.0-200.0.0.0", "spans-mapped": "::fffe:0:0-::1:0:0:5"} {
		poolFor(t, ns, name, v1alpha1.IPPoolSpec{Addresses: []string{addr}})
		p := waitPoolReady(t, name, metav1.ConditionFalse, "Invalid")
		msg := findCond(p.Status.Conditions, v1alpha1.ConditionReady).Message
		if !strings.Contains(msg, addr+" includes special-purpose addresses") || !strings.Contains(msg, "never handed out") {
			t.Errorf("pool %s: message %q does not name the range and why", name, msg)
		}
		if p.Status.IPv4 != nil || p.Status.IPv6 != nil {
			t.Errorf("pool %s: an invalid pool reports capacity %+v %+v", name, p.Status.IPv4, p.Status.IPv6)
		}
		if note := waitEvent(t, "default", name, "Invalid"); !strings.Contains(note, addr) {
			t.Errorf("pool %s: Event %q does not name the range", name, note)
		}
	}
	if msg := findCond(getPool(t, "spans-loopback").Status.Conditions, v1alpha1.ConditionReady).Message; !strings.Contains(msg, "127.0.0.0/8 (loopback)") {
		t.Errorf("message %q does not name the loopback block", msg)
	}
	if msg := findCond(getPool(t, "spans-mapped").Status.Conditions, v1alpha1.ConditionReady).Message; !strings.Contains(msg, "IPv4-mapped") {
		t.Errorf("message %q does not name the IPv4-mapped block", msg)
	}
	create(t, lbService(ns, "wants-loopback-pool", withAnnotations(v1alpha1.AnnotationPool, "spans-loopback")))
	if msg := waitFailure(t, ns, "wants-loopback-pool", "NoEligiblePool"); !strings.Contains(msg, "not usable") {
		t.Errorf("message %q", msg)
	}
	create(t, lbService(ns, "wants-loopback", withAnnotations(v1alpha1.AnnotationIPs, "127.0.0.1")))
	waitFailure(t, ns, "wants-loopback", "IPUnavailable")
}
