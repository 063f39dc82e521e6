package bgpadvertisement

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// ResolvedRefs names only the pools whose addresses the speakers advertise; a selected pool
// that announces nothing is listed apart, with why, and selecting only such pools is a
// warning.
func TestConditionsListOnlyAdvertisedPools(t *testing.T) {
	pool := func(name string, addrs ...string) v1alpha1.IPPool {
		return v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
	}
	overlap := pool("overlap", "198.51.100.0/30")
	overlap.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Overlap"}}
	pools := []v1alpha1.IPPool{pool("good", "198.51.100.0/29"), overlap, pool("loopback", "100.0.0.0-200.0.0.0")}
	for _, tc := range []struct {
		spec   v1alpha1.BGPAdvertisementSpec
		status metav1.ConditionStatus
		reason string
		msg    string
	}{
		{v1alpha1.BGPAdvertisementSpec{}, metav1.ConditionTrue, v1alpha1.ReasonResolved,
			"Advertising pools good to every peer; selected but not advertised: loopback (invalid: 100.0.0.0-200.0.0.0 includes special-purpose addresses, which are never handed out: 127.0.0.0/8 (loopback), 169.254.0.0/16 (link-local)), overlap (overlaps an older pool)"},
		{v1alpha1.BGPAdvertisementSpec{IPPools: []string{"overlap"}, Peers: []string{"tor"}}, metav1.ConditionFalse, v1alpha1.ReasonNoPoolSelected,
			"Nothing is advertised; selected but not advertised: overlap (overlaps an older pool)"},
		{v1alpha1.BGPAdvertisementSpec{IPPools: []string{"good"}, Peers: []string{"tor", "gone"}}, metav1.ConditionFalse, v1alpha1.ReasonPeerNotFound,
			"No BGPPeer named gone; advertising pools good to peers tor"},
	} {
		accepted, resolved := Conditions(&v1alpha1.BGPAdvertisement{Spec: tc.spec}, v1alpha1.CommunityAliases{}, pools, []string{"tor"})
		if accepted.Status != metav1.ConditionTrue {
			t.Errorf("%+v: Accepted %+v", tc.spec, accepted)
		}
		if resolved.Status != tc.status || resolved.Reason != tc.reason || resolved.Message != tc.msg {
			t.Errorf("%+v: ResolvedRefs %s/%s %q, want %s/%s %q", tc.spec, resolved.Status, resolved.Reason, resolved.Message, tc.status, tc.reason, tc.msg)
		}
	}
}
