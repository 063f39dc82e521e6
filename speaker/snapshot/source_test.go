package snapshot_test

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// The Source follows a real apiserver: a change to any object it reads (core or Fairlead's)
// is signalled to every subscriber and shows in the next Snapshot; without a change the same
// Snapshot is handed out again rather than rebuilt.
func TestSourceFollowsTheAPI(t *testing.T) {
	env := controlplane.StartForTest(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(env.Config)
	f := informers.NewSharedInformerFactory(cs, 0)
	src, err := snapshot.NewSource(snapshot.SourceOptions{Informers: f, Dynamic: dynamic.NewForConfigOrDie(env.Config), DefaultClass: false})
	if err != nil {
		t.Fatal(err)
	}
	a, b := src.Changes(), src.Changes()
	f.Start(ctx.Done())
	src.Start(ctx)
	if !src.WaitForCacheSync(ctx) {
		t.Fatal("not synced")
	}
	first := src.Snapshot()
	if src.Snapshot() != first {
		t.Error("rebuilt without a change")
	}
	drain := func(ch <-chan struct{}) {
		for {
			select {
			case <-ch:
			default:
				return
			}
		}
	}
	drain(a)
	drain(b)
	waitFor := func(what string, ok func(*snapshot.Snapshot) bool) {
		t.Helper()
		for _, ch := range []<-chan struct{}{a, b} {
			select {
			case <-ch:
			case <-ctx.Done():
				t.Fatalf("%s: no change signalled", what)
			}
		}
		// Within the test's minute, which the informers run under too.
		deadline, _ := ctx.Deadline()
		kit.Eventually(t, time.Until(deadline), what+" in the snapshot", func(context.Context) error {
			if !ok(src.Snapshot()) {
				return errors.New("not there yet")
			}
			return nil
		})
	}

	if err := env.Client.Create(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor("IPPool", func(s *snapshot.Snapshot) bool { return s.Pool("lan") != nil })

	class := v1alpha1.LoadBalancerClass
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "classless"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ours"}, Spec: corev1.ServiceSpec{LoadBalancerClass: &class}},
	} {
		svc.Spec.Type = corev1.ServiceTypeLoadBalancer
		svc.Spec.Ports = []corev1.ServicePort{{Port: 80}}
		if err := env.Client.Create(ctx, svc); err != nil {
			t.Fatal(err)
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.7"}}
		if err := env.Client.Status().Update(ctx, svc); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("Service", func(s *snapshot.Snapshot) bool { return s.Service("default/ours") != nil })
	s := src.Snapshot()
	if s.Service("default/classless") != nil {
		t.Error("a classless Service is ours with DefaultClass false")
	}
	if got := s.Service("default/ours").Addrs; len(got) != 1 || got[0].Pool != "lan" {
		t.Errorf("addresses %+v, want 198.51.100.7 of pool lan", got)
	}
	if svc, err := src.Service("default", "classless"); err != nil || svc.Name != "classless" {
		t.Errorf("Source.Service reads any Service: %v, %v", svc, err)
	}
}
