package bgp_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// routeWatch records when routes appear in and leave a namespace's kernel table, from
// `ip -ts monitor route` (the kernel's own notifications, timestamped as they arrive).
type routeWatch struct {
	p *netns.Proc
}

var monitorLine = regexp.MustCompile(`^\[(\S+)\] (Deleted )?(\S+) `)

// events returns, per destination, when it was last added and last deleted.
func (w routeWatch) events() (added, deleted map[string]time.Time) {
	added, deleted = map[string]time.Time{}, map[string]time.Time{}
	for _, line := range strings.Split(w.p.Output(), "\n") {
		m := monitorLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ts, err := time.ParseInLocation("2006-01-02T15:04:05.000000", m[1], time.Local)
		if err != nil {
			continue
		}
		if m[2] != "" {
			deleted[m[3]] = ts
		} else {
			added[m[3]] = ts
		}
	}
	return added, deleted
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// latencies waits until every address has an event in the chosen map, and returns each one's
// delay from its start time.
func latencies(t testing.TB, w routeWatch, starts map[string]time.Time, removed bool) []time.Duration {
	t.Helper()
	what := "every route added"
	if removed {
		what = "every route removed"
	}
	var out []time.Duration
	// The times come from the monitor's timestamps: how often this looks does not change them.
	kit.Eventually(t, 60*time.Second, what, func(context.Context) error {
		added, deleted := w.events()
		ev := added
		if removed {
			ev = deleted
		}
		out = out[:0]
		for a, t0 := range starts {
			if at, ok := ev[a]; ok && !at.Before(t0.Add(-time.Millisecond)) {
				out = append(out, at.Sub(t0))
			}
		}
		if len(out) != len(starts) {
			return fmt.Errorf("only %d of %d routes changed", len(out), len(starts))
		}
		return nil
	})
	return out
}

// BenchmarkFRR100Services measures, with 100 Services and one node peering with FRR, the time
// from writing a Service's address into its status to the route in FRR's kernel table; from
// deleting a Service to the route's removal; and from SIGTERM on the speaker to the removal of
// its remaining routes. Reported as p50/p99 in milliseconds.
func BenchmarkFRR100Services(b *testing.B) {
	for range b.N {
		for k, v := range frr100(b) {
			b.ReportMetric(float64(v.Microseconds())/1000, k+"-ms")
		}
	}
}

func frr100(t testing.TB) map[string]time.Duration {
	const n = 100
	l := newLab(t, 1)
	routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	w := routeWatch{p: l.router.Start("ip", "-ts", "monitor", "route")}
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	kit.Eventually(t, 30*time.Second, "node1's session with FRR established", func(context.Context) error {
		if e, _ := l.sessionState("frr", "node1"); e.State != "Established" {
			return fmt.Errorf("%+v", e)
		}
		return nil
	})

	created := map[string]time.Time{}
	var svcs []*corev1.Service
	for i := range n {
		ip := fmt.Sprintf("198.51.100.%d", 10+i)
		svcs = append(svcs, l.service(fmt.Sprintf("s%d", i), false, ip))
		created[ip] = time.Now() // status written: from here on the speaker may announce it
	}
	add := latencies(t, w, created, false)

	deletedAt := map[string]time.Time{}
	for i := range n / 2 {
		if err := l.c.Delete(ctx, svcs[i]); err != nil {
			t.Fatal(err)
		}
		deletedAt[fmt.Sprintf("198.51.100.%d", 10+i)] = time.Now()
	}
	del := latencies(t, w, deletedAt, true)

	termAt := map[string]time.Time{}
	now := time.Now()
	l.nodes[0].speaker.Signal(syscall.SIGTERM)
	for i := n / 2; i < n; i++ {
		termAt[fmt.Sprintf("198.51.100.%d", 10+i)] = now
	}
	term := latencies(t, w, termAt, true)
	return map[string]time.Duration{
		"create-p50": percentile(add, 0.5), "create-p99": percentile(add, 0.99),
		"delete-p50": percentile(del, 0.5), "delete-p99": percentile(del, 0.99),
		"sigterm-p50": percentile(term, 0.5), "sigterm-p99": percentile(term, 0.99),
	}
}
