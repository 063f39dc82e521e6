package bgp_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/bench/samples"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// BenchmarkFRRLinkCut measures node failure detection: one node advertises a Service to FRR
// (BGP timers 3/9 s on both sides); the node's link is cut at the router, and the time until
// FRR's kernel drops the route is taken from `ip -ts monitor route`. 20 trials with BFD
// (300 ms × 3 on both sides) and 20 without (the 9 s hold time). Prints p50/p99/max, and
// writes every trial's time to bgp-linkcut.json (samples.Dir) for the plots.
func BenchmarkFRRLinkCut(b *testing.B) {
	const trials = 20
	for range b.N {
		file := samples.Begin("speaker/bgp BenchmarkFRRLinkCut")
		res := map[string][]time.Duration{}
		for _, withBFD := range []bool{true, false} {
			name := "hold timer 9s"
			if withBFD {
				name = "BFD 300ms x3"
			}
			res[name] = frrLinkCut(b, withBFD, trials)
		}
		fmt.Fprintf(os.Stdout, "\nlink cut -> route gone from FRR's FIB (%d trials each)\n", trials)
		fmt.Fprintf(os.Stdout, "| | p50 | p99 | max |\n|---|---|---|---|\n")
		for _, name := range []string{"BFD 300ms x3", "hold timer 9s"} {
			ds := res[name]
			fmt.Fprintf(os.Stdout, "| %s | %d ms | %d ms | %d ms |\n", name, percentile(ds, 0.5).Milliseconds(),
				percentile(ds, 0.99).Milliseconds(), percentile(ds, 1).Milliseconds())
			file.AddDurations(ds, "detection", name)
		}
		path, err := file.Write(samples.Dir(controlplane.RepoRoot()), "bgp-linkcut")
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("wrote %s", path)
	}
}

func frrLinkCut(t testing.TB, withBFD bool, trials int) []time.Duration {
	l := newLab(t, 1)
	n := l.nodes[0]
	extra := func(n *node) string { return fmt.Sprintf(" neighbor %s timers 3 9\n", n.v4) }
	var frr *routers.FRR
	if withBFD {
		extra = func(n *node) string {
			return fmt.Sprintf(" neighbor %s timers 3 9\n", n.v4) + frrBFDNeighbors(n)
		}
		frr = routers.StartFRRWithBFD(t, l.router, frrConfig(routerASN, l.nodes, extra), frrBFDConf(300, 300, 3))
		l.create(bfdProfile("fast", 300, 300, 3, false))
	} else {
		frr = routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, extra))
	}
	_ = frr
	// A second port keeps the router's bridge up when node1's is cut: a bridge without a live
	// port goes down, and its routes would merely be marked linkdown.
	netns.Veth(t, l.router, "keep0", netns.New(t, "spare"), "eth0")
	l.router.MustRun("ip", "link", "set", "keep0", "master", "br0")
	spec := v1alpha1.BGPPeerSpec{PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN,
		HoldTime: &metav1.Duration{Duration: 9 * time.Second}, KeepaliveTime: &metav1.Duration{Duration: 3 * time.Second}}
	if withBFD {
		spec.BFDProfile = "fast"
	}
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: spec})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	w := routeWatch{p: l.router.Start("ip", "-ts", "monitor", "route")}
	l.startAll()
	const vip = "198.51.100.10"
	l.service("web", false, vip)
	var out []time.Duration
	for i := range trials {
		kit.Eventually(t, 90*time.Second, fmt.Sprintf("trial %d: route present", i), func(context.Context) error {
			got, err := fib(l.router, vip+"/32")
			if err != nil {
				return err
			}
			return wantSet(got, []string{n.v4})
		})
		time.Sleep(time.Second) // let BFD finish its poll and settle at the fast rate
		t0 := time.Now()
		l.router.MustRun("ip", "link", "set", "p1", "down")
		out = append(out, latencies(t, w, map[string]time.Time{vip: t0}, true)...)
		l.router.MustRun("ip", "link", "set", "p1", "up")
	}
	return out
}
