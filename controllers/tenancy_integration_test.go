package controllers_test

import (
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// A Service in one namespace is never told the name of a Service in another: it learns that
// the address is in use, no more. (In one namespace, naming the holder helps and is kept.)
func TestConflictsDoNotNameOtherNamespaces(t *testing.T) {
	secret := newNamespace(t, nil)
	tenant := newNamespace(t, nil)
	poolFor(t, "", "shared-tenancy", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.176/30"},
		AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{secret, tenant}}})
	create(t, lbService(secret, "hidden-holder", withAnnotations(v1alpha1.AnnotationSharingKey, "k")))
	ip := waitAnyIP(t, secret, "hidden-holder")

	for _, tc := range []struct{ name, key string }{{"grabber", ""}, {"would-share", "k"}} {
		create(t, lbService(tenant, tc.name, withPorts(8443), withAnnotations(v1alpha1.AnnotationIPs, ip, v1alpha1.AnnotationSharingKey, tc.key)))
		msg := waitFailure(t, tenant, tc.name, "IPUnavailable")
		note := waitEvent(t, tenant, tc.name, "AllocationFailed")
		for _, text := range []string{msg, note} {
			if strings.Contains(text, "hidden-holder") || strings.Contains(text, secret) {
				t.Errorf("%s: %q names the other namespace's Service", tc.name, text)
			}
			if !strings.Contains(text, ip+" is in use") {
				t.Errorf("%s: %q does not say the address is in use", tc.name, text)
			}
		}
	}
}

// Services of two namespaces share an address by key only where the pool opts in, as MetalLB
// lets them; turning the opt-in on serves a Service that was waiting for it.
func TestSharingAcrossNamespacesIsThePoolsChoice(t *testing.T) {
	a := newNamespace(t, nil)
	b := newNamespace(t, nil)
	poolFor(t, "", "cross-ns", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.248/30"},
		AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{a, b}}})
	create(t, lbService(a, "dns-a", withPorts(53), withAnnotations("metallb.io/allow-shared-ip", "dns")))
	ip := waitAnyIP(t, a, "dns-a")
	create(t, lbService(b, "dns-b", withPorts(5353), withAnnotations("metallb.universe.tf/allow-shared-ip", "dns", "metallb.io/loadBalancerIPs", ip)))
	if msg := waitFailure(t, b, "dns-b", "IPUnavailable"); !strings.Contains(msg, "shareAcrossNamespaces") {
		t.Errorf("the refusal %q does not say what would allow it", msg)
	}

	p := getPool(t, "cross-ns")
	p.Spec.ShareAcrossNamespaces = true
	if err := k8s.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitIPs(t, b, "dns-b", ip)
	waitIPs(t, a, "dns-a", ip)
	// Another key still gets an address of its own.
	create(t, lbService(a, "other-key", withPorts(80), withAnnotations(v1alpha1.AnnotationSharingKey, "web")))
	if got := waitAnyIP(t, a, "other-key"); got == ip {
		t.Errorf("a Service with another key got the shared %s", ip)
	}
}
