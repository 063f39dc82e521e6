package bgp_test

import (
	"context"
	"fmt"
	"k8s.io/client-go/util/retry"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// frrNeighborState returns FRR's BGP state for one neighbor.
func frrNeighborState(f *routers.FRR, addr string) (string, error) {
	st, _, err := frrNeighbor(f, addr)
	return st, err
}

// frrNeighbor returns FRR's BGP state for one neighbor and how many times it was established.
func frrNeighbor(f *routers.FRR, addr string) (string, int, error) {
	var m map[string]struct {
		State       string `json:"bgpState"`
		Established int    `json:"connectionsEstablished"`
	}
	if err := f.JSON("show bgp neighbors "+addr+" json", &m); err != nil {
		return "", 0, err
	}
	return m[addr].State, m[addr].Established, nil
}

// A node with two sessions to one FRR: one with a TCP MD5 password, one whose BGPPeer has the
// wrong peer ASN. Each fails on its own with a status that says why, while the other is
// unaffected; fixing the Secret and then the ASN brings each up. Passwords never reach the log;
// Events and metrics follow the sessions.
func TestFRRPasswordAndWrongASN(t *testing.T) {
	const good, bad = "s3cret-md5-pass", "wrong-md5-pass"
	l := newLab(t, 1)
	n := l.nodes[0]
	conf := frrConfig(routerASN, l.nodes, func(n *node) string {
		return fmt.Sprintf(" neighbor %s password %s\n", n.v4, good)
	})
	// A second session over IPv6 from the same node, without a password.
	conf = strings.Replace(conf, " address-family ipv4 unicast\n",
		fmt.Sprintf(" neighbor %s remote-as %d\n neighbor %s timers connect 1\n address-family ipv4 unicast\n  neighbor %s activate\n", n.v6, clusterASN, n.v6, n.v6), 1)
	frr := routers.StartFRR(t, l.router, conf)

	l.pool()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bgp-pass", Namespace: "default"},
		Data: map[string][]byte{"password": []byte(bad)}}
	l.create(secret)
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "md5"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN,
		PasswordSecret: &v1alpha1.SecretKeyRef{Name: "bgp-pass"},
	}})
	wrongASN := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "asn"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr6, PeerASN: routerASN + 1, LocalASN: clusterASN,
	}}
	l.create(wrongASN)
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	n.extraArg = []string{"--metrics-bind-address", "127.0.0.1:17474", "--metrics-secure=false"}
	n.start()
	l.service("web", false, "198.51.100.10")

	kit.Eventually(t, 30*time.Second, "MD5 mismatch reported", func(context.Context) error {
		e, ok := l.sessionState("md5", n.name)
		if !ok || e.State == "Established" || !strings.Contains(e.LastError, "MD5") {
			return fmt.Errorf("status %+v: want a failed session whose error mentions MD5", e)
		}
		return nil
	})
	kit.Eventually(t, 30*time.Second, "wrong ASN reported", func(context.Context) error {
		e, ok := l.sessionState("asn", n.name)
		if !ok || e.State == "Established" || !strings.Contains(e.LastError, "bad peer as") {
			return fmt.Errorf("status %+v: want a failed session with bad peer as", e)
		}
		return nil
	})
	if st, err := frrNeighborState(frr, n.v4); err != nil || st == "Established" {
		t.Fatalf("FRR's session with a wrong password: %q %v", st, err)
	}

	// Fix the Secret: the MD5 session comes up, the other stays down.
	secret.Data["password"] = []byte(good)
	if err := l.c.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 30*time.Second, "session up after fixing the Secret", func(context.Context) error {
		if st, err := frrNeighborState(frr, n.v4); err != nil || st != "Established" {
			return fmt.Errorf("FRR says %q %v", st, err)
		}
		if e, _ := l.sessionState("md5", n.name); e.State != "Established" || e.LastError != "" || e.PrefixesSent != 1 {
			return fmt.Errorf("status %+v", e)
		}
		return nil
	})
	kit.Eventually(t, 20*time.Second, "route via the MD5 session", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, []string{n.v4})
	})
	if e, _ := l.sessionState("asn", n.name); e.State == "Established" {
		t.Fatalf("the wrong-ASN session came up: %+v", e)
	}
	kit.Eventually(t, 60*time.Second, "retries of the failing session back off", func(context.Context) error {
		if !strings.Contains(n.speaker.Output(), "pausing its retries") {
			return fmt.Errorf("no backoff in the speaker's log")
		}
		return nil
	})
	_, md5Ups, err := frrNeighbor(frr, n.v4)
	if err != nil {
		t.Fatal(err)
	}

	// Fix the ASN: that session comes up too, the MD5 one stays up.
	// The speakers write the peer's status meanwhile: retry on conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := l.c.Get(ctx, client.ObjectKeyFromObject(wrongASN), wrongASN); err != nil {
			return err
		}
		wrongASN.Spec.PeerASN = routerASN
		return l.c.Update(ctx, wrongASN)
	}); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 30*time.Second, "session up after fixing the ASN", func(context.Context) error {
		if st, err := frrNeighborState(frr, n.v6); err != nil || st != "Established" {
			return fmt.Errorf("FRR says %q %v", st, err)
		}
		if e, _ := l.sessionState("asn", n.name); e.State != "Established" {
			return fmt.Errorf("status %+v", e)
		}
		return nil
	})
	// Changing one BGPPeer, and adding a Service, must not reset the other session.
	l.service("more", false, "198.51.100.11")
	kit.Eventually(t, 20*time.Second, "new Service via the MD5 session", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.11/32")
		if err != nil {
			return err
		}
		return wantSet(got, []string{n.v4})
	})
	if st, ups, err := frrNeighbor(frr, n.v4); err != nil || st != "Established" || ups != md5Ups {
		t.Errorf("the MD5 session was reset by unrelated changes: %q, established %d times (was %d), %v", st, ups, md5Ups, err)
	}

	kit.Eventually(t, 10*time.Second, "node1's metrics to show both sessions up and md5's two prefixes", func(context.Context) error {
		out, err := n.metrics("127.0.0.1:17474")
		if err != nil {
			return err
		}
		for _, want := range []string{`fairlead_bgp_session_up{peer="md5"} 1`, `fairlead_bgp_session_up{peer="asn"} 1`,
			`fairlead_bgp_prefixes_advertised{peer="md5"} 2`} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("no %q in metrics", want)
			}
		}
		return nil
	})
	kit.Eventually(t, 10*time.Second, "Events on the BGPPeers", func(context.Context) error {
		var evs corev1.EventList
		if err := l.c.List(ctx, &evs); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == "BGPPeer" {
				seen[e.InvolvedObject.Name+"/"+e.Reason] = true
			}
		}
		for _, want := range []string{"md5/SessionFailed", "md5/SessionEstablished", "asn/SessionFailed", "asn/SessionEstablished"} {
			if !seen[want] {
				return fmt.Errorf("no Event %s among %v", want, seen)
			}
		}
		return nil
	})

	if out := n.speaker.Output(); strings.Contains(out, good) || strings.Contains(out, bad) {
		t.Error("a password appeared in the speaker's log")
	}
}

// A BGPPeer with nodeSelectors and a sourceAddress: only the selected node opens the session,
// from that address, which also becomes the next hop; the other node neither peers nor shows
// up in the status.
func TestFRRSourceAddressAndNodeSelector(t *testing.T) {
	const src = "192.0.2.21"
	l := newLab(t, 2)
	n1, n2 := l.nodes[0], l.nodes[1]
	n1.ns.Addr("eth0", src+"/24")
	// FRR expects node1 at the source address, not at its primary one.
	conf := strings.ReplaceAll(frrConfig(routerASN, l.nodes, nil), "neighbor "+n1.v4+" ", "neighbor "+src+" ")
	frr := routers.StartFRR(t, l.router, conf)
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN, SourceAddress: src,
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"kubernetes.io/hostname": n1.name}}},
	}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	l.service("web", false, "198.51.100.10")
	kit.Eventually(t, 30*time.Second, "route via the source address", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, []string{src})
	})
	if st, err := frrNeighborState(frr, src); err != nil || st != "Established" {
		t.Errorf("FRR's session with %s: %q %v", src, st, err)
	}
	kit.Eventually(t, 10*time.Second, "status of node1 only", func(context.Context) error {
		st, err := l.peerStatus("frr")
		if err != nil {
			return err
		}
		if len(st.Nodes) != 1 || st.Nodes[0].Node != n1.name || st.Nodes[0].State != "Established" {
			return fmt.Errorf("status %+v, want node1 Established only", st.Nodes)
		}
		return nil
	})
	if st, _ := frrNeighborState(frr, n2.v4); st == "Established" {
		t.Error("node2 peered although the BGPPeer does not select it")
	}
}

// An eBGP peer two hops away: without ebgpMultihop the session's packets (TTL 1) die at the
// router in between and the status says the connection fails; with ebgpMultihop: 2 it comes
// up and the router resolves the node's next hop through the middle router.
func TestFRREBGPMultihop(t *testing.T) {
	l := newLab(t, 0)
	mid := netns.New(t, "mid")
	n := &node{name: "node1", ns: netns.New(t, "node1"), lab: l, v4: "203.0.113.2", v6: "2001:db8:0:2::2"}
	netns.Veth(t, n.ns, "eth0", mid, "m0")
	netns.Veth(t, mid, "m1", l.router, "up0")
	n.ns.Addr("eth0", "203.0.113.2/30")
	mid.Addr("m0", "203.0.113.1/30")
	mid.Addr("m1", "203.0.113.5/30")
	l.router.Addr("up0", "203.0.113.6/30")
	mid.Sysctl("net.ipv4.ip_forward", "1")
	n.ns.MustRun("ip", "route", "add", "203.0.113.4/30", "via", "203.0.113.1")
	l.router.MustRun("ip", "route", "add", "203.0.113.0/30", "via", "203.0.113.5")
	n.ns.Forward(l.apiAddr, l.apiAddr)
	l.createNode(n)
	l.nodes = append(l.nodes, n)

	frr := routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, func(n *node) string {
		return fmt.Sprintf(" neighbor %s ebgp-multihop 2\n", n.v4)
	}))
	l.pool()
	p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "far"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "203.0.113.6", PeerASN: routerASN, LocalASN: clusterASN}}
	l.create(p)
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	n.start()
	l.service("web", false, "198.51.100.10")

	kit.Eventually(t, 30*time.Second, "single-hop session to a distant peer fails", func(context.Context) error {
		if e, _ := l.sessionState("far", n.name); e.State == "Established" || !strings.Contains(e.LastError, "cannot connect") {
			return fmt.Errorf("status %+v, want a connection error", e)
		}
		return nil
	})
	if st, _ := frrNeighborState(frr, n.v4); st == "Established" {
		t.Fatal("FRR established a session the node sent with TTL 1 across a router")
	}

	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := l.c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		p.Spec.EBGPMultihop = ptr.To[int32](2)
		return l.c.Update(ctx, p)
	}); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 60*time.Second, "multihop session and route", func(context.Context) error {
		if e, _ := l.sessionState("far", n.name); e.State != "Established" {
			return fmt.Errorf("status %+v", e)
		}
		got, err := fib(l.router, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, []string{"203.0.113.5"})
	})
	if got, _, err := frrNextHops(frr, "198.51.100.10/32"); err != nil || !slices.Equal(got, []string{n.v4}) {
		t.Errorf("BGP next hop %v %v, want the node's address %s", got, err, n.v4)
	}
}
