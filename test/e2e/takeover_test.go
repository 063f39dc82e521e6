package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// Taking over from MetalLB on the wire: a Service whose address MetalLB handed out (status,
// MetalLB's annotations, no Fairlead finalizer; written while Fairlead's controller is down)
// keeps that address when the controller starts, and the speakers announce it: a client on the
// LAN resolves it by ARP and reaches a Pod. (That MetalLB's own controller leaves exactly such
// Services, for hundreds of them, is test/takeover's.)
func TestTakeOverMetalLBAddressAnnounced(t *testing.T) {
	const ip = "198.51.100.222"
	if err := theLab.StopController(); err != nil {
		t.Fatal(err)
	}
	running := false
	t.Cleanup(func() {
		if !running {
			if err := theLab.StartController(); err != nil {
				t.Error(err)
			}
		}
	})
	s := echoService("from-metallb", "lab-l2")
	delete(s.Annotations, v1alpha1.AnnotationPool)
	s.Annotations["metallb.io/address-pool"] = "lab-l2"
	s.Annotations["metallb.io/ip-allocated-from-pool"] = "lab-l2"
	got, err := cs.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteService(t, s.Namespace, s.Name) })
	got.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	if _, err := cs.CoreV1().Services(s.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := theLab.StartController(); err != nil {
		t.Fatal(err)
	}
	running = true
	kit.Eventually(t, converge, "the controller adopts the Service with its address", func(context.Context) error {
		svc, err := cs.CoreV1().Services(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].IP != ip {
			t.Fatalf("the address changed: %v", ing) // renumbering is the failure this test exists for
		}
		if !slices.Contains(svc.Finalizers, v1alpha1.ServiceFinalizer) {
			return fmt.Errorf("finalizers %v", svc.Finalizers)
		}
		return nil
	})
	kit.Eventually(t, converge, ip+" answered by ARP on the LAN", func(context.Context) error {
		_, err := arpOwner(ip)
		return err
	})
	var a answer
	kit.Eventually(t, converge, "a client on the LAN reaches a Pod through "+ip, func(context.Context) (err error) {
		a, err = request(theLab.ClientL2(), addr80(ip))
		return err
	})
	pods, err := readyEchoPods()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pods, a.Pod) {
		t.Fatalf("answer from %q, not one of the demo's Pods %v", a.Pod, pods)
	}
}
