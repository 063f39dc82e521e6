package bgp_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// RFC 6996's private 4-byte ASNs, as data centres number their racks: above 2^31, so a
// schema or a code path that treats them as int32 breaks.
const (
	nodeASN4   = 4200000000
	routerASN4 = 4200000001
)

// eBGP between a node in AS 4200000000 and FRR in AS 4200000001: the session comes up, FRR
// sees the 4-byte AS on both ends and the Service's route arrives with AS_PATH 4200000000.
// A second BGPPeer whose nodeSelector no node can evaluate gets a status entry saying so,
// and leaves the first session alone.
func TestFRRFourByteASN(t *testing.T) {
	l := newLab(t, 1)
	n := l.nodes[0]
	frr := routers.StartFRR(t, l.router, fmt.Sprintf(`router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor %s remote-as %d
 neighbor %s timers connect 1
 address-family ipv4 unicast
  neighbor %s activate
 exit-address-family
`, routerASN4, routerAddr4, n.v4, nodeASN4, n.v4, n.v4))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr4"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN4, LocalASN: nodeASN4}})
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bad-selector"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "192.0.2.99", PeerASN: routerASN4, LocalASN: nodeASN4,
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack id": "r1"}}}}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	l.service("web", false, "198.51.100.10")

	kit.Eventually(t, 30*time.Second, "FRR's neighbor in AS 4200000000", func(context.Context) error {
		var m map[string]struct {
			State    string `json:"bgpState"`
			RemoteAs uint32 `json:"remoteAs"`
			LocalAs  uint32 `json:"localAs"`
		}
		if err := frr.JSON("show bgp neighbors "+n.v4+" json", &m); err != nil {
			return err
		}
		if nb := m[n.v4]; nb.State != "Established" || nb.RemoteAs != nodeASN4 || nb.LocalAs != routerASN4 {
			return fmt.Errorf("neighbor %+v, want Established, remote AS %d, local AS %d", nb, nodeASN4, routerASN4)
		}
		return nil
	})
	kit.Eventually(t, 20*time.Second, "the route with AS_PATH 4200000000", func(context.Context) error {
		var r struct {
			Paths []struct {
				Valid  bool `json:"valid"`
				ASPath struct {
					String string `json:"string"`
				} `json:"aspath"`
			} `json:"paths"`
		}
		if err := frr.JSON("show bgp ipv4 unicast 198.51.100.10/32 json", &r); err != nil {
			return err
		}
		if len(r.Paths) != 1 || !r.Paths[0].Valid || r.Paths[0].ASPath.String != "4200000000" {
			return fmt.Errorf("paths %+v, want one valid path with AS_PATH 4200000000", r.Paths)
		}
		return nil
	})
	kit.Eventually(t, 20*time.Second, "the route in FRR's kernel", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, []string{n.v4})
	})
	kit.Eventually(t, 10*time.Second, "status of both peers", func(context.Context) error {
		if e, _ := l.sessionState("frr4", n.name); e.State != "Established" || e.PrefixesSent != 1 {
			return fmt.Errorf("frr4: %+v", e)
		}
		e, ok := l.sessionState("bad-selector", n.name)
		if !ok || e.State != "Invalid" || !strings.Contains(e.LastError, "nodeSelectors[0]") || !strings.Contains(e.LastError, "rack id") {
			return fmt.Errorf("bad-selector: %+v (present %v), want Invalid naming the selector", e, ok)
		}
		return nil
	})
}

var birdNeighborAS4 = regexp.MustCompile(`Neighbor AS:\s+4200000000\b`)

// eBGP from a node in AS 4200000000 to BIRD in AS 64500: BIRD establishes the session with
// the 4-byte AS and shows the route's AS path as 4200000000.
func TestBIRDFourByteASN(t *testing.T) {
	l := newLab(t, 1)
	n := l.nodes[0]
	bird := routers.StartBIRD(t, l.router, fmt.Sprintf(`router id %s;
protocol device {}
protocol kernel k4 { ipv4 { export all; }; }
protocol bgp n1 {
  local %s as %d;
  neighbor %s as %d;
  connect retry time 1;
  ipv4 { import all; export none; };
}
`, routerAddr4, routerAddr4, routerASN, n.v4, nodeASN4))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bird4"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: nodeASN4}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	l.service("web", false, "198.51.100.10")

	kit.Eventually(t, 30*time.Second, "BIRD's session with AS 4200000000", func(context.Context) error {
		out, err := bird.Birdc("show protocols all n1")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "Established") || !birdNeighborAS4.MatchString(out) {
			return fmt.Errorf("session not established with AS 4200000000:\n%s", out)
		}
		return nil
	})
	kit.Eventually(t, 20*time.Second, "the route with AS path 4200000000 in BIRD", func(context.Context) error {
		got, out, err := birdNextHops(bird, "198.51.100.10/32")
		if err != nil {
			return err
		}
		if err := wantSet(got, []string{n.v4}); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "BGP.as_path: 4200000000") {
			return fmt.Errorf("AS path is not 4200000000:\n%s", out)
		}
		return nil
	})
	kit.Eventually(t, 20*time.Second, "the route in BIRD's kernel", func(context.Context) error {
		got, err := fib(l.router, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, []string{n.v4})
	})
	// The speaker writes its status after the router sees the session: wait for it.
	kit.Eventually(t, 20*time.Second, "the BGPPeer status to say Established", func(context.Context) error {
		if e, _ := l.sessionState("bird4", n.name); e.State != "Established" {
			return fmt.Errorf("status %+v, want Established", e)
		}
		return nil
	})
}
