package metallb

import (
	"fmt"
	"strings"
	"testing"
)

// Input MetalLB (or Fairlead's API) would refuse is an error naming the object and the field,
// and the conversion returns nothing.
func TestInvalidInput(t *testing.T) {
	const okPool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: ok, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/28]}\n---\n"
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"unknown field", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28], autoassign: true}",
			[]string{"IPAddressPool p", `unknown field "spec.autoassign"`}},
		{"wrong type", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28], autoAssign: yes please}",
			[]string{"IPAddressPool p", "autoAssign"}},
		{"v1beta2-only field on a v1beta1 peer", "apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, vrf: red}",
			[]string{"BGPPeer p", `unknown field "spec.vrf"`}},
		{"unknown kind", "apiVersion: metallb.io/v1beta1\nkind: AddressPool\nmetadata: {name: p}",
			[]string{"AddressPool p", "not a MetalLB v0.13-v0.15 kind"}},
		{"no addresses", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: []}",
			[]string{"IPAddressPool p", "spec.addresses is empty"}},
		{"reversed range", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28, 192.0.2.99-192.0.2.90]}",
			[]string{"IPAddressPool p", "spec.addresses[1]", "reversed"}},
		{"special-purpose", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [127.0.0.0/24]}",
			[]string{"IPAddressPool p", "spec.addresses[0]", "loopback"}},
		{"overlapping pools", okPool + "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.8/29]}",
			[]string{"IPAddressPool p", "spec.addresses", "overlaps", "IPAddressPool ok"}},
		{"negative priority", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28], serviceAllocation: {priority: -1}}",
			[]string{"IPAddressPool p", "spec.serviceAllocation.priority"}},
		{"duplicate namespace", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28], serviceAllocation: {namespaces: [a, a]}}",
			[]string{"IPAddressPool p", "spec.serviceAllocation.namespaces[1]"}},
		{"bad selector", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28], serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: a, operator: Near}]}]}}",
			[]string{"IPAddressPool p", "spec.serviceAllocation.serviceSelectors[0]"}},
		{"two pools of one name", okPool + okPool,
			[]string{"IPAddressPool metallb-system/ok", "metadata.name"}},
		{"L2 names a missing pool", okPool + "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {ipAddressPools: [ok, nope]}",
			[]string{"L2Advertisement l2", "spec.ipAddressPools[1]", `"nope" does not exist`}},
		{"L2 interface", okPool + "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {interfaces: [a-name-far-too-long-for-linux]}",
			[]string{"L2Advertisement l2", "interfaces"}},
		{"peer without myASN", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerASN: 2, peerAddress: 192.0.2.1}",
			[]string{"BGPPeer p", "spec.myASN"}},
		{"peer address", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: router.example}",
			[]string{"BGPPeer p", "spec.peerAddress"}},
		{"peer ASN and dynamicASN", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, dynamicASN: external, peerAddress: 192.0.2.1}",
			[]string{"BGPPeer p", "spec.dynamicASN"}},
		{"multihop iBGP", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 1, peerAddress: 192.0.2.1, ebgpMultiHop: true}",
			[]string{"BGPPeer p", "spec.ebgpMultiHop"}},
		{"hold time", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: 2s}",
			[]string{"BGPPeer p", "spec.holdTime"}},
		{"keepalive", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 10s}",
			[]string{"BGPPeer p", "spec.keepaliveTime"}},
		{"router ID of IPv6", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, routerID: '2001:db8::1'}",
			[]string{"BGPPeer p", "spec.routerID", "IPv4"}},
		{"router ID zero", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, routerID: 0.0.0.0}",
			[]string{"BGPPeer p", "spec.routerID", "non-zero"}},
		{"connect time in milliseconds", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, connectTime: 1500ms}",
			[]string{"BGPPeer p", "spec.connectTime", "1.5s"}},
		{"connect time too long", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, connectTime: 20h}",
			[]string{"BGPPeer p", "spec.connectTime", "65535s"}},
		{"vrf name", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, vrf: a-name-far-too-long-for-linux}",
			[]string{"BGPPeer p", "spec.vrf"}},
		{"source of the other family", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, sourceAddress: '2001:db8::2'}",
			[]string{"BGPPeer p", "sourceAddress", "different families"}},
		{"missing BFD profile", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, bfdProfile: fast}",
			[]string{"BGPPeer p", "spec.bfdProfile", `"fast" does not exist`}},
		{"BFD range", "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: b}\nspec: {detectMultiplier: 1}",
			[]string{"BFDProfile b", "spec.detectMultiplier"}},
		{"community value", "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [{name: x, value: '70000:1'}]}",
			[]string{"Community c", "spec.communities[0].value", "16-bit"}},
		{"community alias twice", "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [{name: x, value: '1:1'}, {name: x, value: '1:2'}]}",
			[]string{"Community c", "spec.communities[1].name"}},
		{"two Communities of one name", "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c, namespace: metallb-system}\n---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}",
			[]string{"Community c: metadata.name", "Community metallb-system/c has the same name", "cluster-scoped Community"}},
		{"too many aliases", "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [" + strings.Repeat("{name: x, value: '1:1'},", 257) + "]}",
			[]string{"Community c", "257 aliases", "256"}},
		{"too many communities", okPool + "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\nspec: {communities: [" + numbered("'1:%d'", 65) + "]}",
			[]string{"BGPAdvertisement a", "spec.communities", "65 entries", "64"}},
		{"too many pool selectors", okPool + "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\nspec: {ipAddressPoolSelectors: [" + numbered("{matchLabels: {n: '%d'}}", 17) + "]}",
			[]string{"BGPAdvertisement a", "spec.ipAddressPoolSelectors", "17 selectors", "16"}},
		{"unknown community", okPool + "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\nspec: {communities: [no-such-alias]}",
			[]string{"BGPAdvertisement a", "spec.communities[0]", "no-such-alias"}},
		{"large community", okPool + "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\nspec: {communities: ['large:1:2:4294967296']}",
			[]string{"BGPAdvertisement a", "spec.communities[0]", "32-bit"}},
		{"aggregation", okPool + "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\nspec: {aggregationLength: 33}",
			[]string{"BGPAdvertisement a", "spec.aggregationLength"}},
		{"missing peer", okPool + "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\nspec: {peers: [nope]}",
			[]string{"BGPAdvertisement a", "spec.peers[0]", `"nope" does not exist`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := convertString(t, c.doc)
			if err == nil {
				t.Fatalf("no error; converted %d objects, report %q", len(res.Objects), res.Report)
			}
			if res != nil {
				t.Errorf("a result came back with the error: %+v", res)
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// numbered is n list items of format, numbered from 1.
func numbered(format string, n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(format, i+1)
	}
	return strings.Join(items, ", ")
}
