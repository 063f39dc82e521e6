package bgp_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

const (
	routerASN  = 64500
	clusterASN = 64512
)

// frrConfig peers with every node over IPv4, carrying IPv4 and IPv6 unicast, and installs up
// to 8 equal paths (ECMP).
func frrConfig(asn int, nodes []*node, extra func(n *node) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n bgp bestpath as-path multipath-relax\n", asn, routerAddr4)
	for _, n := range nodes {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", n.v4, clusterASN, n.v4)
		if extra != nil {
			b.WriteString(extra(n))
		}
	}
	for _, af := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n", af)
		for _, n := range nodes {
			fmt.Fprintf(&b, "  neighbor %s activate\n", n.v4)
		}
		b.WriteString(" exit-address-family\n")
	}
	return b.String()
}

// frrRoute is the part of `show bgp ... json` the tests read.
type frrRoute struct {
	Prefix string `json:"prefix"`
	Paths  []struct {
		Valid     bool `json:"valid"`
		LocalPref *int `json:"locPrf"`
		Community *struct {
			String string `json:"string"`
		} `json:"community"`
		LargeCommunity *struct {
			String string `json:"string"`
		} `json:"largeCommunity"`
		Nexthops []struct {
			IP    string `json:"ip"`
			Scope string `json:"scope"`
		} `json:"nexthops"`
	} `json:"paths"`
}

// frrNextHops returns the sorted global next hops of the router's BGP paths to prefix.
func frrNextHops(f *routers.FRR, prefix string) ([]string, frrRoute, error) {
	af := "ipv4"
	if strings.Contains(prefix, ":") {
		af = "ipv6"
	}
	var r frrRoute
	if err := f.JSON(fmt.Sprintf("show bgp %s unicast %s json", af, prefix), &r); err != nil {
		return nil, r, err
	}
	var nhs []string
	for _, p := range r.Paths {
		for _, nh := range p.Nexthops {
			if nh.Scope == "" || nh.Scope == "global" {
				nhs = append(nhs, nh.IP)
			}
		}
	}
	slices.Sort(nhs)
	return nhs, r, nil
}

// Three nodes under externalTrafficPolicy Cluster: the router learns the Service's /32 and
// /128 from all three (ECMP in its kernel), with the advertisement's communities; under Local
// only the nodes with endpoints stay next hops; deleting the Service withdraws it; SIGTERM on
// a speaker takes its next hop away at once (Cease), far sooner than the hold time.
func TestFRRClusterAndLocal(t *testing.T) {
	l := newLab(t, 3)
	frr := routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN,
		HoldTime: &metav1.Duration{Duration: 90 * time.Second},
	}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}, Spec: v1alpha1.BGPAdvertisementSpec{
		Communities:      []string{"64512:100", "no-export"},
		LargeCommunities: []string{"64512:1:2"},
	}})
	l.startAll()
	for _, n := range l.nodes {
		kit.Eventually(t, 30*time.Second, "session of "+n.name+" in status", func(context.Context) error {
			e, ok := l.sessionState("frr", n.name)
			if !ok || e.State != "Established" {
				return fmt.Errorf("status %+v", e)
			}
			return nil
		})
	}

	svc := l.service("web", false, "198.51.100.10", "2001:db8:ff::10")
	for prefix, want := range map[string][]string{"198.51.100.10/32": v4s(l.nodes), "2001:db8:ff::10/128": v6s(l.nodes)} {
		kit.Eventually(t, 20*time.Second, prefix+" from every node in the RIB", func(context.Context) error {
			got, _, err := frrNextHops(frr, prefix)
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
		kit.Eventually(t, 20*time.Second, prefix+" ECMP in the kernel", func(context.Context) error {
			got, err := fib(l.router, prefix)
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
	}
	_, r, err := frrNextHops(frr, "198.51.100.10/32")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Paths {
		if p.Community == nil || p.Community.String != "64512:100 no-export" {
			t.Errorf("communities: got %+v, want 64512:100 no-export", p.Community)
		}
		if p.LargeCommunity == nil || p.LargeCommunity.String != "64512:1:2" {
			t.Errorf("large communities: got %+v, want 64512:1:2", p.LargeCommunity)
		}
	}
	kit.Eventually(t, 10*time.Second, "prefixes sent in status", func(context.Context) error {
		e, _ := l.sessionState("frr", "node1")
		if e.PrefixesSent != 2 {
			return fmt.Errorf("prefixesSent %d, want 2", e.PrefixesSent)
		}
		return nil
	})

	// Local: only nodes with a ready endpoint; the next hops follow the endpoints.
	local := l.service("local", true, "198.51.100.20")
	l.endpoints("local", "node1", "node2")
	kit.Eventually(t, 20*time.Second, "ETP Local next hops = nodes with endpoints", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.20/32")
		if err != nil {
			return err
		}
		return wantSet(got, []string{l.nodes[0].v4, l.nodes[1].v4})
	})
	l.endpoints("local", "node3")
	kit.Eventually(t, 20*time.Second, "ETP Local next hops after scaling", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.20/32")
		if err != nil {
			return err
		}
		return wantSet(got, []string{l.nodes[2].v4})
	})
	if err := l.c.Delete(ctx, local); err != nil {
		t.Fatal(err)
	}

	// Deleting a Service withdraws its prefixes everywhere.
	if err := l.c.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 20*time.Second, "withdrawn after Service delete", func(context.Context) error {
		for _, p := range []string{"198.51.100.10/32", "2001:db8:ff::10/128", "198.51.100.20/32"} {
			if got, err := fib(l.router, p); err != nil || len(got) > 0 {
				return fmt.Errorf("%s: %v %v", p, got, err)
			}
		}
		return nil
	})

	// SIGTERM: the speaker closes its session with a Cease at once; the router drops its
	// next hop long before the 90s hold time could have.
	l.service("again", false, "198.51.100.30")
	kit.Eventually(t, 20*time.Second, "all next hops", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.30/32")
		if err != nil {
			return err
		}
		return wantSet(got, v4s(l.nodes))
	})
	l.nodes[0].speaker.Signal(syscall.SIGTERM)
	start := time.Now()
	kit.Eventually(t, 15*time.Second, "node1's next hop gone after SIGTERM, long before the 90s hold time", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.30/32")
		if err != nil {
			return err
		}
		return wantSet(got, v4s(l.nodes[1:]))
	})
	t.Logf("next hop removed %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if ok, err := l.nodes[0].speaker.Wait(10 * time.Second); !ok || err != nil {
		t.Errorf("speaker did not exit cleanly after SIGTERM: exited=%v err=%v", ok, err)
	}
	if e, ok := l.sessionState("frr", "node1"); ok {
		t.Errorf("a stopped speaker left its status entry behind: %+v", e)
	}
	if e, _ := l.sessionState("frr", "node2"); e.State != "Established" {
		t.Errorf("node2's status entry was disturbed: %+v", e)
	}
}

// iBGP with aggregation and LOCAL_PREF: two Services in one /24 give one /24 path with the
// configured local preference (and a /64 for IPv6); the aggregate stays while any Service in
// it does; SIGTERM's Cease withdraws it at once (graceful restart, which keeps it, is
// TestFRRGracefulRestart's).
func TestFRRIBGPAggregationLocalPref(t *testing.T) {
	l := newLab(t, 1)
	n := l.nodes[0]
	frr := routers.StartFRR(t, l.router, frrConfig(clusterASN, l.nodes, nil))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "rr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: clusterASN, LocalASN: clusterASN,
	}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "agg"}, Spec: v1alpha1.BGPAdvertisementSpec{
		IPPools: []string{"public"}, AggregationLength: ptr.To[int32](24), AggregationLengthV6: ptr.To[int32](64),
		LocalPref: ptr.To[uint32](250),
	}})
	l.startAll()
	a := l.service("a", false, "198.51.100.10", "2001:db8:ff::10")
	l.service("b", false, "198.51.100.20")

	for _, prefix := range []string{"198.51.100.0/24", "2001:db8:ff::/64"} {
		want := []string{n.v4}
		if strings.Contains(prefix, ":") {
			want = []string{n.v6}
		}
		kit.Eventually(t, 30*time.Second, prefix+" aggregate with local-pref", func(context.Context) error {
			got, r, err := frrNextHops(frr, prefix)
			if err != nil {
				return err
			}
			if err := wantSet(got, want); err != nil {
				return err
			}
			if lp := r.Paths[0].LocalPref; lp == nil || *lp != 250 {
				return fmt.Errorf("locPrf %v, want 250", lp)
			}
			return nil
		})
		kit.Eventually(t, 20*time.Second, prefix+" in the kernel", func(context.Context) error {
			got, err := fib(l.router, prefix)
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
	}
	if got, _, err := frrNextHops(frr, "198.51.100.10/32"); err != nil || len(got) != 0 {
		// `show bgp ... <address>/32` finds only an exact route: the /32 itself must not exist.
		t.Errorf("the /32 was advertised besides the aggregate: %v %v", got, err)
	}
	kit.Eventually(t, 10*time.Second, "status counts the aggregates", func(context.Context) error {
		if e, _ := l.sessionState("rr", n.name); e.PrefixesSent != 2 {
			return fmt.Errorf("status %+v, want 2 prefixes", e)
		}
		return nil
	})

	if err := l.c.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 20*time.Second, "IPv6 aggregate gone with its only Service", func(context.Context) error {
		if got, err := fib(l.router, "2001:db8:ff::/64"); err != nil || len(got) > 0 {
			return fmt.Errorf("%v %v", got, err)
		}
		return nil
	})
	if got, _ := fib(l.router, "198.51.100.0/24"); len(got) != 1 {
		t.Fatalf("the IPv4 aggregate went although Service b is still in it: %v", got)
	}

	n.speaker.Signal(syscall.SIGTERM)
	kit.Eventually(t, 15*time.Second, "withdrawn on SIGTERM (hold 90s)", func(context.Context) error {
		if got, err := fib(l.router, "198.51.100.0/24"); err != nil || len(got) > 0 {
			return fmt.Errorf("%v %v", got, err)
		}
		return nil
	})
}

// A client behind the router reaches the Service's address on a node the router learnt from
// BGP, and after that node's speaker stops, on the other one. (The nodes answer on the
// address themselves; the path through the service proxy is speaker/proxy's to prove.)
func TestFRRClientReachesAdvertisingNode(t *testing.T) {
	l := newLab(t, 2)
	routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	client := l.clientBehindRouter()
	const vip = "198.51.100.10"
	for _, n := range l.nodes {
		n.ns.Addr("lo", vip+"/32")
		n.ns.Start("socat", "TCP-LISTEN:8080,bind="+vip+",fork,reuseaddr", "SYSTEM:echo "+n.name)
	}
	ask := func() (string, error) {
		out, err := client.Run("socat", "-T3", "STDIO", "TCP:"+vip+":8080,connect-timeout=2")
		return strings.TrimSpace(out), err
	}
	if out, err := ask(); err == nil {
		t.Fatalf("the client reached %s before anything was advertised: %q", vip, out)
	}

	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	l.service("web", false, vip)
	kit.Eventually(t, 30*time.Second, "ECMP route", func(context.Context) error {
		got, err := fib(l.router, vip+"/32")
		if err != nil {
			return err
		}
		return wantSet(got, v4s(l.nodes))
	})
	var first string
	kit.Eventually(t, 10*time.Second, "the client reaches a node", func(context.Context) error {
		out, err := ask()
		if err != nil {
			return err
		}
		if out != "node1" && out != "node2" {
			return fmt.Errorf("answer %q", out)
		}
		first = out
		return nil
	})
	stopped, other := l.nodes[0], l.nodes[1]
	if first == "node2" {
		stopped, other = other, stopped
	}
	stopped.speaker.Signal(syscall.SIGTERM)
	kit.Eventually(t, 10*time.Second, "the client reaches the other node", func(context.Context) error {
		out, err := ask()
		if err != nil {
			return err
		}
		if out != other.name {
			return fmt.Errorf("answer %q, want %s", out, other.name)
		}
		return nil
	})
}
