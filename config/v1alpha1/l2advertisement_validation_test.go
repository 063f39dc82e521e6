package v1alpha1

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestL2AdvertisementCompile(t *testing.T) {
	sel := func(l map[string]string, e ...metav1.LabelSelectorRequirement) []metav1.LabelSelector {
		return []metav1.LabelSelector{{MatchLabels: l, MatchExpressions: e}}
	}
	for _, tc := range []struct {
		name string
		spec L2AdvertisementSpec
		want string // "" means valid; else a substring of the error
	}{
		{"empty selects everything", L2AdvertisementSpec{}, ""},
		{"full", L2AdvertisementSpec{IPPools: []string{"lan", "dmz.v2"}, Interfaces: []string{"eth0", "bond0.100", "enp3s0f1"},
			NodeSelectors: sel(map[string]string{"topology.kubernetes.io/zone": "a"}, metav1.LabelSelectorRequirement{Key: "rack", Operator: metav1.LabelSelectorOpIn, Values: []string{"r1"}})}, ""},
		{"bad label key", L2AdvertisementSpec{NodeSelectors: sel(map[string]string{"rack id": "r1"})}, "nodeSelectors[0]"},
		{"bad label value", L2AdvertisementSpec{IPPoolSelectors: sel(map[string]string{"tier": "a b"})}, "ipPoolSelectors[0]"},
		{"In without values", L2AdvertisementSpec{NodeSelectors: sel(nil, metav1.LabelSelectorRequirement{Key: "k", Operator: metav1.LabelSelectorOpIn})}, "nodeSelectors[0]"},
		{"unknown operator", L2AdvertisementSpec{NodeSelectors: sel(nil, metav1.LabelSelectorRequirement{Key: "k", Operator: "Near"})}, "Near"},
		{"alias interface", L2AdvertisementSpec{Interfaces: []string{"eth0:1"}}, `"eth0:1"`},
		{"path in interface", L2AdvertisementSpec{Interfaces: []string{"../eth0"}}, "'/'"},
		{"dot interface", L2AdvertisementSpec{Interfaces: []string{"."}}, "not an interface name"},
		{"long interface", L2AdvertisementSpec{Interfaces: []string{"abcdefghijklmnop"}}, "longer than 15"},
		{"bad pool name", L2AdvertisementSpec{IPPools: []string{"Lan_1"}}, `"Lan_1"`},
		{"every error at once", L2AdvertisementSpec{IPPools: []string{"A"}, Interfaces: []string{"a b"}}, "ipPools"},
	} {
		_, err := (&L2Advertisement{Spec: tc.spec}).Compile()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestL2AdvertisementSelects(t *testing.T) {
	c, err := (&L2Advertisement{Spec: L2AdvertisementSpec{
		IPPools:         []string{"lan"},
		IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}},
		NodeSelectors:   []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r1"}}, {MatchLabels: map[string]string{"rack": "r2"}}},
	}}).Compile()
	if err != nil {
		t.Fatal(err)
	}
	pool := func(name string, l map[string]string) *IPPool {
		return &IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	if !c.SelectsPool(pool("lan", nil)) || !c.SelectsPool(pool("x", map[string]string{"tier": "edge"})) || c.SelectsPool(pool("dmz", nil)) {
		t.Error("pool selection: want lan by name and tier=edge by label, not dmz")
	}
	if !c.SelectsNode(map[string]string{"rack": "r2"}) || c.SelectsNode(map[string]string{"rack": "r3"}) {
		t.Error("node selection: want any selector to match")
	}
	all, _ := (&L2Advertisement{}).Compile()
	if !all.SelectsPool(pool("anything", nil)) || !all.SelectsNode(nil) {
		t.Error("an empty advertisement selects every pool and node")
	}
}
