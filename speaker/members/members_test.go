package members

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// Speakers on 127.0.0.{1,2,3} (one port, as on real nodes) find each other from the
// Kubernetes view alone, notice a crashed one, and take it back when it returns.
func TestMembership(t *testing.T) {
	const port = 17946
	hosts := map[string]string{"node1": "127.0.0.1", "node2": "127.0.0.2", "node3": "127.0.0.3"}
	ms := map[string]*Members{}
	cancels := map[string]context.CancelFunc{}
	// Two readers of node1's changes, as layer 2 and the Elastic IP mover are.
	var watchers []<-chan struct{}
	start := func(name string) {
		m, err := Start(Config{Name: name, BindAddr: hosts[name], Port: port, Log: testr.New(t), Rejoin: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if name == "node1" && watchers == nil {
			watchers = append(watchers, m.Changes(), m.Changes())
		}
		m.SetPeers(hosts)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		ms[name] = m
		cancels[name] = sync.OnceFunc(func() { cancel(); <-done })
	}
	for name := range hosts {
		start(name)
	}
	t.Cleanup(func() {
		for _, c := range cancels {
			c()
		}
	})
	waitView := func(what string, want map[string][]string) {
		t.Helper()
		kit.Eventually(t, 10*time.Second, fmt.Sprintf("the members' views once %s: %v", what, want), func(context.Context) error {
			ok := true
			var got string
			for name, w := range want {
				alive := slices.Sorted(maps.Keys(ms[name].AliveSet()))
				got += fmt.Sprintf("%s sees %v; ", name, alive)
				ok = ok && slices.Equal(alive, w)
			}
			if !ok {
				return errors.New(got)
			}
			return nil
		})
	}
	all := []string{"node1", "node2", "node3"}
	waitView("joined", map[string][]string{"node1": all, "node2": all, "node3": all})
	for i, c := range watchers {
		select {
		case <-c:
		default:
			t.Errorf("reader %d: no change notified after joining", i)
		}
	}

	// A crash: no leave message, the others must detect it. (Its Run goroutine is left to
	// idle: ending it would try to leave a shut-down list.)
	if err := ms["node2"].ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	waitView("node2 crashed", map[string][]string{"node1": {"node1", "node3"}, "node3": {"node1", "node3"}})
	t.Logf("crash detected after %v", time.Since(t0))
	if ms["node1"].Alive("node2") || !ms["node1"].Alive("node1") {
		t.Error("Alive disagrees with AliveSet")
	}

	// Back under the same name: re-joined by the others' periodic join.
	start("node2")
	waitView("node2 back", map[string][]string{"node1": all, "node2": all, "node3": all})

	// A graceful stop is seen at once.
	cancels["node3"]()
	waitView("node3 left", map[string][]string{"node1": {"node1", "node2"}, "node2": {"node1", "node2"}})
}
