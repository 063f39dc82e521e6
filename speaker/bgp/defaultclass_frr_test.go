package bgp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// With --default-class=false a Service without spec.loadBalancerClass is not Fairlead's: the
// controller never gave it its address, so no speaker may advertise it (issue 21: BGP used to
// ignore the flag). Services of Fairlead's class are advertised as usual, those of another
// class never.
func TestFRRDefaultClassFalse(t *testing.T) {
	l := newLab(t, 2)
	frr := routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN,
	}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	// Created before the Service of Fairlead's class: once that one is advertised, the
	// speakers have seen these too.
	l.classService("classless", nil, "198.51.100.40", "2001:db8:ff::40")
	l.classService("other", ptr.To("example.com/lb"), "198.51.100.42")
	for _, n := range l.nodes {
		n.extraArg = []string{"--default-class=false"}
	}
	l.startAll()
	l.classService("ours", ptr.To(v1alpha1.LoadBalancerClass), "198.51.100.41", "2001:db8:ff::41")
	for prefix, want := range map[string][]string{"198.51.100.41/32": v4s(l.nodes), "2001:db8:ff::41/128": v6s(l.nodes)} {
		kit.Eventually(t, 30*time.Second, prefix+" of the Service of Fairlead's class from every node", func(context.Context) error {
			got, _, err := frrNextHops(frr, prefix)
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
	}
	// Give a wrong advertisement time to arrive, then check the RIB and the kernel.
	time.Sleep(2 * time.Second)
	for _, prefix := range []string{"198.51.100.40/32", "2001:db8:ff::40/128", "198.51.100.42/32"} {
		if got, _, err := frrNextHops(frr, prefix); err != nil || len(got) > 0 {
			t.Errorf("%s: router learned next hops %v (err %v), want none: the Service is not Fairlead's", prefix, got, err)
		}
		if got, err := fib(l.router, prefix); err != nil || len(got) > 0 {
			t.Errorf("%s: kernel route via %v (err %v), want none", prefix, got, err)
		}
	}
	var sa v1alpha1.ServiceAnnouncement
	if err := l.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "classless"}, &sa); err == nil {
		t.Errorf("a ServiceAnnouncement lists the classless Service: %+v", sa.Status.Announcements)
	}
}

// classService creates a LoadBalancer Service of the class (nil: none) and writes its
// addresses into its status, as a controller would.
func (l *lab) classService(name string, class *string, ips ...string) {
	l.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class,
			Ports: []corev1.ServicePort{{Port: 80}}, AllocateLoadBalancerNodePorts: ptr.To(false)},
	}
	l.create(svc)
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	if err := l.c.Status().Update(ctx, svc); err != nil {
		l.t.Fatal(fmt.Errorf("status of %s: %w", name, err))
	}
}
