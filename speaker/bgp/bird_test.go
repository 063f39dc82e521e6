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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// birdConfig peers with every node over IPv6, carrying IPv4 and IPv6 unicast, and merges
// equal paths into multipath kernel routes.
func birdConfig(nodes []*node) string {
	var b strings.Builder
	fmt.Fprintf(&b, `router id %s;
protocol device {}
protocol kernel k4 { ipv4 { export all; }; merge paths on; }
protocol kernel k6 { ipv6 { export all; }; merge paths on; }
template bgp node {
  local %s as %d;
  connect retry time 1;
  ipv4 { import all; export none; };
  ipv6 { import all; export none; };
}
`, routerAddr4, routerAddr6, routerASN)
	for i, n := range nodes {
		fmt.Fprintf(&b, "protocol bgp n%d from node { neighbor %s as %d; }\n", i+1, n.v6, clusterASN)
	}
	return b.String()
}

var birdVia = regexp.MustCompile(`via (\S+) on`)

// birdNextHops returns the sorted next hops of BIRD's routes to prefix and the full output.
func birdNextHops(b *routers.BIRD, prefix string) ([]string, string, error) {
	out, err := b.Birdc("show route " + prefix + " all")
	if strings.Contains(out, "Network not found") {
		return nil, out, nil
	}
	if err != nil {
		return nil, out, err
	}
	var nhs []string
	for _, m := range birdVia.FindAllStringSubmatch(out, -1) {
		nhs = append(nhs, m[1])
	}
	slices.Sort(nhs)
	return slices.Compact(nhs), out, nil
}

// BIRD over IPv6 sessions: the Service's /32 and /128 arrive from both nodes (IPv4 prefixes
// with the nodes' IPv4 next hops over the IPv6 session), with communities and large
// communities, and the kernel gets a multipath route; deleting the Service withdraws them;
// under ETP Local the next hops follow the endpoints; SIGTERM withdraws a node at once.
func TestBIRDIPv6Sessions(t *testing.T) {
	l := newLab(t, 2)
	bird := routers.StartBIRD(t, l.router, birdConfig(l.nodes))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bird"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr6, PeerASN: routerASN, LocalASN: clusterASN,
	}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}, Spec: v1alpha1.BGPAdvertisementSpec{
		Communities:      []string{"64512:100"},
		LargeCommunities: []string{"64512:7:8"},
	}})
	l.startAll()
	svc := l.service("web", false, "198.51.100.10", "2001:db8:ff::10")

	for prefix, want := range map[string][]string{"198.51.100.10/32": v4s(l.nodes), "2001:db8:ff::10/128": v6s(l.nodes)} {
		kit.Eventually(t, 30*time.Second, prefix+" from both nodes in BIRD", func(context.Context) error {
			got, out, err := birdNextHops(bird, prefix)
			if err != nil {
				return err
			}
			if err := wantSet(got, want); err != nil {
				return fmt.Errorf("%v\n%s", err, out)
			}
			if !strings.Contains(out, "(64512,100)") || !strings.Contains(out, "(64512, 7, 8)") {
				return fmt.Errorf("communities missing:\n%s", out)
			}
			return nil
		})
		kit.Eventually(t, 20*time.Second, prefix+" multipath in the kernel", func(context.Context) error {
			got, err := fib(l.router, prefix)
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
	}
	for _, n := range l.nodes {
		kit.Eventually(t, 10*time.Second, "status of "+n.name, func(context.Context) error {
			if e, _ := l.sessionState("bird", n.name); e.State != "Established" || e.PrefixesSent != 2 {
				return fmt.Errorf("%+v, want Established with 2 prefixes", e)
			}
			return nil
		})
	}

	if err := l.c.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 20*time.Second, "withdrawn after Service delete", func(context.Context) error {
		for _, p := range []string{"198.51.100.10/32", "2001:db8:ff::10/128"} {
			if got, _, err := birdNextHops(bird, p); err != nil || len(got) > 0 {
				return fmt.Errorf("%s in BIRD: %v %v", p, got, err)
			}
			if got, err := fib(l.router, p); err != nil || len(got) > 0 {
				return fmt.Errorf("%s in the kernel: %v %v", p, got, err)
			}
		}
		return nil
	})

	l.service("local", true, "198.51.100.20", "2001:db8:ff::20")
	l.endpoints("local", "node2")
	for prefix, want := range map[string][]string{"198.51.100.20/32": {l.nodes[1].v4}, "2001:db8:ff::20/128": {l.nodes[1].v6}} {
		kit.Eventually(t, 20*time.Second, prefix+" only via the node with an endpoint", func(context.Context) error {
			got, err := fib(l.router, prefix)
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
	}
	l.endpoints("local", "node1", "node2")
	kit.Eventually(t, 20*time.Second, "both nodes after scaling up", func(context.Context) error {
		got, err := fib(l.router, "2001:db8:ff::20/128")
		if err != nil {
			return err
		}
		return wantSet(got, v6s(l.nodes))
	})
	l.nodes[1].speaker.Signal(syscall.SIGTERM)
	kit.Eventually(t, 15*time.Second, "node2 gone after SIGTERM, long before the 90s hold time", func(context.Context) error {
		got, err := fib(l.router, "2001:db8:ff::20/128")
		if err != nil {
			return err
		}
		return wantSet(got, []string{l.nodes[0].v6})
	})
}
