package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

func bgpad(name string, spec v1alpha1.BGPAdvertisementSpec) *v1alpha1.BGPAdvertisement {
	return &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

// createCleanup creates a cluster-scoped object and deletes it when the test ends.
func createCleanup(t *testing.T, obj client.Object) {
	t.Helper()
	create(t, obj)
	t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })
}

// waitBGPAdCond waits until the advertisement's condition has status and reason (for its
// current generation) and returns its message.
func waitBGPAdCond(t *testing.T, name, typ string, status metav1.ConditionStatus, reason string) string {
	t.Helper()
	var msg string
	kit.Eventually(t, 15*time.Second, "BGPAdvertisement "+name+" condition "+typ, func(context.Context) error {
		var a v1alpha1.BGPAdvertisement
		if err := k8s.Get(ctx, types.NamespacedName{Name: name}, &a); err != nil {
			return err
		}
		c := meta.FindStatusCondition(a.Status.Conditions, typ)
		if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != a.Generation {
			return fmt.Errorf("BGPAdvertisement %s condition %s = %+v (generation %d), want %s/%s", name, typ, c, a.Generation, status, reason)
		}
		msg = c.Message
		return nil
	})
	return msg
}

// eventsFor lists the Events regarding a cluster-scoped object (they land in "default").
func eventsFor(t *testing.T, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(ctx, &list, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "BGPAdvertisement" {
			out = append(out, e)
		}
	}
	return out
}

func updateBGPAd(t *testing.T, name string, change func(*v1alpha1.BGPAdvertisementSpec)) {
	t.Helper()
	kit.Eventually(t, 10*time.Second, "BGPAdvertisement "+name+" updated", func(context.Context) error {
		var a v1alpha1.BGPAdvertisement
		if err := k8s.Get(ctx, types.NamespacedName{Name: name}, &a); err != nil {
			return err
		}
		change(&a.Spec)
		return k8s.Update(ctx, &a)
	})
}

// A valid advertisement whose pools and peers exist is Accepted and Resolved, says what it
// advertises to whom, and files no Event.
func TestBGPAdvertisementAccepted(t *testing.T) {
	poolFor(t, "", "bgpad-ok-pool", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.64/28"}})
	createCleanup(t, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bgpad-ok-peer"},
		Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.101", PeerASN: 64500, LocalASN: 64512}})
	createCleanup(t, &v1alpha1.Community{ObjectMeta: metav1.ObjectMeta{Name: "bgpad-ok-comms"},
		Spec: v1alpha1.CommunitySpec{Communities: []v1alpha1.CommunityAlias{{Name: "bgpad-ok-alias", Value: "large:64512:7:8"}}}})
	ad := bgpad("bgpad-ok", v1alpha1.BGPAdvertisementSpec{
		IPPools: []string{"bgpad-ok-pool"}, Peers: []string{"bgpad-ok-peer"},
		AggregationLength: ptr.To[int32](28), LocalPref: ptr.To[uint32](200),
		Communities:   []string{"64512:100", "no-export", "bgpad-ok-alias", "large:1:2:3"},
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r1"}}},
	})
	createCleanup(t, ad)
	if msg := waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted); msg != "Speakers advertise the selected pools' addresses" {
		t.Errorf("Accepted message %q", msg)
	}
	if msg := waitBGPAdCond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolved); msg != "Advertising pools bgpad-ok-pool to peers bgpad-ok-peer" {
		t.Errorf("ResolvedRefs message %q", msg)
	}
	if row := kubectlWideOf(t, "bgpadvertisements", ad.Name); row["Accepted"] != "True" || row["Resolved"] != "True" || row["Pools"] != `["bgpad-ok-pool"]` {
		t.Errorf("kubectl get bgpadv -o wide: %v", row)
	}
	if evs := eventsFor(t, ad.Name); len(evs) != 0 {
		t.Errorf("a healthy advertisement filed Events: %+v", evs)
	}
}

// What the schema refuses never reaches the controller, with a message naming the field.
func TestBGPAdvertisementRejectedByTheAPI(t *testing.T) {
	for _, tc := range []struct {
		spec v1alpha1.BGPAdvertisementSpec
		want string
	}{
		{v1alpha1.BGPAdvertisementSpec{AggregationLength: ptr.To[int32](33)}, "aggregationLength"},
		{v1alpha1.BGPAdvertisementSpec{AggregationLengthV6: ptr.To[int32](129)}, "aggregationLengthV6"},
		{v1alpha1.BGPAdvertisementSpec{AggregationLength: ptr.To[int32](-1)}, "aggregationLength"},
		{v1alpha1.BGPAdvertisementSpec{Communities: []string{"65536:1"}}, "communities"},
		{v1alpha1.BGPAdvertisementSpec{LargeCommunities: []string{"1:2"}}, "largeCommunities"},
	} {
		err := k8s.Create(ctx, bgpad("bgpad-rejected", tc.spec))
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("creating %+v: err %v, want Invalid mentioning %q", tc.spec, err, tc.want)
		}
		if err == nil {
			_ = k8s.Delete(ctx, bgpad("bgpad-rejected", tc.spec))
		}
	}
}

// What only Go can check is Accepted=False, reason Invalid, with a message naming the field and
// a Warning Event; ResolvedRefs is then Unknown. A good advertisement beside them stays
// Accepted.
func TestBGPAdvertisementRefused(t *testing.T) {
	good := bgpad("bgpad-good", v1alpha1.BGPAdvertisementSpec{Communities: []string{"64512:1"}})
	createCleanup(t, good)
	createCleanup(t, &v1alpha1.Community{ObjectMeta: metav1.ObjectMeta{Name: "bgpad-clash-a"},
		Spec: v1alpha1.CommunitySpec{Communities: []v1alpha1.CommunityAlias{{Name: "bgpad-clash", Value: "64512:1"}}}})
	createCleanup(t, &v1alpha1.Community{ObjectMeta: metav1.ObjectMeta{Name: "bgpad-clash-b"},
		Spec: v1alpha1.CommunitySpec{Communities: []v1alpha1.CommunityAlias{{Name: "bgpad-clash", Value: "64512:2"}}}})
	for _, tc := range []struct {
		name string
		spec v1alpha1.BGPAdvertisementSpec
		want []string
	}{
		{"bgpad-bad-node-key", v1alpha1.BGPAdvertisementSpec{
			NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack id": "r1"}}}},
			[]string{"nodeSelectors[0]", "rack id"}},
		{"bgpad-bad-pool-op", v1alpha1.BGPAdvertisementSpec{
			IPPoolSelectors: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn}}}}},
			[]string{"ipPoolSelectors[0]"}},
		{"bgpad-unknown-alias", v1alpha1.BGPAdvertisementSpec{Communities: []string{"64512:1", "bgpad-nobody-defines"}},
			[]string{`communities[1]: community "bgpad-nobody-defines": no Community object defines this alias`}},
		{"bgpad-uses-clash", v1alpha1.BGPAdvertisementSpec{Communities: []string{"bgpad-clash"}},
			[]string{`communities[0]`, `defined differently by Communities "bgpad-clash-a" and "bgpad-clash-b"`}},
		{"bgpad-bad-pool-name", v1alpha1.BGPAdvertisementSpec{IPPools: []string{"Public_1"}},
			[]string{`ipPools: "Public_1" is not a pool name`}},
		{"bgpad-bad-peer-name", v1alpha1.BGPAdvertisementSpec{Peers: []string{"ToR"}},
			[]string{`peers: "ToR" is not a BGPPeer name`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			createCleanup(t, bgpad(tc.name, tc.spec))
			msg := waitBGPAdCond(t, tc.name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
			note := waitEvent(t, "default", tc.name, v1alpha1.ReasonInvalid)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Accepted message %q lacks %q", msg, w)
				}
				if !strings.Contains(note, w) {
					t.Errorf("Warning Event %q lacks %q", note, w)
				}
			}
			if !strings.HasPrefix(msg, "Ignored by every speaker: ") {
				t.Errorf("Accepted message %q does not say the speakers ignore it", msg)
			}
			waitBGPAdCond(t, tc.name, v1alpha1.ConditionResolvedRefs, metav1.ConditionUnknown, v1alpha1.ReasonInvalid)
			if row := kubectlWideOf(t, "bgpadvertisements", tc.name); row["Accepted"] != "False" || row["Resolved"] != "Unknown" || row["Reason"] != "Invalid" {
				t.Errorf("kubectl get bgpadv -o wide: %v", row)
			}
		})
	}
	waitBGPAdCond(t, good.Name, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
}

// A refusal clears when it is fixed, whether by editing the advertisement or by creating the
// Community that defines its alias, with a Normal Event saying so.
func TestBGPAdvertisementRefusalClears(t *testing.T) {
	poolFor(t, "", "bgpad-fixed-pool", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.104/30"}})
	ad := bgpad("bgpad-fixed", v1alpha1.BGPAdvertisementSpec{
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack id": "r1"}}},
		Communities:   []string{"bgpad-later"},
		IPPools:       []string{"bgpad-fixed-pool"},
	})
	createCleanup(t, ad)
	msg := waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
	if !strings.Contains(msg, "nodeSelectors[0]") || !strings.Contains(msg, `"bgpad-later"`) {
		t.Errorf("Accepted message %q should name both problems", msg)
	}

	updateBGPAd(t, ad.Name, func(s *v1alpha1.BGPAdvertisementSpec) {
		s.NodeSelectors[0].MatchLabels = map[string]string{"rack": "r1"}
	})
	kit.Eventually(t, 15*time.Second, "the Accepted message to drop the fixed selector", func(context.Context) error {
		msg := waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
		if strings.Contains(msg, "nodeSelectors") {
			return fmt.Errorf("message %q still names the fixed selector", msg)
		}
		return nil
	})

	createCleanup(t, &v1alpha1.Community{ObjectMeta: metav1.ObjectMeta{Name: "bgpad-later-comms"},
		Spec: v1alpha1.CommunitySpec{Communities: []v1alpha1.CommunityAlias{{Name: "bgpad-later", Value: "64512:9"}}}})
	waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	waitBGPAdCond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolved)
	if note := waitEvent(t, "default", ad.Name, v1alpha1.ReasonAccepted); note != "Speakers advertise the selected pools' addresses" {
		t.Errorf("recovery Event %q", note)
	}

	// Deleting the Community refuses the advertisement again.
	_ = k8s.Delete(ctx, &v1alpha1.Community{ObjectMeta: metav1.ObjectMeta{Name: "bgpad-later-comms"}})
	waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
}

// Pools and peers that do not exist (yet) are ResolvedRefs=False; the advertisement is still
// Accepted (speakers advertise the rest), and the condition clears when they appear.
func TestBGPAdvertisementMissingRefs(t *testing.T) {
	poolFor(t, "", "bgpad-present", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.96/30"}})
	ad := bgpad("bgpad-missing", v1alpha1.BGPAdvertisementSpec{IPPools: []string{"bgpad-present", "bgpad-later-pool"}, Peers: []string{"bgpad-later-peer"}})
	createCleanup(t, ad)
	waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	msg := waitBGPAdCond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonPoolNotFound)
	if want := "No IPPool named bgpad-later-pool; No BGPPeer named bgpad-later-peer; advertising pools bgpad-present to no peer"; msg != want {
		t.Errorf("ResolvedRefs message %q, want %q", msg, want)
	}
	waitEvent(t, "default", ad.Name, v1alpha1.ReasonPoolNotFound)

	poolFor(t, "", "bgpad-later-pool", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.100/30"}})
	msg = waitBGPAdCond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonPeerNotFound)
	if want := "No BGPPeer named bgpad-later-peer; advertising pools bgpad-later-pool, bgpad-present to no peer"; msg != want {
		t.Errorf("ResolvedRefs message %q, want %q", msg, want)
	}

	createCleanup(t, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bgpad-later-peer"},
		Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.102", PeerASN: 64500, LocalASN: 64512}})
	msg = waitBGPAdCond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolved)
	if want := "Advertising pools bgpad-later-pool, bgpad-present to peers bgpad-later-peer"; msg != want {
		t.Errorf("ResolvedRefs message %q, want %q", msg, want)
	}

	none := bgpad("bgpad-selects-nothing", v1alpha1.BGPAdvertisementSpec{
		IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "no-such-tier"}}},
	})
	createCleanup(t, none)
	waitBGPAdCond(t, none.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonNoPoolSelected)
}

// An aggregation length out of range cannot be created today, but an object stored before the
// schema had its bounds is still read: the controller refuses it (as every speaker does) and
// clears the refusal once it is fixed. The bound is lifted from the CRD for the moment it takes
// to store such an object, then put back.
func TestBGPAdvertisementStoredOutOfRange(t *testing.T) {
	setMaximum := func(max *int64) {
		t.Helper()
		kit.Eventually(t, 10*time.Second, "the CRD's aggregationLength maximum set", func(context.Context) error {
			crd := &unstructured.Unstructured{}
			crd.SetAPIVersion("apiextensions.k8s.io/v1")
			crd.SetKind("CustomResourceDefinition")
			if err := k8s.Get(ctx, types.NamespacedName{Name: "bgpadvertisements.fairlead.dev"}, crd); err != nil {
				return err
			}
			versions, _, err := unstructured.NestedSlice(crd.Object, "spec", "versions")
			if err != nil {
				return err
			}
			for _, v := range versions {
				field, ok, err := unstructured.NestedMap(v.(map[string]any), "schema", "openAPIV3Schema", "properties", "spec", "properties", "aggregationLength")
				if !ok || err != nil {
					return fmt.Errorf("no aggregationLength in the CRD's schema: %v", err)
				}
				if max == nil {
					delete(field, "maximum")
				} else {
					field["maximum"] = *max
				}
				if err := unstructured.SetNestedMap(v.(map[string]any), field, "schema", "openAPIV3Schema", "properties", "spec", "properties", "aggregationLength"); err != nil {
					return err
				}
			}
			if err := unstructured.SetNestedSlice(crd.Object, versions, "spec", "versions"); err != nil {
				return err
			}
			return k8s.Update(ctx, crd)
		})
	}
	setMaximum(nil)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			setMaximum(ptr.To[int64](32))
		}
	}
	t.Cleanup(restore)

	ad := bgpad("bgpad-stored-33", v1alpha1.BGPAdvertisementSpec{AggregationLength: ptr.To[int32](33)})
	// The apiserver applies the changed schema shortly after the update.
	kit.Eventually(t, 15*time.Second, "BGPAdvertisement "+ad.Name+" created", func(context.Context) error { return k8s.Create(ctx, ad) })
	t.Cleanup(func() { _ = k8s.Delete(ctx, ad) })
	restore()

	msg := waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
	if want := "Ignored by every speaker: aggregationLength 33: must be 0 to 32"; msg != want {
		t.Errorf("Accepted message %q, want %q", msg, want)
	}
	if note := waitEvent(t, "default", ad.Name, v1alpha1.ReasonInvalid); !strings.Contains(note, "aggregationLength 33") {
		t.Errorf("Warning Event %q does not name the field and value", note)
	}
	// 32: it selects every pool, and a shorter length would be refused for the other tests' /28s.
	updateBGPAd(t, ad.Name, func(s *v1alpha1.BGPAdvertisementSpec) { s.AggregationLength = ptr.To[int32](32) })
	waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
}

// An aggregation length shorter than a prefix of a selected pool would announce addresses
// outside the pool: Accepted=False naming the pool, the prefix and the length, with a Warning
// Event; a range counts by the widest prefix covering it. Fixing the length clears it, and a
// pool that appears later is checked too.
func TestBGPAdvertisementAggregationWiderThanPool(t *testing.T) {
	poolFor(t, "", "bgpad-agg-range", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.170-203.0.113.185"}})
	ad := bgpad("bgpad-agg", v1alpha1.BGPAdvertisementSpec{IPPools: []string{"bgpad-agg-range", "bgpad-agg-narrow"},
		AggregationLength: ptr.To[int32](28)})
	createCleanup(t, ad)
	want := `aggregationLength 28 is shorter than prefix 203.0.113.176/29, the widest in range 203.0.113.170-203.0.113.185 of pool "bgpad-agg-range": ` +
		`a /28 route would cover addresses outside the pool (use 29 or more, or select other pools)`
	if msg := waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid); msg != "Ignored by every speaker: "+want {
		t.Errorf("Accepted message %q, want %q", msg, "Ignored by every speaker: "+want)
	}
	if note := waitEvent(t, "default", ad.Name, v1alpha1.ReasonInvalid); !strings.Contains(note, want) {
		t.Errorf("Warning Event %q lacks %q", note, want)
	}
	waitBGPAdCond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionUnknown, v1alpha1.ReasonInvalid)

	updateBGPAd(t, ad.Name, func(s *v1alpha1.BGPAdvertisementSpec) { s.AggregationLength = ptr.To[int32](29) })
	waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)

	poolFor(t, "", "bgpad-agg-narrow", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.188/30"}})
	msg := waitBGPAdCond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
	if want := `aggregationLength 29 is shorter than prefix 203.0.113.188/30 of pool "bgpad-agg-narrow"`; !strings.Contains(msg, want) || strings.Contains(msg, "bgpad-agg-range") {
		t.Errorf("Accepted message %q, want only %q", msg, want)
	}
}
