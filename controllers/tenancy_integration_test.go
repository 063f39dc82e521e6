package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/ipam"
	"github.com/fairlead-lb/fairlead/test/kit"
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

// A namespace that a pool does not admit cannot reach into it by any of the ways a Service
// asks for an address: the pool annotations, an address by annotation or spec.loadBalancerIP,
// or the sharing key of a Service that holds one of its addresses. Each try is refused with an
// Event and a condition, and changes nothing: the owner keeps its address, the pool's other
// addresses stay free, and the intruder's own pool still serves it when it asks plainly.
func TestTenantCannotReachAnotherNamespacesPool(t *testing.T) {
	owner := newNamespace(t, nil)
	intruder := newNamespace(t, nil)
	poolFor(t, "", "owned-by-one", v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.216/30"},
		AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{owner}}})
	poolFor(t, "", "intruders-own", v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.220/30"},
		AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{intruder}}})
	create(t, lbService(owner, "holder", withPorts(443), withAnnotations(v1alpha1.AnnotationSharingKey, "team")))
	held := waitAnyIP(t, owner, "holder")
	const free = "192.0.2.218" // in the owner's pool, not the holder's (the pool hands out .216 first)
	if held == free {
		t.Fatalf("the holder got %s, which this test expects free", held)
	}

	byIP := func(s *corev1.Service) { s.Spec.LoadBalancerIP = free } // deprecated, still honoured
	for _, tc := range []struct {
		name, reason string
		svc          *corev1.Service
	}{
		{"by-pool", ipam.ReasonNoEligiblePool, lbService(intruder, "by-pool", withAnnotations(v1alpha1.AnnotationPool, "owned-by-one"))},
		{"by-metallb-pool", ipam.ReasonNoEligiblePool, lbService(intruder, "by-metallb-pool", withAnnotations("metallb.universe.tf/address-pool", "owned-by-one"))},
		{"by-ips", ipam.ReasonNoEligiblePool, lbService(intruder, "by-ips", withAnnotations(v1alpha1.AnnotationIPs, free))},
		{"by-metallb-ips", ipam.ReasonNoEligiblePool, lbService(intruder, "by-metallb-ips", withAnnotations("metallb.io/loadBalancerIPs", free))},
		{"by-spec", ipam.ReasonNoEligiblePool, lbService(intruder, "by-spec", byIP)},
		{"by-key-and-ip", ipam.ReasonNoEligiblePool, lbService(intruder, "by-key-and-ip", withPorts(8443), withAnnotations(v1alpha1.AnnotationSharingKey, "team", v1alpha1.AnnotationIPs, held))},
	} {
		create(t, tc.svc)
		msg := waitFailure(t, intruder, tc.name, tc.reason)
		note := waitEvent(t, intruder, tc.name, "AllocationFailed")
		if strings.Contains(msg+note, owner) || strings.Contains(msg+note, "holder") {
			t.Errorf("%s: the refusal %q / %q names the other namespace or its Service", tc.name, msg, note)
		}
	}

	// The same key without an address is only a key: it shares nothing across namespaces and
	// the intruder's own pool serves it.
	create(t, lbService(intruder, "same-key", withPorts(9443), withAnnotations(v1alpha1.AnnotationSharingKey, "team")))
	if got := waitAnyIP(t, intruder, "same-key"); !strings.HasPrefix(got, "192.0.2.22") {
		t.Errorf("a Service sharing only a key name got %s, outside its namespace's pool", got)
	}
	kit.Consistently(t, 2*time.Second, "no address for the intruder, the holder keeps its own", func(context.Context) error {
		for _, name := range []string{"by-pool", "by-metallb-pool", "by-ips", "by-metallb-ips", "by-spec", "by-key-and-ip"} {
			if ips := ingressIPs(getSvc(t, intruder, name)); len(ips) != 0 {
				return fmt.Errorf("%s got %v", name, ips)
			}
		}
		if ips := ingressIPs(getSvc(t, owner, "holder")); len(ips) != 1 || ips[0] != held {
			return fmt.Errorf("the holder has %v, want [%s]", ips, held)
		}
		return nil
	})
	// The owner can still have the address the intruders asked for.
	create(t, lbService(owner, "owner-asks", withPorts(80), withAnnotations(v1alpha1.AnnotationIPs, free)))
	waitIPs(t, owner, "owner-asks", free)
}
