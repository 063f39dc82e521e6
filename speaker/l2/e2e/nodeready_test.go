package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// setReady writes n's Ready condition as its writer would: kube-controller-manager's node
// lifecycle controller (Unknown, NodeStatusUnknown) when it has not heard from the kubelet
// for its grace period, the kubelet itself otherwise.
func (c *cluster) setReady(n *node, status corev1.ConditionStatus, reason string) {
	c.t.Helper()
	var obj corev1.Node
	if err := c.c.Get(ctx, client.ObjectKey{Name: n.name}, &obj); err != nil {
		c.t.Fatal(err)
	}
	for i, cond := range obj.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			cond.Status, cond.Reason, cond.LastTransitionTime = status, reason, metav1.Now()
			obj.Status.Conditions[i] = cond
		}
	}
	if err := c.c.Status().Update(ctx, &obj); err != nil {
		c.t.Fatal(err)
	}
}

// After an apiserver outage longer than kube-controller-manager's node monitor grace period,
// the node lifecycle controller marks nodes Ready=Unknown for a moment, until their lease
// renewals land (the soak saw it after every 51–55 s pause). The owner keeps its address:
// Unknown is the control plane's doubt, not the node's failure (the member list says that).
// The kubelet's own NotReady still moves the address.
func TestNodeReadyUnknownKeepsOwner(t *testing.T) {
	c := newCluster(t, nil)
	all := c.names()
	v4 := "198.51.100.50"
	first := c.node(owner(v4, all))
	c.service("web", false, v4)
	c.expectServed(v4, first)

	// steady checks, for longer than a speaker takes to move an address (well under a
	// second), that the client's neighbour entry stays first's (a new owner's gratuitous ARP
	// would change it) and, asking anew each time when flush is set, that first answers.
	steady := func(what string, flush bool) {
		t.Helper()
		kit.Consistently(t, 4*time.Second, first.name+" answering after "+what, func(context.Context) error {
			if flush {
				c.client.MustRun("ip", "neigh", "flush", "dev", "eth0")
			}
			got, err := c.connect(v4)
			if mac := c.neighMAC(v4); err != nil || got != first.name || mac != first.mac {
				return fmt.Errorf("connect %q, %v; neighbour %s (want %s at %s)", got, err, mac, first.name, first.mac)
			}
			return nil
		})
	}
	c.setReady(first, corev1.ConditionUnknown, "NodeStatusUnknown")
	steady("the owner went Ready=Unknown", false)
	for _, n := range c.nodes {
		c.setReady(n, corev1.ConditionUnknown, "NodeStatusUnknown")
	}
	steady("every node went Ready=Unknown", true)

	c.setReady(first, corev1.ConditionFalse, "KubeletNotReady")
	rest := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == first.name })
	c.expectMoved(v4, c.node(owner(v4, rest)))
	for _, n := range c.nodes {
		c.setReady(n, corev1.ConditionTrue, "KubeletReady")
	}
	c.expectMoved(v4, first)
}
