package controllers_test

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// The apiserver takes every 32-bit ASN and LOCAL_PREF (4-byte private ASNs such as
// 4200000000 included) and refuses what does not fit in 32 bits. Unstructured objects,
// because a uint32 field cannot even express the values to refuse.
func TestBGPNumbersTakeTheFull32Bits(t *testing.T) {
	peer := func(name string, peerASN, localASN int64) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BGPPeer",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"peerAddress": "192.0.2.1", "peerASN": peerASN, "localASN": localASN},
		}}
		return u
	}
	adv := func(name string, localPref int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BGPAdvertisement",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"localPref": localPref},
		}}
	}
	for _, tc := range []struct {
		obj   *unstructured.Unstructured
		field string // "" means accepted
	}{
		{peer("asn4-private", 4200000001, 4200000000), ""},
		{peer("asn4-max", 4294967295, 4294967295), ""},
		{peer("asn2", 64500, 64512), ""},
		{peer("asn-too-big-local", 64500, 4294967296), "localASN"},
		{peer("asn-too-big-peer", 4294967296, 64512), "peerASN"},
		{peer("asn-zero", 0, 64512), "peerASN"},
		{adv("localpref-max", 4294967295), ""},
		{adv("localpref-big", 3000000000), ""},
		{adv("localpref-too-big", 4294967296), "localPref"},
		{adv("localpref-negative", -1), "localPref"},
	} {
		err := k8s.Create(ctx, tc.obj)
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s %s refused: %v", tc.obj.GetKind(), tc.obj.GetName(), err)
		case tc.field != "" && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.field)):
			t.Errorf("%s %s: err %v, want Invalid naming %s", tc.obj.GetKind(), tc.obj.GetName(), err, tc.field)
		}
		if err == nil {
			_ = k8s.Delete(ctx, tc.obj)
		}
	}
	// Through the Go types, the way the speakers read them.
	typed := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "asn4-typed"},
		Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 4294967294, LocalASN: 4200000000}}
	create(t, typed)
	t.Cleanup(func() { _ = k8s.Delete(ctx, typed) })
	var back v1alpha1.BGPPeer
	if err := k8s.Get(ctx, types.NamespacedName{Name: typed.Name}, &back); err != nil {
		t.Fatal(err)
	}
	if back.Spec.PeerASN != 4294967294 || back.Spec.LocalASN != 4200000000 {
		t.Errorf("read back peerASN %d localASN %d", back.Spec.PeerASN, back.Spec.LocalASN)
	}
}
