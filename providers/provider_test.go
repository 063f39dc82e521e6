package providers

import (
	"net/netip"
	"testing"
)

func TestNodeEqual(t *testing.T) {
	a := Node{Name: "n1", ProviderID: "aws:///z/i-1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Labels: map[string]string{"pool": "edge"}}
	if !a.Equal(Node{Name: "n1", ProviderID: "aws:///z/i-1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Labels: map[string]string{"pool": "edge"}}) {
		t.Error("equal nodes compare unequal")
	}
	for _, b := range []Node{
		{Name: "n2", ProviderID: a.ProviderID, Addresses: a.Addresses, Labels: a.Labels},
		{Name: a.Name, ProviderID: "aws:///z/i-2", Addresses: a.Addresses, Labels: a.Labels},
		{Name: a.Name, ProviderID: a.ProviderID, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Labels: a.Labels},
		{Name: a.Name, ProviderID: a.ProviderID, Addresses: a.Addresses},
	} {
		if a.Equal(b) {
			t.Errorf("%+v equals %+v", a, b)
		}
	}
}
