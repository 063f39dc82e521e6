package bgp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// setReady writes n's Ready condition as its writer would: kube-controller-manager's node
// lifecycle controller (Unknown, NodeStatusUnknown) when it has not heard from the kubelet
// for its grace period, the kubelet itself otherwise.
func (l *lab) setReady(n *node, status corev1.ConditionStatus, reason, message string) {
	l.t.Helper()
	var obj corev1.Node
	if err := l.c.Get(ctx, client.ObjectKey{Name: n.name}, &obj); err != nil {
		l.t.Fatal(err)
	}
	for i, c := range obj.Status.Conditions {
		if c.Type == corev1.NodeReady {
			c.Status, c.Reason, c.Message, c.LastTransitionTime = status, reason, message, metav1.Now()
			obj.Status.Conditions[i] = c
		}
	}
	if err := l.c.Status().Update(ctx, &obj); err != nil {
		l.t.Fatal(err)
	}
}

// After an apiserver outage longer than kube-controller-manager's node monitor grace period,
// the node lifecycle controller marks the nodes whose leases it saw expire Ready=Unknown for
// a moment, until their renewals land (the soak saw it after every 51–55 s pause, and the
// router lose the BGP address when all three nodes flipped). The routes must stay: Unknown is
// the control plane's doubt, not the node's failure (its BGP session says that). The kubelet's
// own NotReady still withdraws the node.
func TestFRRNodeReadyUnknownKeepsRoutes(t *testing.T) {
	l := newLab(t, 2)
	n1 := l.nodes[0]
	routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, func(n *node) string {
		return fmt.Sprintf(" neighbor %s timers 1 3\n", n.v4)
	}))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN,
		HoldTime: &metav1.Duration{Duration: 3 * time.Second}}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	l.service("web", false, "198.51.100.10")
	route := func(want []string) error {
		got, err := fib(l.router, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, want)
	}
	kit.Eventually(t, 30*time.Second, "both next hops", func(context.Context) error { return route(v4s(l.nodes)) })

	// Both nodes at once, as after the outage; checked for longer than a speaker takes to
	// withdraw (well under a second).
	for _, n := range l.nodes {
		l.setReady(n, corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status.")
	}
	kit.Consistently(t, 5*time.Second, "both next hops after both nodes went Ready=Unknown", func(context.Context) error {
		return route(v4s(l.nodes))
	})

	l.setReady(n1, corev1.ConditionFalse, "KubeletNotReady", "container runtime is down")
	kit.Eventually(t, 15*time.Second, "node1 withdrawn once its kubelet says NotReady", func(context.Context) error {
		return route([]string{l.nodes[1].v4})
	})
	for _, n := range l.nodes {
		l.setReady(n, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status")
	}
	kit.Eventually(t, 15*time.Second, "node1 back once Ready", func(context.Context) error { return route(v4s(l.nodes)) })
}
