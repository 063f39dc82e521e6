package bgp_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// A speaker killed without SIGTERM (its node gone) cannot remove its BGP entries from
// ServiceAnnouncements. Once the member list declares it dead, one surviving speaker removes
// them, exactly once (a poll of the object every 100 ms sees one removal, no flapping), and
// the others' entries stay; when the speaker comes back it lists itself again.
func TestFRRDeadSpeakerEntriesRemoved(t *testing.T) {
	l := newLab(t, 3)
	routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	ips := []string{"198.51.100.10", "2001:db8:ff::10"}
	l.service("web", false, ips...)
	check := func(what string, d time.Duration, want []string) {
		t.Helper()
		kit.Eventually(t, d, what, func(context.Context) error {
			got, _, err := l.announcements("web")
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
	}
	check("three nodes listed", 30*time.Second, bgpEntries(ips, "node1", "node2", "node3"))

	// Watch node3's entries: the sequence of "listed or not" it goes through.
	var mu sync.Mutex
	var seq []bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			got, _, err := l.announcements("web")
			if err != nil {
				continue
			}
			listed := slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, " node3 ") })
			mu.Lock()
			if len(seq) == 0 || seq[len(seq)-1] != listed {
				seq = append(seq, listed)
			}
			mu.Unlock()
		}
	})
	victim := l.nodes[2]
	victim.speaker.Signal(syscall.SIGKILL)
	start := time.Now()
	check("node3's entries removed by a survivor", 60*time.Second, bgpEntries(ips, "node1", "node2"))
	took := time.Since(start)
	time.Sleep(5 * time.Second) // a flap would show here
	victim.start()
	check("node3 lists itself again after its restart", 60*time.Second, bgpEntries(ips, "node1", "node2", "node3"))
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if want := []bool{true, false, true}; !slices.Equal(seq, want) {
		t.Errorf("node3's entries went listed/unlisted %v, want %v: removed once, back once", seq, want)
	}
	t.Logf("a SIGKILLed speaker's entries were removed %v after its death", took.Round(100*time.Millisecond))
	// Exactly one survivor did it.
	var reapers []string
	for _, n := range l.nodes[:2] {
		if strings.Contains(n.speaker.Output(), "removed a dead speaker's BGP entries") {
			reapers = append(reapers, n.name)
		}
	}
	if fmt.Sprint(reapers) != "[node1]" {
		t.Errorf("removed by %v, want by node1 alone (the lowest-named live speaker)", reapers)
	}
}
