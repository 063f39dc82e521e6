package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// waitIPMode waits until every ingress entry of the Service says mode.
func waitIPMode(t *testing.T, ns, name string, mode corev1.LoadBalancerIPMode) {
	t.Helper()
	kit.Eventually(t, 15*time.Second, "ipMode "+string(mode)+" on "+ns+"/"+name, func(context.Context) error {
		ing := getSvc(t, ns, name).Status.LoadBalancer.Ingress
		if len(ing) == 0 {
			return fmt.Errorf("no ingress")
		}
		for _, in := range ing {
			if in.IPMode == nil || *in.IPMode != mode {
				return fmt.Errorf("ingress %s has ipMode %v, want %s", in.IP, in.IPMode, mode)
			}
		}
		return nil
	})
}

// A pool whose addresses a load balancer in front of the cluster answers (ipMode Proxy):
// its Services say so in their status, which tells the speakers not to announce them and node
// proxies not to short-cut them; changing the pool's mode rewrites its Services' status.
func TestPoolIPModeReachesServiceStatus(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "fronted", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.144/30"}, IPMode: corev1.LoadBalancerIPModeProxy})
	create(t, lbService(ns, "behind-lb"))
	waitIPs(t, ns, "behind-lb", "198.51.100.144")
	waitIPMode(t, ns, "behind-lb", corev1.LoadBalancerIPModeProxy)

	patchPool(t, "fronted", func(p *v1alpha1.IPPool) { p.Spec.IPMode = "" })
	if got := getPool(t, "fronted").Spec.IPMode; got != corev1.LoadBalancerIPModeVIP {
		t.Errorf("a pool without ipMode reads back %q, want the default VIP", got)
	}
	waitIPMode(t, ns, "behind-lb", corev1.LoadBalancerIPModeVIP)
	waitIPs(t, ns, "behind-lb", "198.51.100.144")

	// Any other mode is refused by the apiserver, and nothing is created.
	bad := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bad-mode"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.148/30"}, IPMode: "Tunnel"}}
	if err := k8s.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "ipMode") {
		t.Errorf("creating a pool with ipMode Tunnel: %v, want a refusal naming ipMode", err)
		_ = k8s.Delete(ctx, bad)
	}
}
