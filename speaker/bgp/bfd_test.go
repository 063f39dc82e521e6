package bgp_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// frrBFDConf is bfdd's configuration: one profile the BGP neighbors use.
func frrBFDConf(rx, tx, mult int) string {
	return fmt.Sprintf("bfd\n profile lab\n  receive-interval %d\n  transmit-interval %d\n  detect-multiplier %d\n !\n!\n", rx, tx, mult)
}

// frrBFDNeighbors turns BFD on for each node.
func frrBFDNeighbors(n *node) string { return fmt.Sprintf(" neighbor %s bfd profile lab\n", n.v4) }

// frrBFDPeer is FRR's view of one BFD session (`show bfd peers json`).
type frrBFDPeer struct {
	Peer          string `json:"peer"`
	Status        string `json:"status"`
	RemoteRx      int    `json:"remote-receive-interval"`
	RemoteTx      int    `json:"remote-transmit-interval"`
	RemoteMult    int    `json:"remote-detect-multiplier"`
	Rx            int    `json:"receive-interval"`
	Tx            int    `json:"transmit-interval"`
	Mult          int    `json:"detect-multiplier"`
	Diagnostic    string `json:"diagnostic"`
	RemoteDiag    string `json:"remote-diagnostic"`
	RemoteID      uint32 `json:"remote-id"`
	ID            uint32 `json:"id"`
	Multihop      bool   `json:"multihop"`
	PassiveMode   bool   `json:"passive-mode"`
	EchoRxEnabled int    `json:"echo-receive-interval"`
}

func frrBFDPeers(f *routers.FRR) (map[string]frrBFDPeer, error) {
	var ps []frrBFDPeer
	if err := f.JSON("show bfd peers json", &ps); err != nil {
		return nil, err
	}
	out := map[string]frrBFDPeer{}
	for _, p := range ps {
		out[p.Peer] = p
	}
	return out, nil
}

func bfdProfile(name string, rx, tx, mult uint32, passive bool) *v1alpha1.BFDProfile {
	return &v1alpha1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BFDProfileSpec{
		ReceiveInterval: ptr.To(rx), TransmitInterval: ptr.To(tx), DetectMultiplier: ptr.To(mult), PassiveMode: passive}}
}

// metric reads one of the speaker's metrics (the node must run with --metrics-bind-address).
func (n *node) metric(addr, name string) (string, error) {
	out, err := n.metrics(addr)
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no %s in the metrics", name)
	}
	return m[1], nil
}

// Two nodes peer with FRR with BFD (FRR's bfdd, profile 400 ms RX / 250 ms TX / ×5; ours
// 200 ms RX / 300 ms TX / ×3) and a 90 s hold time. The sessions come up and both sides
// negotiate as RFC 5880 says; a BGPPeer naming a missing profile is Invalid with an Event and
// disturbs nothing. Cutting node1's link takes node1 out of FRR's kernel route by BFD (the hold
// time is 90 s) while node2 stays; restoring it brings node1 back; SIGKILL on node2's speaker
// takes node2 out the same way.
func TestFRRBFD(t *testing.T) {
	l := newLab(t, 2)
	frr := routers.StartFRRWithBFD(t, l.router, frrConfig(routerASN, l.nodes, frrBFDNeighbors), frrBFDConf(400, 250, 5))
	l.pool()
	l.create(bfdProfile("fast", 200, 300, 3, false))
	// The API enforces MetalLB's ranges.
	for _, bad := range []*v1alpha1.BFDProfile{bfdProfile("rx", 5, 300, 3, false), bfdProfile("mult", 300, 300, 1, false)} {
		if err := l.c.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "spec.") {
			t.Errorf("BFDProfile %s out of range was accepted (or rejected for another reason): %v", bad.Name, err)
		}
	}
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN,
		HoldTime: &metav1.Duration{Duration: 90 * time.Second}, BFDProfile: "fast",
	}})
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "typo"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr6, PeerASN: routerASN, LocalASN: clusterASN, BFDProfile: "fsat",
	}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}, Spec: v1alpha1.BGPAdvertisementSpec{Peers: []string{"frr"}}})
	for i, n := range l.nodes {
		n.extraArg = []string{"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", 17480+i), "--metrics-secure=false"}
	}
	l.startAll()
	const vip = "198.51.100.10/32"
	l.service("web", false, "198.51.100.10")
	kit.Eventually(t, 60*time.Second, "ECMP route through both nodes", func(context.Context) error {
		got, err := fib(l.router, vip)
		if err != nil {
			return err
		}
		return wantSet(got, v4s(l.nodes))
	})

	// FRR read our parameters, and holds its own; the negotiation is RFC 5880's.
	kit.Eventually(t, 20*time.Second, "BFD up in FRR with our parameters", func(context.Context) error {
		ps, err := frrBFDPeers(frr)
		if err != nil {
			return err
		}
		for _, n := range l.nodes {
			p := ps[n.v4]
			if p.Status != "up" || p.RemoteRx != 200 || p.RemoteTx != 300 || p.RemoteMult != 3 || p.Rx != 400 || p.Tx != 250 || p.Mult != 5 {
				return fmt.Errorf("FRR's BFD peer %s: %+v", n.v4, p)
			}
		}
		return nil
	})
	// Each side: transmit interval = max(own desired TX, other's required RX); detection time
	// = other's multiplier × max(own required RX, other's desired TX).
	frrTx, frrDetect := max(250, 200), 3*max(400, 300)
	ourTx, ourDetect := max(300, 400), 5*max(200, 250)
	t.Logf("negotiated: FRR sends every %d ms and detects in %d ms; the speaker sends every %d ms and detects in %d ms", frrTx, frrDetect, ourTx, ourDetect)
	for i, n := range l.nodes {
		addr := fmt.Sprintf("127.0.0.1:%d", 17480+i)
		kit.Eventually(t, 20*time.Second, n.name+"'s negotiated timers", func(context.Context) error {
			tx, err := n.metric(addr, `fairlead_bfd_transmit_interval_seconds{peer="frr"}`)
			if err != nil {
				return err
			}
			det, err := n.metric(addr, `fairlead_bfd_detection_time_seconds{peer="frr"}`)
			if err != nil {
				return err
			}
			if want := fmt.Sprint(float64(ourTx) / 1000); tx != want {
				return fmt.Errorf("transmit interval %s s, want %s", tx, want)
			}
			if want := fmt.Sprint(float64(ourDetect) / 1000); det != want {
				return fmt.Errorf("detection time %s s, want %s", det, want)
			}
			return nil
		})
	}

	// The misspelt profile: that peer alone is Invalid, with an Event naming the profile.
	kit.Eventually(t, 20*time.Second, "typo Invalid", func(context.Context) error {
		e, _ := l.sessionState("typo", "node1")
		if e.State != "Invalid" || !strings.Contains(e.LastError, `bfdProfile "fsat" not found`) {
			return fmt.Errorf("status %+v", e)
		}
		var evs corev1.EventList
		if err := l.c.List(ctx, &evs, client.InNamespace("default")); err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == "typo" && ev.Reason == "InvalidConfig" && ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Message, "fsat") {
				return nil
			}
		}
		return fmt.Errorf("no InvalidConfig Event on typo")
	})
	_, ups2, err := frrNeighbor(frr, l.nodes[1].v4)
	if err != nil {
		t.Fatal(err)
	}

	// Cut node1's link at the router's side. BFD, not the 90 s hold time, takes it out.
	l.router.MustRun("ip", "link", "set", "p1", "down")
	kit.Eventually(t, 30*time.Second, "node1 out of FRR's kernel route after the link cut", func(context.Context) error {
		got, err := fib(l.router, vip)
		if err != nil {
			return err
		}
		return wantSet(got, []string{l.nodes[1].v4})
	})
	ps, err := frrBFDPeers(frr)
	if err != nil {
		t.Fatal(err)
	}
	if p := ps[l.nodes[0].v4]; p.Status != "down" || p.Diagnostic != "control detection time expired" {
		t.Errorf("FRR's BFD session with node1 after the cut: %+v, want down by detection time", p)
	}
	if st, _ := frrNeighborState(frr, l.nodes[0].v4); st == "Established" {
		t.Errorf("FRR's BGP session with node1 still Established after BFD went down")
	}
	if st, ups, _ := frrNeighbor(frr, l.nodes[1].v4); st != "Established" || ups != ups2 {
		t.Errorf("node2's session was disturbed: %s, established %d times (was %d)", st, ups, ups2)
	}
	kit.Eventually(t, 20*time.Second, "node1's status says BFD", func(context.Context) error {
		if e, _ := l.sessionState("frr", "node1"); e.State == "Established" || !strings.Contains(e.LastError, "BFD") {
			return fmt.Errorf("status %+v", e)
		}
		return nil
	})

	l.router.MustRun("ip", "link", "set", "p1", "up")
	kit.Eventually(t, 60*time.Second, "node1 back after the link is restored", func(context.Context) error {
		got, err := fib(l.router, vip)
		if err != nil {
			return err
		}
		return wantSet(got, v4s(l.nodes))
	})

	// A crashed speaker: FRR's BFD notices, not the hold time.
	l.nodes[1].speaker.Signal(syscall.SIGKILL)
	kit.Eventually(t, 30*time.Second, "node2 out of FRR's kernel route after SIGKILL", func(context.Context) error {
		got, err := fib(l.router, vip)
		if err != nil {
			return err
		}
		return wantSet(got, []string{l.nodes[0].v4})
	})
	// (The kernel closes the dead process's TCP connection, which FRR may notice first; its
	// BFD session goes down within the detection time either way.)
	kit.Eventually(t, 20*time.Second, "FRR's BFD session with node2 down after SIGKILL", func(context.Context) error {
		ps, err := frrBFDPeers(frr)
		if err != nil {
			return err
		}
		if p := ps[l.nodes[1].v4]; p.Status != "down" || p.Diagnostic != "control detection time expired" {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})
}

// birdBFDConfig is birdConfig with BFD on every BGP session (IPv6, single hop): BIRD asks for
// 400 ms RX, offers 100 ms TX, ×5, and is passive.
func birdBFDConfig(nodes []*node) string {
	c := birdConfig(nodes)
	c = strings.Replace(c, "  connect retry time 1;\n", "  connect retry time 1;\n  hold time 90;\n  bfd on;\n", 1)
	return c + `protocol bfd {
  interface "*" { min rx interval 400 ms; min tx interval 100 ms; multiplier 5; passive on; };
}
`
}

// birdBFD is one line of `birdc show bfd sessions`: the negotiated interval and timeout.
var birdBFDLine = regexp.MustCompile(`(?m)^(\S+)\s+\S+\s+(\S+)\s+\S+(?:\s+\S+)?\s+([0-9.]+)\s+([0-9.]+)\s*$`)

func birdBFDSessions(b *routers.BIRD) (map[string][3]string, string, error) {
	out, err := b.Birdc("show bfd sessions")
	if err != nil {
		return nil, out, err
	}
	m := map[string][3]string{}
	for _, r := range birdBFDLine.FindAllStringSubmatch(out, -1) {
		m[r[1]] = [3]string{r[2], r[3], r[4]}
	}
	return m, out, nil
}

// BIRD's BFD over IPv6: with both sides passive nothing is ever sent, so BFD never comes up
// and BGP waits for it (the status says so); turning passive mode off in the BFDProfile brings
// BFD up without restarting anything, then BGP. BIRD shows the negotiated interval and
// detection timeout, which match RFC 5880. Cutting node1's link and SIGKILLing node2's speaker
// each take that node out of BIRD's kernel routes.
func TestBIRDBFD(t *testing.T) {
	l := newLab(t, 2)
	bird := routers.StartBIRD(t, l.router, birdBFDConfig(l.nodes))
	l.pool()
	prof := bfdProfile("fast", 200, 300, 3, true)
	l.create(prof)
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bird"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr6, PeerASN: routerASN, LocalASN: clusterASN,
		HoldTime: &metav1.Duration{Duration: 90 * time.Second}, BFDProfile: "fast",
	}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	const vip = "2001:db8:ff::10/128"
	l.service("web", false, "2001:db8:ff::10")

	for _, n := range l.nodes {
		kit.Eventually(t, 30*time.Second, n.name+" waits for BFD", func(context.Context) error {
			if e, _ := l.sessionState("bird", n.name); !strings.Contains(e.LastError, "waiting for BFD") {
				return fmt.Errorf("status %+v", e)
			}
			return nil
		})
	}
	time.Sleep(3 * time.Second) // BGP would have connected by now (BIRD retries every second)
	for _, n := range l.nodes {
		if e, _ := l.sessionState("bird", n.name); e.State == "Established" {
			t.Fatalf("%s's BGP came up although BFD never did: %+v", n.name, e)
		}
	}
	if got, _ := fib(l.router, vip); len(got) != 0 {
		t.Fatalf("route present while BFD is down: %v", got)
	}

	if err := l.c.Get(ctx, client.ObjectKeyFromObject(prof), prof); err != nil {
		t.Fatal(err)
	}
	prof.Spec.PassiveMode = false
	if err := l.c.Update(ctx, prof); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 60*time.Second, "multipath route through both nodes", func(context.Context) error {
		got, err := fib(l.router, vip)
		if err != nil {
			return err
		}
		return wantSet(got, v6s(l.nodes))
	})
	// BIRD's interval = max(its TX 100, our RX 200); its timeout = our ×3 × max(its RX 400,
	// our TX 300).
	wantIv, wantTimeout := fmt.Sprintf("%.3f", float64(max(100, 200))/1000), fmt.Sprintf("%.3f", float64(3*max(400, 300))/1000)
	kit.Eventually(t, 20*time.Second, "BIRD's negotiated BFD timers", func(context.Context) error {
		ss, out, err := birdBFDSessions(bird)
		if err != nil {
			return err
		}
		for _, n := range l.nodes {
			s := ss[n.v6]
			if s[0] != "Up" || s[1] != wantIv || s[2] != wantTimeout {
				return fmt.Errorf("%s: %v, want Up %s %s\n%s", n.v6, s, wantIv, wantTimeout, out)
			}
		}
		return nil
	})

	l.router.MustRun("ip", "link", "set", "p1", "down")
	kit.Eventually(t, 30*time.Second, "node1 out of BIRD's kernel route after the link cut", func(context.Context) error {
		got, err := fib(l.router, vip)
		if err != nil {
			return err
		}
		return wantSet(got, []string{l.nodes[1].v6})
	})
	if ss, out, _ := birdBFDSessions(bird); ss[l.nodes[0].v6][0] == "Up" {
		t.Errorf("BIRD's BFD session with node1 still Up after the cut:\n%s", out)
	}
	l.nodes[1].speaker.Signal(syscall.SIGKILL)
	kit.Eventually(t, 30*time.Second, "no route after SIGKILL of node2's speaker", func(context.Context) error {
		got, err := fib(l.router, vip)
		if err != nil {
			return err
		}
		return wantSet(got, nil)
	})
	if ss, out, _ := birdBFDSessions(bird); ss[l.nodes[1].v6][0] == "Up" {
		t.Errorf("BIRD's BFD session with node2 still Up after SIGKILL:\n%s", out)
	}
}
