package metallb

import (
	"fmt"
	"strings"
	"testing"

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
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: to-dyn, namespace: metallb-system}
spec: {peers: [dyn]}
`)
	p := find[*v1alpha1.BGPPeer](t, res, "p")
	if p.Spec.LocalASN != 4200000000 || p.Spec.PeerASN != 64500 || p.Labels["a"] != "b" {
		t.Errorf("peer %+v", p)
	}
	sec := find[*corev1.Secret](t, res, "p-bgp-password")
	if sec.Namespace != "fairlead-system" || sec.StringData["password"] != "sesame" ||
		p.Spec.PasswordSecret == nil || p.Spec.PasswordSecret.Name != sec.Name || p.Spec.PasswordSecret.Key != "password" {
		t.Errorf("password: secret %+v, ref %+v", sec, p.Spec.PasswordSecret)
	}
	for _, l := range res.Report {
		if strings.Contains(l, "sesame") {
			t.Errorf("the report shows the password: %s", l)
		}
	}
	for _, f := range []string{"spec.routerID", "spec.connectTime", "spec.vrf", "spec.disableMP"} {
		hasLine(t, res, "BGPPeer metallb-system/p: "+f, "cannot be carried over yet", "converted without it")
	}
	hasLine(t, res, "BGPPeer metallb-system/p: spec.dualStackAddressFamily unset", "IPv4 session")
	hasLine(t, res, "BGPPeer metallb-system/dyn: spec.dynamicASN \"external\" cannot be carried over yet", "not converted")
	hasLine(t, res, "BGPPeer metallb-system/unnumbered: spec.interface \"eth1\" cannot be carried over yet", "not converted")
	hasLine(t, res, "BGPAdvertisement metallb-system/to-dyn: spec.peers: BGPPeer dyn is not converted")
	for _, o := range res.Objects {
		if o.GetName() == "dyn" || o.GetName() == "unnumbered" {
			t.Errorf("%s was converted", o.GetName())
		}
	}
	for _, l := range res.Report {
		if strings.Contains(l, "metallb-system/both") {
			t.Errorf("a dual-stack peer needs no report line: %s", l)
		}
	}
}

func TestSelectorsResolvedForBGP(t *testing.T) {
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
kind: IPAddressPool
metadata: {name: green, namespace: metallb-system}
spec: {addresses: [192.0.2.32/28]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: adv, namespace: metallb-system}
spec:
  ipAddressPools: [blue]
  ipAddressPoolSelectors: [{matchLabels: {color: red}}]
`)
	a := find[*v1alpha1.BGPAdvertisement](t, res, "adv")
	if got := strings.Join(a.Spec.IPPools, ","); got != "blue,red" {
		t.Errorf("ipPools %s, want blue,red", got)
	}
	hasLine(t, res, "BGPAdvertisement metallb-system/adv: spec.ipAddressPoolSelectors cannot be carried over yet", "pools blue, red")
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
