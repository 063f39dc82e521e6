package metallb

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

func find[T client.Object](t *testing.T, res *Result, name string) T {
	t.Helper()
	for _, o := range res.Objects {
		if x, ok := o.(T); ok && o.GetName() == name {
			return x
		}
	}
	var zero T
	t.Fatalf("no %T named %q in %v", zero, name, res.Objects)
	return zero
}

func mustConvert(t *testing.T, doc string) *Result {
	t.Helper()
	res, err := convertString(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func hasLine(t *testing.T, res *Result, parts ...string) {
	t.Helper()
	for _, l := range res.Report {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no report line with %q in:\n%s", parts, strings.Join(res.Report, "\n"))
}

const poolDoc = `apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: %s, namespace: metallb-system}
spec: {addresses: [%s]%s}
---
`

func pools(specs ...[3]string) string {
	var b strings.Builder
	for _, s := range specs {
		extra := ""
		if s[2] != "" {
			extra = ", " + s[2]
		}
		b.WriteString(fmt.Sprintf(poolDoc, s[0], s[1], extra))
	}
	return b.String()
}

// MetalLB's order: pools with a serviceAllocation by priority (lower first, 0 after every set
// one), then pools without one. Fairlead's: priority, lower first, unset last.
func TestPriorityOrderIsMetalLBs(t *testing.T) {
	res := mustConvert(t, pools(
		[3]string{"p5", "192.0.2.0/28", "serviceAllocation: {priority: 5, namespaces: [a]}"},
		[3]string{"p1", "192.0.2.16/28", "serviceAllocation: {priority: 1, namespaces: [a]}"},
		[3]string{"p0", "192.0.2.32/28", "serviceAllocation: {namespaces: [a]}"},
		[3]string{"pall", "192.0.2.48/28", "serviceAllocation: {priority: 3}"},
		[3]string{"free", "192.0.2.64/28", ""},
	))
	prio := func(name string) string {
		p := find[*v1alpha1.IPPool](t, res, name).Spec.Priority
		if p == nil {
			return "unset"
		}
		return fmt.Sprintf("%d", *p)
	}
	for name, want := range map[string]string{"p1": "1", "pall": "3", "p5": "5", "p0": "6", "free": "unset"} {
		if got := prio(name); got != want {
			t.Errorf("pool %s: priority %s, want %s", name, got, want)
		}
	}
	// A serviceAllocation with only a priority admits every Service, as in MetalLB.
	if a := find[*v1alpha1.IPPool](t, res, "pall").Spec.AllocateTo; a != nil {
		t.Errorf("pall: allocateTo %+v, want none", a)
	}
	if a := find[*v1alpha1.IPPool](t, res, "p5").Spec.AllocateTo; a == nil || len(a.Namespaces) != 1 || a.Namespaces[0] != "a" {
		t.Errorf("p5: allocateTo %+v, want namespaces [a]", a)
	}
	hasLine(t, res, "IPAddressPool metallb-system/p0", "written as priority 6")

	// Equal priorities: MetalLB picks at random, said in the report.
	res = mustConvert(t, pools(
		[3]string{"b", "192.0.2.0/28", "serviceAllocation: {priority: 2}"},
		[3]string{"a", "192.0.2.16/28", "serviceAllocation: {priority: 2}"},
	))
	hasLine(t, res, "IPAddressPools a, b: the same priority (2)")
}

func TestPoolAddresses(t *testing.T) {
	res := mustConvert(t, pools([3]string{"p", "192.0.2.5/24, ' 198.51.100.1 - 198.51.100.9 '", "autoAssign: true, avoidBuggyIPs: true"}))
	p := find[*v1alpha1.IPPool](t, res, "p")
	if got := strings.Join(p.Spec.Addresses, ","); got != "192.0.2.0/24,198.51.100.1 - 198.51.100.9" {
		t.Errorf("addresses %s", got)
	}
	if p.Spec.AutoAssign == nil || !*p.Spec.AutoAssign || !p.Spec.AvoidBuggyIPs {
		t.Errorf("autoAssign/avoidBuggyIPs not carried: %+v", p.Spec)
	}
	hasLine(t, res, "spec.addresses[0]: 192.0.2.5/24 has host bits set; MetalLB reads it as 192.0.2.0/24")
}

func TestPeerFields(t *testing.T) {
	res := mustConvert(t, pools([3]string{"v6", "2001:db8:1::/120", ""})+`
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: p, namespace: metallb-system, labels: {a: b}}
spec:
  myASN: 4200000000
  peerASN: 64500
  peerAddress: 192.0.2.1
  password: sesame
  routerID: 192.0.2.9
  connectTime: 5s
  vrf: red
  disableMP: true
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: dyn, namespace: metallb-system}
spec: {myASN: 64512, dynamicASN: external, peerAddress: 192.0.2.2}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: unnumbered, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, interface: eth1}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: both, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: "2001:db8::1", dualStackAddressFamily: true}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: both-but-mp-off, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: "2001:db8::2", dualStackAddressFamily: true, disableMP: true}
---
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata: {name: old, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.3}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: to-dyn, namespace: metallb-system}
spec: {peers: [dyn, unnumbered]}
`)
	p := find[*v1alpha1.BGPPeer](t, res, "p")
	if p.Spec.LocalASN != 4200000000 || p.Spec.PeerASN != 64500 || p.Labels["a"] != "b" {
		t.Errorf("peer %+v", p)
	}
	if s := p.Spec; s.RouterID != "192.0.2.9" || s.ConnectTime == nil || s.ConnectTime.Duration != 5*time.Second || s.VRF != "red" || !s.DisableMP {
		t.Errorf("routerID, connectTime, vrf, disableMP not carried over: %+v", s)
	}
	sec := find[*corev1.Secret](t, res, "p-bgp-password")
	if sec.Namespace != "fairlead-system" || sec.StringData["password"] != "sesame" ||
		p.Spec.PasswordSecret == nil || p.Spec.PasswordSecret.Name != sec.Name || p.Spec.PasswordSecret.Key != "password" || p.Spec.PasswordSecret.Namespace != "" {
		t.Errorf("password: secret %+v, ref %+v", sec, p.Spec.PasswordSecret)
	}
	for _, l := range res.Report {
		if strings.Contains(l, "sesame") {
			t.Errorf("the report shows the password: %s", l)
		}
	}
	if d := find[*v1alpha1.BGPPeer](t, res, "dyn").Spec; d.DynamicASN != "external" || d.PeerASN != 0 {
		t.Errorf("dyn: dynamicASN %q, peerASN %d", d.DynamicASN, d.PeerASN)
	}
	// MetalLB keeps a session to its own family unless dualStackAddressFamily says otherwise;
	// disableMP (deprecated) true wins.
	for name, want := range map[string]bool{"p": true, "dyn": true, "both": false, "both-but-mp-off": true, "old": true} {
		if got := find[*v1alpha1.BGPPeer](t, res, name).Spec.DisableMP; got != want {
			t.Errorf("%s: disableMP %v, want %v", name, got, want)
		}
	}
	for _, o := range res.Objects {
		if o.GetName() == "unnumbered" {
			t.Errorf("%s was converted", o.GetName())
		}
	}
	// What carries over exactly says nothing; what does not, one line each.
	want := []string{
		"BGPPeer metallb-system/p: spec.password: moved to Secret fairlead-system/p-bgp-password (Fairlead reads passwords from Secrets only)",
		`BGPPeer metallb-system/unnumbered: spec.interface "eth1" cannot be carried over yet: Fairlead peers by address only (no unnumbered BGP); the peer is not converted`,
		"BGPAdvertisement metallb-system/to-dyn: spec.peers: BGPPeer unnumbered is not converted (see above), so these paths go to the other peers only",
	}
	if !slices.Equal(res.Report, want) {
		t.Errorf("report:\n%s\nwant:\n%s", strings.Join(res.Report, "\n"), strings.Join(want, "\n"))
	}
}

// A BGPPeer of MetalLB with vrf and bfdProfile: Fairlead's speakers refuse both together, so the
// peer keeps its VRF and loses BFD, and the report says so.
func TestPeerBFDInVRF(t *testing.T) {
	res := mustConvert(t, `
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: p, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, vrf: red, bfdProfile: fast}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: q, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.2, bfdProfile: fast}
`)
	p := find[*v1alpha1.BGPPeer](t, res, "p")
	if p.Spec.VRF != "red" || p.Spec.BFDProfile != "" {
		t.Errorf("p: vrf %q, bfdProfile %q", p.Spec.VRF, p.Spec.BFDProfile)
	}
	if q := find[*v1alpha1.BGPPeer](t, res, "q"); q.Spec.BFDProfile != "fast" {
		t.Errorf("q: bfdProfile %q", q.Spec.BFDProfile)
	}
	hasLine(t, res, `BGPPeer metallb-system/p: spec.bfdProfile "fast" cannot be carried over yet together with spec.vrf "red"`, "converted without BFD")
	if len(res.Report) != 1 {
		t.Errorf("report:\n%s", strings.Join(res.Report, "\n"))
	}
}

// passwordSecret: MetalLB reads it in its own namespace (also when none is named), Fairlead's
// speakers in theirs unless granted another: the namespace is written, and the grant reported.
func TestPasswordSecretNamespace(t *testing.T) {
	const doc = `apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: p, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, passwordSecret: {name: md5}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: q, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.2, passwordSecret: {name: md5, namespace: metallb-system}}
`
	for _, secrets := range []string{"fairlead-system", "metallb-system"} {
		var in Input
		if err := in.AddYAML(strings.NewReader(doc), "test"); err != nil {
			t.Fatal(err)
		}
		res, err := Convert(&in, Options{SecretNamespace: secrets})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"p", "q"} {
			ref := find[*v1alpha1.BGPPeer](t, res, name).Spec.PasswordSecret
			if ref == nil || *ref != (v1alpha1.SecretKeyRef{Name: "md5", Namespace: "metallb-system", Key: "password"}) {
				t.Errorf("speakers in %s: %s: passwordSecret %+v", secrets, name, ref)
			}
		}
		if secrets == "metallb-system" {
			if len(res.Report) != 0 {
				t.Errorf("speakers in MetalLB's namespace need no grant:\n%s", strings.Join(res.Report, "\n"))
			}
			continue
		}
		for _, name := range []string{"p", "q"} {
			hasLine(t, res, "BGPPeer metallb-system/"+name+": spec.passwordSecret: Secret metallb-system/md5 is read where it is: grant the speakers namespace metallb-system with the chart value speaker.bgpSecretNamespaces")
		}
	}
}

// Community aliases become Fairlead aliases, and advertisements keep naming them; a name
// Fairlead reads otherwise (a well-known community) or refuses is written out as its value.
func TestCommunities(t *testing.T) {
	long := strings.Repeat("a", 65)
	res := mustConvert(t, fmt.Sprintf(`
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: one, namespace: metallb-system}
spec:
  communities:
  - {name: vpn-only, value: "64512:100"}
  - {name: Big.Deal_1, value: "large:64512:1:2"}
  - {name: no-export, value: "64512:1"}
  - {name: no-advertise, value: "64512:2"}
  - {name: no-export-subconfed, value: "64512:3"}
  - {name: no-peer, value: "64512:4"}
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: two}
spec:
  communities:
  - {name: 7up, value: "64512:7"}
  - {name: "with space", value: "large:1:2:3"}
  - {name: %s, value: "64512:65"}
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: empty, namespace: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: a, namespace: metallb-system}
spec:
  communities: [vpn-only, Big.Deal_1, no-export, no-advertise, no-export-subconfed, no-peer, 7up, with space, %s, "64512:1", "large:0:00:1", "65535:65281"]
`, long, long))
	one := find[*v1alpha1.Community](t, res, "one")
	if got := fmt.Sprint(one.Spec.Communities); got != "[{vpn-only 64512:100} {Big.Deal_1 large:64512:1:2}]" {
		t.Errorf("Community one: %s", got)
	}
	if two := find[*v1alpha1.Community](t, res, "two"); len(two.Spec.Communities) != 0 {
		t.Errorf("Community two: %v", two.Spec.Communities)
	}
	find[*v1alpha1.Community](t, res, "empty")
	a := find[*v1alpha1.BGPAdvertisement](t, res, "a")
	// 64512:1 is listed once: as no-export's value and as itself. 65535:65281 is the
	// well-known NO_EXPORT, by number, as MetalLB sends it.
	want := "vpn-only Big.Deal_1 64512:1 64512:2 64512:3 64512:4 64512:7 large:1:2:3 64512:65 large:0:0:1 65535:65281"
	if got := strings.Join(a.Spec.Communities, " "); got != want || len(a.Spec.LargeCommunities) != 0 {
		t.Errorf("communities %q, large %q; want %q", got, a.Spec.LargeCommunities, want)
	}
	for _, n := range []string{"no-export", "no-advertise", "no-export-subconfed", "no-peer"} {
		hasLine(t, res, "Community metallb-system/one", fmt.Sprintf("alias %q cannot be a Fairlead alias: in Fairlead it is the name of a well-known community", n), "get its value 64512:")
	}
	hasLine(t, res, `Community two: spec.communities[0]: alias "7up" cannot be a Fairlead alias: Fairlead's alias names start with a letter`, "get its value 64512:7 instead")
	hasLine(t, res, `Community two: spec.communities[1]: alias "with space" cannot be a Fairlead alias`, "get its value large:1:2:3 instead")
	hasLine(t, res, `Community two: spec.communities[2]: alias "`+long+`" cannot be a Fairlead alias: Fairlead's alias names have at most 64 characters`)
	if len(res.Report) != 7 {
		t.Errorf("report: %d lines, want 7:\n%s", len(res.Report), strings.Join(res.Report, "\n"))
	}
}

// ipAddressPoolSelectors are carried over as selectors: a pool labelled later is advertised, as
// in MetalLB, and selectors that match no pool select none (not every pool).
func TestPoolSelectorsForBGP(t *testing.T) {
	res := mustConvert(t, `
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: red, namespace: metallb-system, labels: {color: red}}
spec: {addresses: [192.0.2.0/28]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: blue, namespace: metallb-system}
spec: {addresses: [192.0.2.16/28]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: adv, namespace: metallb-system}
spec:
  ipAddressPools: [blue]
  ipAddressPoolSelectors: [{matchLabels: {color: red}}]
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: none, namespace: metallb-system}
spec:
  ipAddressPoolSelectors: [{matchLabels: {color: green}}]
`)
	a := find[*v1alpha1.BGPAdvertisement](t, res, "adv")
	if got := strings.Join(a.Spec.IPPools, ","); got != "blue" || len(a.Spec.IPPoolSelectors) != 1 || a.Spec.IPPoolSelectors[0].MatchLabels["color"] != "red" {
		t.Errorf("adv: ipPools %s, ipPoolSelectors %+v", got, a.Spec.IPPoolSelectors)
	}
	n := find[*v1alpha1.BGPAdvertisement](t, res, "none")
	if len(n.Spec.IPPools) != 0 || len(n.Spec.IPPoolSelectors) != 1 || n.Spec.IPPoolSelectors[0].MatchLabels["color"] != "green" {
		t.Errorf("none: ipPools %v, ipPoolSelectors %+v", n.Spec.IPPools, n.Spec.IPPoolSelectors)
	}
	for _, l := range res.Report {
		if strings.Contains(l, "BGPAdvertisement") {
			t.Errorf("selectors carry over exactly: %s", l)
		}
	}
}

func TestOtherNamespacesAndKinds(t *testing.T) {
	res := mustConvert(t, `
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: elsewhere, namespace: default}
spec: {addresses: [192.0.2.0/28]}
---
apiVersion: metallb.io/v1beta1
kind: ServiceL2Status
metadata: {name: l2-abc, namespace: metallb-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
---
apiVersion: v1
kind: List
items:
- apiVersion: metallb.io/v1beta1
  kind: IPAddressPool
  metadata: {name: listed, namespace: metallb-system}
  spec: {addresses: [192.0.2.16/28]}
`)
	hasLine(t, res, "IPAddressPool default/elsewhere: left out: MetalLB reads only its own namespace")
	hasLine(t, res, "ServiceL2Status metallb-system/l2-abc: left out")
	hasLine(t, res, "ConfigMap metallb-system/config: left out", "configmaptocrs")
	find[*v1alpha1.IPPool](t, res, "listed")
	if len(res.Objects) != 1 {
		t.Errorf("objects %v", res.Objects)
	}
}

func TestCrossNamespaceSharingReported(t *testing.T) {
	svc := func(ns, name, ip string) corev1.Service {
		s := corev1.Service{}
		s.Namespace, s.Name = ns, name
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		return s
	}
	in := &Input{Services: []corev1.Service{svc("a", "dns", "192.0.2.5"), svc("b", "dns", "192.0.2.5"), svc("a", "web", "192.0.2.6"), svc("a", "web2", "192.0.2.6"),
		svc("a", "far", "198.51.100.1"), svc("c", "far", "198.51.100.1")}}
	if err := in.AddYAML(strings.NewReader(fmt.Sprintf(poolDoc, "lan", "192.0.2.0/24", "")+fmt.Sprintf(poolDoc, "other", "203.0.113.0/24", "")), "test"); err != nil {
		t.Fatal(err)
	}
	res, err := Convert(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hasLine(t, res, "Services a/dns, b/dns: share 192.0.2.5 across namespaces", "IPPool lan is written with shareAcrossNamespaces: true")
	hasLine(t, res, "Services a/far, c/far: share 198.51.100.1 across namespaces, but no IPAddressPool holds it")
	if !find[*v1alpha1.IPPool](t, res, "lan").Spec.ShareAcrossNamespaces || find[*v1alpha1.IPPool](t, res, "other").Spec.ShareAcrossNamespaces {
		t.Error("only the pool holding the shared address opts in")
	}
	for _, l := range res.Report {
		if strings.Contains(l, "web") {
			t.Errorf("sharing within a namespace needs no line: %s", l)
		}
	}
}
