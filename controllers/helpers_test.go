package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

var nsCounter atomic.Int32

// newNamespace creates a namespace for one test. Namespaces are not deleted: envtest runs no
// namespace controller, so deletion would never finish.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(name) > 60 {
		name = name[:60]
	}
	name = strings.TrimRight(strings.ReplaceAll(name, "_", "-"), "-")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

// poolFor creates an IPPool that only serves namespace ns (unless spec.AllocateTo is given),
// and deletes it when the test ends.
func poolFor(t *testing.T, ns, name string, spec v1alpha1.IPPoolSpec) *v1alpha1.IPPool {
	t.Helper()
	if spec.AllocateTo == nil && ns != "" {
		spec.AllocateTo = &v1alpha1.AllocateTo{Namespaces: []string{ns}}
	}
	p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatalf("creating pool %s: %v", name, err)
	}
	t.Cleanup(func() { deletePoolAndWait(t, name) })
	return p
}

func deletePoolAndWait(t *testing.T, name string) {
	_ = k8s.Delete(context.Background(), &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

type svcOpt func(*corev1.Service)

func withAnnotations(kv ...string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, TargetPort: intstr.FromInt32(p), Protocol: corev1.ProtocolTCP})
		}
	}
}

func withClass(c string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c }
}

func withFamilies(policy corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = &policy
		s.Spec.IPFamilies = fams
	}
}

func lbService(ns, name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func getSvc(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	var s corev1.Service
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatalf("getting service %s/%s: %v", ns, name, err)
	}
	return &s
}

func ingressIPs(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// waitIPs waits until the Service's status holds exactly want.
func waitIPs(t *testing.T, ns, name string, want ...string) *corev1.Service {
	t.Helper()
	var s *corev1.Service
	kit.Eventually(t, 15*time.Second, "the addresses of Service "+ns+"/"+name, func(context.Context) error {
		s = getSvc(t, ns, name)
		if got := ingressIPs(s); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("service %s/%s has ingress %v, want %v (conditions %v)", ns, name, got, want, s.Status.Conditions)
		}
		return nil
	})
	return s
}

// waitAnyIP waits until the Service has one address and returns it.
func waitAnyIP(t *testing.T, ns, name string) string {
	t.Helper()
	var ip string
	kit.Eventually(t, 15*time.Second, "an address for Service "+ns+"/"+name, func(context.Context) error {
		s := getSvc(t, ns, name)
		if got := ingressIPs(s); len(got) != 1 {
			return fmt.Errorf("service %s/%s has ingress %v (conditions %v)", ns, name, got, s.Status.Conditions)
		} else {
			ip = got[0]
		}
		return nil
	})
	return ip
}

// waitFailure waits until the Service's IPAllocated condition is False with reason, and
// returns its message.
func waitFailure(t *testing.T, ns, name, reason string) string {
	t.Helper()
	var msg string
	kit.Eventually(t, 15*time.Second, "Service "+ns+"/"+name+" to fail with "+reason, func(context.Context) error {
		s := getSvc(t, ns, name)
		c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
			return fmt.Errorf("service %s/%s condition %+v, want False/%s", ns, name, c, reason)
		}
		msg = c.Message
		return nil
	})
	return msg
}

// waitEvent waits for an Event with reason about the named object and returns its note.
func waitEvent(t *testing.T, ns, name, reason string) string {
	t.Helper()
	var note string
	kit.Eventually(t, 15*time.Second, "a "+reason+" Event about "+ns+"/"+name, func(context.Context) error {
		var list eventsv1.EventList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Reason == reason {
				note = e.Note
				return nil
			}
		}
		return fmt.Errorf("no %s event for %s/%s among %d events", reason, ns, name, len(list.Items))
	})
	return note
}

func getPool(t *testing.T, name string) *v1alpha1.IPPool {
	t.Helper()
	var p v1alpha1.IPPool
	if err := k8s.Get(ctx, types.NamespacedName{Name: name}, &p); err != nil {
		t.Fatalf("getting pool %s: %v", name, err)
	}
	return &p
}

// waitPoolReady waits until the pool's Ready condition has the given status and reason.
func waitPoolReady(t *testing.T, name string, status metav1.ConditionStatus, reason string) *v1alpha1.IPPool {
	t.Helper()
	var p *v1alpha1.IPPool
	kit.Eventually(t, 15*time.Second, "pool "+name+" Ready "+string(status)+"/"+reason, func(context.Context) error {
		p = getPool(t, name)
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status != status || c.Reason != reason {
			return fmt.Errorf("pool %s condition %+v, want %s/%s", name, c, status, reason)
		}
		return nil
	})
	return p
}

func deleteSvc(t *testing.T, ns, name string) {
	t.Helper()
	if err := k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatalf("deleting service: %v", err)
	}
	kit.Eventually(t, 15*time.Second, "Service "+ns+"/"+name+" to be gone", func(context.Context) error {
		var s corev1.Service
		err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("service %s/%s still there (finalizers %v): %v", ns, name, s.Finalizers, err)
	})
}
