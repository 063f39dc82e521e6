package v1alpha1

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Advertisements and peers reach the controller and the speakers from users, and from objects
// stored before the CRD's rules existed: whatever their fields hold, Compile and Validate
// answer without panicking, and an L2Advertisement Compile accepts can be used.
func FuzzL2AdvertisementCompile(f *testing.F) {
	f.Add("rack", "r1", "In", "eth0", "lan")
	f.Add("rack id", "", "Exists", "", "")
	f.Add("a/b/c", "x y", "NotIn", "a:b", "UPPER")
	f.Fuzz(func(t *testing.T, key, value, op, iface, pool string) {
		sel := metav1.LabelSelector{MatchLabels: map[string]string{key: value},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOperator(op), Values: []string{value}}}}
		a := &L2Advertisement{Spec: L2AdvertisementSpec{IPPools: []string{pool}, Interfaces: []string{iface},
			IPPoolSelectors: []metav1.LabelSelector{sel}, NodeSelectors: []metav1.LabelSelector{sel}}}
		c, err := a.Compile()
		if (c == nil) == (err == nil) {
			t.Fatalf("Compile returned %v and %v", c, err)
		}
		if c != nil {
			c.SelectsNode(map[string]string{key: value})
			c.SelectsPool(&IPPool{ObjectMeta: metav1.ObjectMeta{Name: pool, Labels: map[string]string{key: value}}})
		}
	})
}

func FuzzBGPPeerValidate(f *testing.F) {
	f.Add("192.0.2.1", "", "", "", "", uint32(64500), uint32(64512), int64(90), int64(30), int32(179))
	f.Add("2001:db8::1", "192.0.2.2", "10.0.0.1", "red", "external", uint32(0), uint32(64512), int64(0), int64(0), int32(0))
	f.Add("::ffff:192.0.2.1", "::1", "0.0.0.0", "a/b", "sometimes", uint32(1), uint32(0), int64(1), int64(5), int32(-1))
	f.Fuzz(func(t *testing.T, peer, src, rid, vrf, dyn string, peerASN, localASN uint32, hold, keep int64, port int32) {
		p := &BGPPeer{Spec: BGPPeerSpec{PeerAddress: peer, SourceAddress: src, RouterID: rid, VRF: vrf, DynamicASN: dyn,
			PeerASN: peerASN, LocalASN: localASN, Port: port,
			HoldTime: &metav1.Duration{Duration: time.Duration(hold) * time.Second}, KeepaliveTime: &metav1.Duration{Duration: time.Duration(keep) * time.Second},
			ConnectTime: &metav1.Duration{Duration: time.Duration(hold) * time.Millisecond}}}
		_ = p.Validate()
	})
}
