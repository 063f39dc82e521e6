package bgp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// Fail-static: with the apiserver unreachable for a minute the speakers keep their sessions
// and paths (FRR's kernel route keeps both next hops, checked throughout); a node whose link
// is cut meanwhile is withdrawn all the same (the router's hold timer needs no apiserver); when
// the apiserver is back the same speaker processes advertise what changed meanwhile.
func TestFRRAPIServerUnreachableFailStatic(t *testing.T) {
	l := newLab(t, 2)
	n1, n2 := l.nodes[0], l.nodes[1]
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
	route := func(prefix string, want []string) error {
		got, err := fib(l.router, prefix)
		if err != nil {
			return err
		}
		return wantSet(got, want)
	}
	kit.Eventually(t, 30*time.Second, "both next hops", func(context.Context) error { return route("198.51.100.10/32", v4s(l.nodes)) })
	pids := []int{n1.speaker.Cmd.Process.Pid, n2.speaker.Cmd.Process.Pid}

	for _, n := range l.nodes {
		n.relay.Cut()
	}
	// Made while the speakers cannot see it.
	l.service("late", false, "198.51.100.20")
	start := time.Now()
	kit.Consistently(t, 30*time.Second, "both next hops without the apiserver", func(context.Context) error {
		return route("198.51.100.10/32", v4s(l.nodes))
	})
	// A link cut during the outage: node2's port at the router goes down; the router's hold
	// timer (3 s) withdraws node2.
	l.router.MustRun("ip", "link", "set", "p2", "down")
	kit.Eventually(t, 15*time.Second, "node2 withdrawn after its link was cut", func(context.Context) error {
		return route("198.51.100.10/32", []string{n1.v4})
	})
	kit.Consistently(t, 60*time.Second-time.Since(start), "node1's next hop for the rest of the outage", func(context.Context) error {
		return route("198.51.100.10/32", []string{n1.v4})
	})
	if err := route("198.51.100.20/32", nil); err != nil {
		t.Fatalf("the Service made during the outage is advertised already: %v", err)
	}
	l.router.MustRun("ip", "link", "set", "p2", "up")
	for _, n := range l.nodes {
		n.relay.Restore()
	}
	for _, p := range []string{"198.51.100.10/32", "198.51.100.20/32"} {
		kit.Eventually(t, 60*time.Second, p+" from both nodes after the outage", func(context.Context) error { return route(p, v4s(l.nodes)) })
	}
	for i, n := range l.nodes {
		if done, _ := n.speaker.Exited(); done || n.speaker.Cmd.Process.Pid != pids[i] {
			t.Fatalf("%s's speaker was restarted or exited", n.name)
		}
	}
}
