package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// speakerEntry writes one node's status entry as a speaker does: server-side apply with the
// node's own field manager.
func speakerEntry(t *testing.T, peer string, e v1alpha1.BGPSessionStatus) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BGPPeer",
		"metadata": map[string]any{"name": peer},
		"status":   map[string]any{"nodes": []v1alpha1.BGPSessionStatus{e}},
	})
	p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer}}
	if err := k8s.Status().Patch(ctx, p, client.RawPatch(types.ApplyPatchType, body),
		&client.SubResourcePatchOptions{PatchOptions: client.PatchOptions{FieldManager: "fairlead-speaker/" + e.Node, Force: ptrTrue()}}); err != nil {
		t.Fatal(err)
	}
}

func ptrTrue() *bool { b := true; return &b }

func peerCond(t *testing.T, name, typ string) (metav1.Condition, v1alpha1.BGPPeerStatus) {
	t.Helper()
	var p v1alpha1.BGPPeer
	if err := k8s.Get(ctx, types.NamespacedName{Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(p.Status.Conditions, typ); c != nil {
		return *c, p.Status
	}
	return metav1.Condition{}, p.Status
}

// kubectlWide returns the cells `kubectl get bgppeer name -o wide` shows, by column name: the
// server-side table the CRD's printer columns define.
func kubectlWide(t *testing.T, name string) map[string]string {
	t.Helper()
	return kubectlWideOf(t, "bgppeers", name)
}

// kubectlWideOf is kubectlWide for any of Fairlead's cluster-scoped resources.
func kubectlWideOf(t *testing.T, resource, name string) map[string]string {
	t.Helper()
	hc, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", strings.TrimSuffix(restCfg.Host, "/")+"/apis/fairlead.dev/v1alpha1/"+resource+"/"+name, nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tbl metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&tbl); err != nil || len(tbl.Rows) != 1 {
		t.Fatalf("table: %v, %d rows", err, len(tbl.Rows))
	}
	out := map[string]string{}
	for i, col := range tbl.ColumnDefinitions {
		out[col.Name] = fmt.Sprint(tbl.Rows[0].Cells[i])
	}
	return out
}

// The controller sums up the speakers' entries (sessions, prefixes, uptime, Established) and
// judges the spec (Accepted, with an Event and back again when fixed), without disturbing the
// speakers' entries; `kubectl get bgppeers -o wide` shows it.
func TestBGPPeerStatusSummary(t *testing.T) {
	p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "summary"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "192.0.2.1", PeerASN: 64500, LocalASN: 64512}}
	create(t, p)
	t.Cleanup(func() { _ = k8s.Delete(ctx, p) })
	kit.Eventually(t, 15*time.Second, "Established NoSessions before any speaker", func(context.Context) error {
		c, _ := peerCond(t, "summary", v1alpha1.ConditionEstablished)
		if c.Reason != v1alpha1.ReasonNoSessions {
			return fmt.Errorf("Established %+v, want NoSessions before any speaker", c)
		}
		return nil
	})

	t1 := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	t2 := metav1.NewTime(time.Now().Add(-10 * time.Minute).Truncate(time.Second))
	speakerEntry(t, "summary", v1alpha1.BGPSessionStatus{Node: "node1", State: "Established", PrefixesSent: 3, LastTransitionTime: &t1})
	speakerEntry(t, "summary", v1alpha1.BGPSessionStatus{Node: "node2", State: "Active", LastError: "cannot connect: i/o timeout", LastTransitionTime: &t1})
	kit.Eventually(t, 15*time.Second, "one of two sessions Established in the summary", func(context.Context) error {
		c, st := peerCond(t, "summary", v1alpha1.ConditionEstablished)
		if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "node2: Active (cannot connect: i/o timeout)") ||
			st.Sessions != "1/2" || st.PrefixesSent != 3 || st.EstablishedSince != nil {
			return fmt.Errorf("Established %+v, status %+v", c, st)
		}
		return nil
	})
	speakerEntry(t, "summary", v1alpha1.BGPSessionStatus{Node: "node2", State: "Established", PrefixesSent: 3, LastTransitionTime: &t2})
	kit.Eventually(t, 15*time.Second, "both sessions Established in the summary", func(context.Context) error {
		c, st := peerCond(t, "summary", v1alpha1.ConditionEstablished)
		if c.Status != metav1.ConditionTrue || st.Sessions != "2/2" || st.PrefixesSent != 6 || st.EstablishedSince == nil ||
			!st.EstablishedSince.Equal(&t2) || len(st.Nodes) != 2 {
			return fmt.Errorf("Established %+v, status %+v", c, st)
		}
		return nil
	})
	wide := kubectlWide(t, "summary")
	for col, want := range map[string]string{"Sessions": "2/2", "Established": "True", "Prefixes": "6", "Accepted": "True"} {
		if wide[col] != want {
			t.Errorf("kubectl column %s = %q, want %q (row %v)", col, wide[col], want, wide)
		}
	}
	if wide["Uptime"] == "" || wide["Uptime"] == "<nil>" {
		t.Errorf("no Uptime column: %v", wide)
	}

	// A spec the apiserver takes but no speaker can run: refused, with an Event; fixed: accepted.
	bad := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "refused"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "192.0.2.1", PeerASN: 64500, LocalASN: 64512, BFDProfile: "missing",
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack id": "r1"}}}}}
	create(t, bad)
	t.Cleanup(func() { _ = k8s.Delete(ctx, bad) })
	kit.Eventually(t, 15*time.Second, "the peer refused for its nodeSelectors", func(context.Context) error {
		c, _ := peerCond(t, "refused", v1alpha1.ConditionAccepted)
		if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonInvalid || !strings.Contains(c.Message, "nodeSelectors[0]") {
			return fmt.Errorf("Accepted %+v", c)
		}
		return nil
	})
	if note := waitEvent(t, "default", "refused", v1alpha1.ReasonInvalid); !strings.Contains(note, "rack id") {
		t.Errorf("Event %q does not name the bad key", note)
	}
	kit.Eventually(t, 10*time.Second, "the nodeSelectors removed", func(context.Context) error {
		if err := k8s.Get(ctx, types.NamespacedName{Name: "refused"}, bad); err != nil {
			return err
		}
		bad.Spec.NodeSelectors = nil
		return k8s.Update(ctx, bad)
	})
	kit.Eventually(t, 15*time.Second, "the peer refused for its missing bfdProfile", func(context.Context) error {
		c, _ := peerCond(t, "refused", v1alpha1.ConditionAccepted)
		if c.Reason != v1alpha1.ReasonBFDProfileNotFound || !strings.Contains(c.Message, `bfdProfile "missing" not found`) {
			return fmt.Errorf("Accepted %+v", c)
		}
		return nil
	})
	prof := &v1alpha1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "missing"}}
	create(t, prof)
	t.Cleanup(func() { _ = k8s.Delete(ctx, prof) })
	kit.Eventually(t, 15*time.Second, "the peer accepted once its profile exists", func(context.Context) error {
		if c, _ := peerCond(t, "refused", v1alpha1.ConditionAccepted); c.Status != metav1.ConditionTrue {
			return fmt.Errorf("Accepted %+v after the profile appeared", c)
		}
		return nil
	})
}
