package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

func l2ad(name string, spec v1alpha1.L2AdvertisementSpec) *v1alpha1.L2Advertisement {
	return &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

// waitL2Cond waits until the advertisement's condition has status and reason (for its current
// generation) and returns its message.
func waitL2Cond(t *testing.T, name, typ string, status metav1.ConditionStatus, reason string) string {
	t.Helper()
	var msg string
	kit.Eventually(t, 15*time.Second, "L2Advertisement "+name+" condition "+typ, func(context.Context) error {
		var a v1alpha1.L2Advertisement
		if err := k8s.Get(ctx, types.NamespacedName{Name: name}, &a); err != nil {
			return err
		}
		c := meta.FindStatusCondition(a.Status.Conditions, typ)
		if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != a.Generation {
			return fmt.Errorf("L2Advertisement %s condition %s = %+v (generation %d), want %s/%s", name, typ, c, a.Generation, status, reason)
		}
		msg = c.Message
		return nil
	})
	return msg
}

// The apiserver refuses what its schema can tell is wrong, with a message saying why.
func TestL2AdvertisementRejectedByTheAPI(t *testing.T) {
	for _, tc := range []struct {
		spec v1alpha1.L2AdvertisementSpec
		want string
	}{
		{v1alpha1.L2AdvertisementSpec{Interfaces: []string{"eth0:1"}}, "Linux interface name"},
		{v1alpha1.L2AdvertisementSpec{Interfaces: []string{"a/b"}}, "Linux interface name"},
		{v1alpha1.L2AdvertisementSpec{Interfaces: []string{"much-too-long-name0"}}, "15"},
		{v1alpha1.L2AdvertisementSpec{IPPools: []string{"Bad_Pool"}}, "ipPools"},
	} {
		err := k8s.Create(ctx, l2ad("l2-rejected", tc.spec))
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("creating %+v: err %v, want Invalid mentioning %q", tc.spec, err, tc.want)
		}
		if err == nil {
			_ = k8s.Delete(ctx, l2ad("l2-rejected", tc.spec))
		}
	}
}

// What only Go can check is reported in status, with an Event; fixing it clears the condition.
func TestL2AdvertisementInvalidIsReported(t *testing.T) {
	ad := l2ad("l2-bad-key", v1alpha1.L2AdvertisementSpec{
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack id": "r1"}}},
	})
	create(t, ad)
	t.Cleanup(func() { _ = k8s.Delete(ctx, ad) })
	msg := waitL2Cond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
	if !strings.Contains(msg, "nodeSelectors[0]") || !strings.Contains(msg, "rack id") {
		t.Errorf("Accepted message %q does not say which selector and key are wrong", msg)
	}
	waitL2Cond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionUnknown, v1alpha1.ReasonInvalid)
	if note := waitEvent(t, "default", ad.Name, v1alpha1.ReasonInvalid); !strings.Contains(note, "rack id") {
		t.Errorf("Warning Event %q does not name the bad key", note)
	}

	kit.Eventually(t, 10*time.Second, "the nodeSelectors fixed", func(context.Context) error {
		if err := k8s.Get(ctx, types.NamespacedName{Name: ad.Name}, ad); err != nil {
			return err
		}
		ad.Spec.NodeSelectors[0].MatchLabels = map[string]string{"rack": "r1"}
		return k8s.Update(ctx, ad)
	})
	waitL2Cond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)

	// An operator that needs values, given none.
	noValues := l2ad("l2-no-values", v1alpha1.L2AdvertisementSpec{
		IPPoolSelectors: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn}}}},
	})
	create(t, noValues)
	t.Cleanup(func() { _ = k8s.Delete(ctx, noValues) })
	if msg := waitL2Cond(t, noValues.Name, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid); !strings.Contains(msg, "ipPoolSelectors[0]") {
		t.Errorf("Accepted message %q does not name the selector", msg)
	}
}

// A pool that does not exist (yet) is reported; the advertisement still covers the others, and
// the condition clears when the pool appears.
func TestL2AdvertisementMissingPool(t *testing.T) {
	poolFor(t, "", "l2-present", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.200/30"}})
	ad := l2ad("l2-missing", v1alpha1.L2AdvertisementSpec{IPPools: []string{"l2-present", "l2-later"}})
	create(t, ad)
	t.Cleanup(func() { _ = k8s.Delete(ctx, ad) })
	waitL2Cond(t, ad.Name, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	msg := waitL2Cond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonPoolNotFound)
	if !strings.Contains(msg, "l2-later") || !strings.Contains(msg, "announcing pools l2-present") {
		t.Errorf("ResolvedRefs message %q should name the missing pool and the one still announced", msg)
	}
	waitEvent(t, "default", ad.Name, v1alpha1.ReasonPoolNotFound)

	poolFor(t, "", "l2-later", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.204/30"}})
	msg = waitL2Cond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolved)
	if msg != "Announcing pools l2-later, l2-present" {
		t.Errorf("ResolvedRefs message %q", msg)
	}

	// Selectors that match no pool announce nothing, which is worth a warning too.
	none := l2ad("l2-selects-nothing", v1alpha1.L2AdvertisementSpec{
		IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "no-such-tier"}}},
	})
	create(t, none)
	t.Cleanup(func() { _ = k8s.Delete(ctx, none) })
	waitL2Cond(t, none.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonNoPoolSelected)
}

// The message names only the pools whose addresses the speakers really announce; a selected
// pool that announces nothing (invalid addresses, an overlap with an older pool, Elastic IPs)
// is listed apart, with why.
func TestL2AdvertisementListsOnlyAnnouncedPools(t *testing.T) {
	labelled := func(name string, spec v1alpha1.IPPoolSpec) {
		p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"l2test": "announced"}}, Spec: spec}
		create(t, p)
		t.Cleanup(func() { deletePoolAndWait(t, name) })
	}
	labelled("l2a-good", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.208/30"}})
	waitPoolReady(t, "l2a-good", metav1.ConditionTrue, "Valid")
	labelled("l2a-overlap", v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.208/31"}})
	labelled("l2a-spans-loopback", v1alpha1.IPPoolSpec{Addresses: []string{"100.0.0.0-200.0.0.0"}})
	labelled("l2a-eips", v1alpha1.IPPoolSpec{AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{Allocate: v1alpha1.ElasticIPsOnDemand}}})
	waitPoolReady(t, "l2a-overlap", metav1.ConditionFalse, "Overlap")

	ad := l2ad("l2a", v1alpha1.L2AdvertisementSpec{
		IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"l2test": "announced"}}},
	})
	create(t, ad)
	t.Cleanup(func() { _ = k8s.Delete(ctx, ad) })
	var msg string
	kit.Eventually(t, 15*time.Second, "the message to know about the overlap", func(context.Context) error {
		msg = waitL2Cond(t, ad.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolved)
		if !strings.Contains(msg, "overlaps an older pool") {
			return fmt.Errorf("message %q does not know about the overlap yet", msg)
		}
		return nil
	})
	announcing, rest, _ := strings.Cut(msg, ";")
	if announcing != "Announcing pools l2a-good" {
		t.Errorf("message %q: announces more than l2a-good", msg)
	}
	for _, want := range []string{"l2a-overlap (overlaps an older pool)", "l2a-spans-loopback (invalid: ", "127.0.0.0/8", "l2a-eips (Elastic IPs"} {
		if !strings.Contains(rest, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}

	// Selecting only pools that announce nothing is a warning.
	only := l2ad("l2a-nothing", v1alpha1.L2AdvertisementSpec{IPPools: []string{"l2a-spans-loopback", "l2a-eips"}})
	create(t, only)
	t.Cleanup(func() { _ = k8s.Delete(ctx, only) })
	if msg := waitL2Cond(t, only.Name, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonNoPoolSelected); !strings.HasPrefix(msg, "Nothing is announced; selected but not announced: l2a-eips") {
		t.Errorf("message %q", msg)
	}
}
