package ipam

import (
	"context"
	"errors"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/describe"
)

// The local pools answer as a provider: addresses for a description, the Services holding
// them, bad input as an InvalidRequest that keeps what is held, and release.
func TestPoolsProvider(t *testing.T) {
	ctx := context.Background()
	st := New(Hooks{})
	if bad := st.LoadPools([]v1alpha1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "lan"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.8/29"}}}}); len(bad) != 0 {
		t.Fatal(bad)
	}
	var p providers.Provider = Pools{State: st}
	web := svc(func(s *corev1.Service) {
		s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = s.Spec.IPFamilies[:1], nil
		s.Annotations[v1alpha1.AnnotationPool] = "lan"
		s.Annotations[v1alpha1.MetalLBAnnotationPool[0]] = "other"
	})
	ing, err := p.Ensure(ctx, describe.Spec(web, nil))
	if err != nil || len(ing.IPs) != 1 || ing.IPs[0].String() != "192.0.2.8" {
		t.Fatalf("Ensure: %v, %v; want 192.0.2.8", ing.IPs, err)
	}
	if len(ing.Warnings) != 1 {
		t.Fatalf("warnings %q, want the disagreeing pool annotations", ing.Warnings)
	}
	if keys, err := p.Owned(ctx); err != nil || !slices.Equal(keys, []string{"ns/web"}) {
		t.Fatalf("Owned: %v, %v", keys, err)
	}

	web.Annotations[v1alpha1.AnnotationIPs] = "not-an-address"
	ing, err = p.Ensure(ctx, describe.Spec(web, nil))
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonInvalidRequest || len(ing.IPs) != 1 || ing.IPs[0].String() != "192.0.2.8" {
		t.Fatalf("bad input: %v, %v; want InvalidRequest keeping 192.0.2.8", ing.IPs, err)
	}

	if err := p.Release(ctx, "ns/web"); err != nil {
		t.Fatal(err)
	}
	if keys, _ := p.Owned(ctx); len(keys) != 0 || len(st.Held("ns/web")) != 0 {
		t.Fatalf("after Release: owned %v, held %v", keys, st.Held("ns/web"))
	}
}
