package metallb

import (
	"fmt"
	"strings"
)

// What Fairlead's API cannot say yet, in one place. When a field or kind arrives (the BGP API
// is growing: dynamicASN, routerID, connectTime, vrf, disableMP, a Community kind,
// BGPAdvertisement.ipPoolSelectors), carry it over in convert.go and delete its entry here.

// peerNotYet lists BGPPeer fields with no Fairlead field. drop: the peer is converted without
// it; otherwise the peer cannot be converted at all (Fairlead needs what the field replaces).
var peerNotYet = []struct {
	field string
	set   func(*PeerSpec) string // the value when set, "" when not
	drop  bool
	why   string
}{
	{"dynamicASN", func(s *PeerSpec) string { return s.DynamicASN }, false,
		"Fairlead's BGPPeer needs a fixed peerASN"},
	{"interface", func(s *PeerSpec) string { return s.Interface }, false,
		"Fairlead peers by address only (no unnumbered BGP)"},
	{"routerID", func(s *PeerSpec) string { return s.RouterID }, true,
		"the speaker uses its node's address as router ID"},
	{"connectTime", func(s *PeerSpec) string {
		if s.ConnectTime == nil {
			return ""
		}
		return s.ConnectTime.Duration.String()
	}, true, "the speaker retries connections on GoBGP's default timer"},
	{"vrf", func(s *PeerSpec) string { return s.VRF }, true,
		"sessions run in the node's default VRF"},
	{"disableMP", func(s *PeerSpec) string {
		if s.DisableMP {
			return "true"
		}
		return ""
	}, true, "every Fairlead session carries IPv4 and IPv6 prefixes (MP-BGP)"},
}

// notYet formats one report line for a field that cannot be carried over yet.
func notYet(id, field, value, why, consequence string) string {
	return fmt.Sprintf("%s: %s %q cannot be carried over yet: %s; %s", id, field, value, why, consequence)
}

// Lines of the report that concern kinds Fairlead does not have yet.
func communityKindLine(id string, names []string) string {
	return fmt.Sprintf("%s: the Community kind cannot be carried over yet: its aliases (%s) are written out as values in the BGPAdvertisements that use them (the same communities are sent)", id, strings.Join(names, ", "))
}

func poolSelectorsLine(id string, pools []string) string {
	sel := "no pool, so it applies to every pool, as in MetalLB"
	if len(pools) > 0 {
		sel = "pools " + strings.Join(pools, ", ")
	}
	return fmt.Sprintf("%s: spec.ipAddressPoolSelectors cannot be carried over yet: they select %s today, which ipPools now lists; a pool labelled later is not advertised until you add it", id, sel)
}
