package v1alpha1

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPPeer condition types and reasons, written by the controller.
const (
	// ConditionEstablished: every node that runs the session has it Established.
	ConditionEstablished = "Established"

	ReasonBFDProfileNotFound = "BFDProfileNotFound"
	ReasonAllEstablished     = "AllEstablished"
	ReasonNotEstablished     = "NotEstablished"
	ReasonNoSessions         = "NoSessions"
)

// Validate checks what the apiserver's schema cannot, or did not when the object was stored,
// and that does not depend on the node: the controller reports it as the Accepted condition
// and the speakers refuse the same objects (speaker/bgp calls it before anything else).
func (p *BGPPeer) Validate() error {
	s := p.Spec
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	peer, err := netip.ParseAddr(s.PeerAddress)
	if err != nil {
		add("peerAddress %q: %v", s.PeerAddress, err)
	}
	if s.SourceAddress != "" {
		src, err := netip.ParseAddr(s.SourceAddress)
		switch {
		case err != nil:
			add("sourceAddress %q: %v", s.SourceAddress, err)
		case peer.IsValid() && src.Unmap().Is4() != peer.Unmap().Is4():
			add("sourceAddress %s and peerAddress %s are of different families", s.SourceAddress, s.PeerAddress)
		}
	}
	switch {
	case s.LocalASN == 0:
		add("localASN must be set")
	case (s.PeerASN == 0) == (s.DynamicASN == ""):
		add("exactly one of peerASN and dynamicASN must be set")
	case s.DynamicASN != "" && s.DynamicASN != DynamicASNInternal && s.DynamicASN != DynamicASNExternal:
		add("dynamicASN %q: must be internal or external", s.DynamicASN)
	}
	if s.Port < 0 || s.Port > 65535 {
		add("port %d out of range", s.Port)
	}
	hold := 90 * time.Second
	if s.HoldTime != nil {
		hold = s.HoldTime.Duration
		if hold != 0 && hold < 3*time.Second {
			add("holdTime %s: must be 0 or at least 3s", hold)
		}
	}
	if s.KeepaliveTime != nil && hold != 0 && s.KeepaliveTime.Duration >= hold {
		add("keepaliveTime %s must be shorter than holdTime %s", s.KeepaliveTime.Duration, hold)
	}
	if m := s.EBGPMultihop; m != nil && (*m < 2 || *m > 255) {
		add("ebgpMultihop %d: must be 2..255", *m)
	}
	if gr := s.GracefulRestart; gr != nil && gr.Enabled && gr.RestartTime != nil {
		if d := gr.RestartTime.Duration; d < time.Second || d > 4095*time.Second {
			add("gracefulRestart.restartTime %s: must be 1s..4095s", d)
		}
	}
	if s.ConnectTime != nil {
		if d := s.ConnectTime.Duration; d < time.Second || d > 65535*time.Second || d%time.Second != 0 {
			add("connectTime %s: must be whole seconds, 1s to 65535s", d)
		}
	}
	if s.VRF != "" {
		if err := InterfaceName(s.VRF); err != nil {
			add("vrf: %v", err)
		}
	}
	if s.RouterID != "" {
		if id, err := netip.ParseAddr(s.RouterID); err != nil || !id.Is4() || id.IsUnspecified() {
			add("routerID %q: must be a non-zero IPv4 address", s.RouterID)
		}
	}
	for i := range s.NodeSelectors {
		if _, err := metav1.LabelSelectorAsSelector(&s.NodeSelectors[i]); err != nil {
			add("nodeSelectors[%d]: %v", i, err)
		}
	}
	return errors.Join(errs...)
}
