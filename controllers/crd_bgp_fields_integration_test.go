package controllers_test

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// The apiserver refuses bad values of the BGP fields MetalLB users bring (dynamicASN,
// routerID, connectTime, vrf, community aliases) with a message naming the field, and takes
// the good ones.
func TestBGPMetalLBFieldsValidation(t *testing.T) {
	obj := func(kind, name string, spec map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": kind,
			"metadata": map[string]any{"name": name}, "spec": spec,
		}}
	}
	peer := func(name string, kv ...any) *unstructured.Unstructured {
		spec := map[string]any{"peerAddress": "192.0.2.1", "localASN": int64(64512)}
		for i := 0; i < len(kv); i += 2 {
			spec[kv[i].(string)] = kv[i+1]
		}
		return obj("BGPPeer", name, spec)
	}
	comm := func(name, alias, value string) *unstructured.Unstructured {
		return obj("Community", name, map[string]any{"communities": []any{map[string]any{"name": alias, "value": value}}})
	}
	adv := func(name string, comms ...any) *unstructured.Unstructured {
		return obj("BGPAdvertisement", name, map[string]any{"communities": comms})
	}
	for _, tc := range []struct {
		obj  *unstructured.Unstructured
		want string // "" means accepted, else a fragment of the refusal
	}{
		{peer("dyn-internal", "dynamicASN", "internal"), ""},
		{peer("dyn-external", "dynamicASN", "external", "routerID", "10.0.0.1", "connectTime", "2s", "vrf", "red", "disableMP", true), ""},
		{peer("dyn-and-asn", "dynamicASN", "external", "peerASN", int64(64500)), "exactly one of peerASN and dynamicASN"},
		{peer("no-asn"), "exactly one of peerASN and dynamicASN"},
		{peer("dyn-bad", "dynamicASN", "sometimes"), "dynamicASN"},
		{peer("rid-v6", "peerASN", int64(64500), "routerID", "2001:db8::1"), "routerID"},
		{peer("rid-zero", "peerASN", int64(64500), "routerID", "0.0.0.0"), "routerID"},
		{peer("connect-long", "peerASN", int64(64500), "connectTime", "20h"), "connectTime"},
		{peer("vrf-slash", "peerASN", int64(64500), "vrf", "a/b"), "vrf"},
		{peer("secret-ns", "peerASN", int64(64500), "passwordSecret", map[string]any{"name": "pw", "namespace": "net"}), ""},
		{comm("aliases", "vpn-only", "64512:1"), ""},
		{comm("large-alias", "tagged", "large:64512:1:2"), ""},
		{comm("well-known", "no-export", "1:1"), "well-known"},
		{comm("bad-value", "x", "70000:1"), "ASN:VALUE"},
		{comm("bad-name", "1abc", "1:1"), "must start with a letter"},
		{adv("alias-use", "vpn-only", "large:1:2:3", "64512:100", "no-export"), ""},
		{adv("bad-large", "large:1:2"), "communities"},
		{adv("bad-std", "65536:1"), "communities"},
	} {
		err := k8s.Create(ctx, tc.obj)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %s refused: %v", tc.obj.GetKind(), tc.obj.GetName(), err)
		case tc.want != "" && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %s: err %v, want Invalid with %q", tc.obj.GetKind(), tc.obj.GetName(), err, tc.want)
		}
		if err == nil {
			_ = k8s.Delete(ctx, tc.obj)
		}
	}
}
