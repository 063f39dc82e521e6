package bgp_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// Graceful restart proven with FRR as the helper: a client behind the router opens a new TCP
// connection to the Service address every 50 ms while the node's speaker is restarted five
// times, as a rolling update does (SIGTERM, then a new process). With gracefulRestart the
// router keeps the node's path, marked stale, while the speaker is away, and the new speaker
// refreshes it: no connection fails. Without it, SIGTERM withdraws the path at once.
func TestFRRGracefulRestart(t *testing.T) {
	l := newLab(t, 1)
	n := l.nodes[0]
	frr := routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	cli := l.clientBehindRouter()
	const vip = "198.51.100.10"
	n.ns.Addr("lo", vip+"/32")
	// The node answers on the address itself, from this process (no fork per connection that a
	// loaded machine could delay): the path through the proxy is speaker/proxy's to prove.
	var ln net.Listener
	if err := n.ns.Do(func() (err error) { ln, err = net.Listen("tcp", vip+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, n.name)
			c.Close()
		}
	}()

	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN,
		GracefulRestart: &v1alpha1.GracefulRestart{Enabled: true, RestartTime: &metav1.Duration{Duration: 60 * time.Second}},
	}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.service("web", false, vip)
	l.startAll()
	established := func() {
		t.Helper()
		kit.Eventually(t, 30*time.Second, "session established", func(context.Context) error {
			if e, _ := l.sessionState("frr", n.name); e.State != "Established" {
				return fmt.Errorf("status %+v", e)
			}
			return nil
		})
	}
	// path returns whether FRR has the node's path to vip and whether it is stale.
	path := func() (have, stale bool, err error) {
		var r struct {
			Paths []struct {
				Stale bool `json:"stale"`
			} `json:"paths"`
		}
		if err := frr.JSON("show bgp ipv4 unicast "+vip+"/32 json", &r); err != nil {
			return false, false, err
		}
		if len(r.Paths) == 0 {
			return false, false, nil
		}
		return true, r.Paths[0].Stale, nil
	}
	fresh := func(what string) {
		t.Helper()
		kit.Eventually(t, 30*time.Second, what, func(context.Context) error {
			have, stale, err := path()
			if err == nil && (!have || stale) {
				err = fmt.Errorf("path present %v, stale %v", have, stale)
			}
			return err
		})
	}
	established()
	fresh("the path in FRR's RIB")
	out, err := frr.Vtysh("show bgp ipv4 neighbors " + n.v4 + " graceful-restart json")
	// nBit: RFC 8538 negotiated, receivedRestartTimer: the BGPPeer's restartTime.
	if err != nil || !strings.Contains(out, `"remoteGrMode":"Restart"`) || !strings.Contains(out, `"nBit":true`) ||
		!strings.Contains(out, `"receivedRestartTimer":60`) {
		t.Fatalf("FRR does not see the speaker's graceful restart capability as configured: %v\n%s", err, out)
	}

	// The client: a new connection every 50 ms, each must be answered by the node.
	var attempts, failures atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			attempts.Add(1)
			err := cli.Do(func() error {
				c, err := net.DialTimeout("tcp", vip+":8080", 2*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil && strings.TrimSpace(line) != n.name {
					err = fmt.Errorf("answer %q", line)
				}
				return err
			})
			if err != nil {
				failures.Add(1)
				lastErr.Store(err.Error())
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	for i := range 5 {
		n.speaker.Signal(syscall.SIGTERM)
		if ok, _ := n.speaker.Wait(20 * time.Second); !ok {
			t.Fatalf("restart %d: the speaker did not exit on SIGTERM", i+1)
		}
		// Away: FRR keeps the path, stale, and keeps forwarding on it.
		have, stale, err := path()
		if err != nil || !have || !stale {
			t.Fatalf("restart %d: with the speaker gone FRR has the path %v, stale %v (%v); want it kept as stale", i+1, have, stale, err)
		}
		if got, _ := fib(l.router, vip+"/32"); len(got) != 1 {
			t.Fatalf("restart %d: the kernel route went while the speaker was away: %v", i+1, got)
		}
		time.Sleep(time.Second) // a rolling update's gap between the old Pod and the new
		n.start()
		established()
		fresh(fmt.Sprintf("restart %d: the path refreshed by the new speaker", i+1))
	}
	time.Sleep(500 * time.Millisecond)
	if f, a := failures.Load(), attempts.Load(); f != 0 || a < 100 {
		t.Fatalf("%d of %d connections failed across 5 restarts (last: %v)", f, a, lastErr.Load())
	}
	t.Logf("%d connections across 5 speaker restarts, none failed", attempts.Load())

	// Without graceful restart, SIGTERM's Cease withdraws at once.
	var p v1alpha1.BGPPeer
	if err := l.c.Get(ctx, client.ObjectKey{Name: "frr"}, &p); err != nil {
		t.Fatal(err)
	}
	p.Spec.GracefulRestart = nil
	if err := l.c.Update(ctx, &p); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 30*time.Second, "FRR sees the session without graceful restart", func(context.Context) error {
		out, err := frr.Vtysh("show bgp ipv4 neighbors " + n.v4 + " graceful-restart json")
		if err == nil && !strings.Contains(out, `"remoteGrMode":"Helper"`) && !strings.Contains(out, `"remoteGrMode":"NotApplicable"`) {
			err = fmt.Errorf("%s", out)
		}
		return err
	})
	established()
	fresh("the path again")
	n.speaker.Signal(syscall.SIGTERM)
	start := time.Now()
	kit.Eventually(t, 5*time.Second, "withdrawn at once on SIGTERM without graceful restart", func(context.Context) error {
		if got, err := fib(l.router, vip+"/32"); err != nil || len(got) > 0 {
			return fmt.Errorf("%v %v", got, err)
		}
		return nil
	})
	t.Logf("without graceful restart the route went %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}
