package bgp

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// The BGPPeer settings MetalLB users bring: dynamicASN, routerID, connectTime, vrf, disableMP,
// and a password Secret in another namespace.
func TestDesiredPeerSettings(t *testing.T) {
	in := Input{
		Node:  testNode,
		Pools: testPools,
		Peers: []*v1alpha1.BGPPeer{
			peer("dyn-int", "192.0.2.1", 0, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.DynamicASN = v1alpha1.DynamicASNInternal
			}),
			peer("dyn-ext", "192.0.2.2", 0, 64512, func(s *v1alpha1.BGPPeerSpec) { s.DynamicASN = v1alpha1.DynamicASNExternal }),
			peer("both", "192.0.2.3", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) { s.DynamicASN = v1alpha1.DynamicASNExternal }),
			peer("neither", "192.0.2.4", 0, 64512),
			peer("id", "192.0.2.5", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.RouterID = "10.0.0.1"
				s.ConnectTime = &metav1.Duration{Duration: 2 * time.Second}
			}),
			peer("bad-id", "192.0.2.6", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) { s.RouterID = "2001:db8::1" }),
			peer("bad-connect", "192.0.2.7", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.ConnectTime = &metav1.Duration{Duration: 1500 * time.Millisecond}
			}),
			peer("vrf", "192.0.2.8", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) { s.VRF = "red" }),
			peer("no-vrf", "192.0.2.9", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) { s.VRF = "blue" }),
			peer("v4-only", "192.0.2.10", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) { s.DisableMP = true }),
			peer("v6-only", "2001:db8::1", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) { s.DisableMP = true }),
			peer("mp", "2001:db8::2", 64500, 64512),
			peer("other-ns", "192.0.2.12", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "pw", Namespace: "net"}
			}),
			peer("denied-ns", "192.0.2.13", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "pw", Namespace: "tenant"}
			}),
		},
		Advertisements: []*v1alpha1.BGPAdvertisement{adv("all", func(s *v1alpha1.BGPAdvertisementSpec) { s.LocalPref = u32(300) })},
		Services:       []Service{svc("ns/web", "198.51.100.10", "2001:db8:ff::10")},
		HasDevice:      func(name string) bool { return name == "red" },
		Password: func(ref v1alpha1.SecretKeyRef) (string, error) {
			if ref.Namespace == "net" {
				return "pw-from-net", nil
			}
			return "", errors.New("the speakers may not read Secrets in namespace " + ref.Namespace)
		},
	}
	got, _ := Desired(in)
	for name, want := range map[string]string{
		"both":        "exactly one of peerASN and dynamicASN",
		"neither":     "exactly one of peerASN and dynamicASN",
		"bad-id":      `routerID "2001:db8::1"`,
		"bad-connect": "connectTime 1.5s",
		"no-vrf":      `vrf "blue": no such device on node n1`,
		"denied-ns":   "may not read Secrets in namespace tenant",
	} {
		if s := got[name]; s == nil || !strings.Contains(s.Invalid, want) || len(s.Paths) != 0 {
			t.Errorf("%s: want invalid with %q, got %+v", name, want, s)
		}
	}
	for _, name := range []string{"dyn-int", "dyn-ext", "id", "vrf", "v4-only", "v6-only", "mp", "other-ns"} {
		if got[name] == nil || got[name].Invalid != "" {
			t.Fatalf("%s: %+v", name, got[name])
		}
	}
	// dynamicASN decides iBGP: LOCAL_PREF goes to the internal peer only.
	if p := got["dyn-int"].Paths[mustPrefix("198.51.100.10/32")]; p.LocalPref == nil || *p.LocalPref != 300 {
		t.Errorf("dynamicASN internal: LOCAL_PREF %v, want 300", p.LocalPref)
	}
	if p := got["dyn-ext"].Paths[mustPrefix("198.51.100.10/32")]; p.LocalPref != nil {
		t.Errorf("dynamicASN external: LOCAL_PREF %v, want none", *p.LocalPref)
	}
	if c := got["dyn-int"].Config; c.PeerASN != 0 || c.DynamicASN != "internal" {
		t.Errorf("dynamic session config %+v", c)
	}
	if c := got["id"].Config; c.RouterID.String() != "10.0.0.1" || c.ConnectRetry != 2*time.Second {
		t.Errorf("routerID/connectTime: %+v", c)
	}
	if c := got["dyn-ext"].Config; c.RouterID.String() != "192.0.2.11" || c.ConnectRetry != defaultConnectTime {
		t.Errorf("defaults: %+v", c)
	}
	if got["vrf"].Config.VRF != "red" || got["other-ns"].Config.Password != "pw-from-net" {
		t.Errorf("vrf %q, password %q", got["vrf"].Config.VRF, got["other-ns"].Config.Password)
	}
	// disableMP: each session carries its own family only; without it, one session both.
	for name, want := range map[string][]string{
		"v4-only": {"198.51.100.10/32"},
		"v6-only": {"2001:db8:ff::10/128"},
		"mp":      {"198.51.100.10/32", "2001:db8:ff::10/128"},
	} {
		if p := prefixes(got[name]); !slices.Equal(p, want) {
			t.Errorf("%s: prefixes %v, want %v", name, p, want)
		}
	}
	if f := apiPeer(got["v4-only"].Config).AfiSafis; len(f) != 1 || f[0].Config.Family.Afi != familyV4.Afi {
		t.Errorf("disableMP IPv4 session negotiates %v", f)
	}
	if f := apiPeer(got["v6-only"].Config).AfiSafis; len(f) != 1 || f[0].Config.Family.Afi != familyV6.Afi {
		t.Errorf("disableMP IPv6 session negotiates %v", f)
	}
	if p := apiPeer(got["vrf"].Config); p.Transport.BindInterface != "red" || p.Timers.Config.ConnectRetry != 5 {
		t.Errorf("vrf session: bind %q, connect retry %d", p.Transport.BindInterface, p.Timers.Config.ConnectRetry)
	}
}

func TestWrongKindOfDynamicPeer(t *testing.T) {
	in := SessionConfig{LocalASN: 64512, DynamicASN: "internal"}
	ex := SessionConfig{LocalASN: 64512, DynamicASN: "external"}
	if wrongKind(in, 64512) != "" || wrongKind(ex, 64500) != "" {
		t.Error("a router of the right kind refused")
	}
	if !strings.Contains(wrongKind(in, 64500), "differs") || !strings.Contains(wrongKind(ex, 64512), "equals") {
		t.Error("a router of the wrong kind accepted")
	}
}

// Community aliases resolve in advertisements (standard and large), conflicting definitions
// and unknown aliases are reported and leave the rest working; ipPoolSelectors add pools by
// label to those named.
func TestDesiredCommunityAliasesAndPoolSelectors(t *testing.T) {
	comm := func(name string, kv ...string) *v1alpha1.Community {
		c := &v1alpha1.Community{ObjectMeta: metav1.ObjectMeta{Name: name}}
		for i := 0; i < len(kv); i += 2 {
			c.Spec.Communities = append(c.Spec.Communities, v1alpha1.CommunityAlias{Name: kv[i], Value: kv[i+1]})
		}
		return c
	}
	pools := append(testPools, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "green", Labels: map[string]string{"tier": "edge"}},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.128/25"}}})
	in := Input{
		Node:  testNode,
		Pools: pools,
		Peers: []*v1alpha1.BGPPeer{peer("p", "192.0.2.1", 64500, 64512)},
		Communities: []*v1alpha1.Community{
			comm("a", "vpn-only", "1234:1", "big", "large:64512:7:8", "shared", "9:9"),
			comm("b", "shared", "9:9", "clash", "1:1"),
			comm("c", "clash", "2:2"),
		},
		Advertisements: []*v1alpha1.BGPAdvertisement{
			adv("aliases", func(s *v1alpha1.BGPAdvertisementSpec) {
				s.IPPools = []string{"blue"}
				s.Communities = []string{"vpn-only", "big", "shared", "no-export", "large:1:2:3", "5:5"}
			}),
			adv("by-label", func(s *v1alpha1.BGPAdvertisementSpec) {
				s.IPPools = []string{"red"}
				s.IPPoolSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
			}),
			adv("unknown", func(s *v1alpha1.BGPAdvertisementSpec) { s.Communities = []string{"nope"} }),
			adv("uses-clash", func(s *v1alpha1.BGPAdvertisementSpec) { s.Communities = []string{"clash"} }),
		},
		Services: []Service{svc("ns/a", "198.51.100.10"), svc("ns/b", "203.0.113.10"), svcIn(pools, "ns/c", "192.0.2.200")},
	}
	got, problems := Desired(in)
	s := got["p"]
	if p := prefixes(s); !slices.Equal(p, []string{"192.0.2.200/32", "198.51.100.10/32", "203.0.113.10/32"}) {
		t.Errorf("prefixes %v", p)
	}
	p := s.Paths[mustPrefix("198.51.100.10/32")]
	if want := []uint32{5<<16 | 5, 9<<16 | 9, 1234<<16 | 1, 0xFFFFFF01}; !slices.Equal(p.Communities, want) {
		t.Errorf("communities %x, want %x", p.Communities, want)
	}
	if want := []LargeCommunity{{Global: 1, Local1: 2, Local2: 3}, {Global: 64512, Local1: 7, Local2: 8}}; !slices.Equal(p.LargeCommunities, want) {
		t.Errorf("large communities %v, want %v", p.LargeCommunities, want)
	}
	var got2 []string
	for _, pr := range problems {
		got2 = append(got2, pr.Kind+"/"+pr.Name+": "+pr.Message)
	}
	slices.Sort(got2)
	want := []string{
		`BGPAdvertisement/unknown: communities[0]: community "nope": no Community object defines this alias (known: big, shared, vpn-only)`,
		`BGPAdvertisement/uses-clash: communities[0]: community "clash": alias "clash" is defined differently by Communities "b" and "c"`,
		`Community/b: alias "clash" is defined differently by Communities "b" and "c"`,
		`Community/c: alias "clash" is defined differently by Communities "b" and "c"`,
	}
	if !slices.Equal(got2, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got2, "\n"), strings.Join(want, "\n"))
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
