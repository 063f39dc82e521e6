package metallb

import (
	"fmt"
)

// What Fairlead's API cannot say yet, in one place. When a field arrives (unnumbered BGP, BFD
// inside a VRF), carry it over in convert.go and delete its entry here.

// peerNotYet lists BGPPeer fields with no Fairlead field. drop: the peer is converted without
// it; otherwise the peer cannot be converted at all (Fairlead needs what the field replaces).
var peerNotYet = []struct {
	field string
	set   func(*PeerSpec) string // the value when set, "" when not
	drop  bool
	why   string
}{
	{"interface", func(s *PeerSpec) string { return s.Interface }, false,
		"Fairlead peers by address only (no unnumbered BGP)"},
}

// notYet formats one report line for a field that cannot be carried over yet.
func notYet(id, field, value, why, consequence string) string {
	return fmt.Sprintf("%s: %s %q cannot be carried over yet: %s; %s", id, field, value, why, consequence)
}

// bfdInVRFLine: Fairlead's BFD sessions are not bound to a VRF yet, and a BGPPeer with both a
// vrf and a bfdProfile is refused by every speaker. Of the two, the VRF is what makes the
// session reach the router at all, so the peer keeps it and runs without BFD.
func bfdInVRFLine(id, profile, vrf string) string {
	return fmt.Sprintf("%s: spec.bfdProfile %q cannot be carried over yet together with spec.vrf %q: Fairlead's BFD sessions are not bound to a VRF; the peer is converted without BFD (a dead session is noticed after holdTime, not BFD's detection time)", id, profile, vrf)
}
