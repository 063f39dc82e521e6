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
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// announcements returns the Service's ServiceAnnouncement entries as sorted "ip node protocol"
// strings, and the entries themselves.
func (l *lab) announcements(name string) ([]string, []v1alpha1.Announcement, error) {
	var sa v1alpha1.ServiceAnnouncement
	if err := l.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &sa); err != nil {
		return nil, nil, err
	}
	var out []string
	for _, a := range sa.Status.Announcements {
		out = append(out, a.IP+" "+a.Node+" "+a.Protocol)
	}
	slices.Sort(out)
	return out, sa.Status.Announcements, nil
}

func bgpEntries(ips []string, nodes ...string) []string {
	var out []string
	for _, ip := range ips {
		for _, n := range nodes {
			out = append(out, ip+" "+n+" BGP")
		}
	}
	return out
}

// Two speakers peering with FRR list themselves (protocol BGP) in the ServiceAnnouncement of
// a Service they advertise; a node the BGPAdvertisement stops selecting removes its entries
// as its paths are withdrawn; a speaker stopped by SIGTERM removes its own; and a layer 2
// entry written by another writer survives all of it.
func TestFRRServiceAnnouncements(t *testing.T) {
	l := newLab(t, 2)
	frr := routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN,
		HoldTime: &metav1.Duration{Duration: 90 * time.Second},
	}})
	adv := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}}
	l.create(adv)
	l.startAll()
	ips := []string{"198.51.100.10", "2001:db8:ff::10"}
	l.service("web", false, ips...)

	check := func(what string, want []string) {
		t.Helper()
		kit.Eventually(t, 30*time.Second, what, func(context.Context) error {
			got, _, err := l.announcements("web")
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
	}
	check("both nodes listed with BGP", bgpEntries(ips, "node1", "node2"))
	kit.Eventually(t, 10*time.Second, "both next hops at the router", func(context.Context) error {
		got, _, err := frrNextHops(frr, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, v4s(l.nodes))
	})
	_, entries, _ := l.announcements("web")
	since := map[string]*metav1.Time{}
	for _, a := range entries {
		if a.Since == nil {
			t.Fatalf("entry without since: %+v", a)
		}
		since[a.IP+" "+a.Node] = a.Since
	}

	// Another writer (the layer 2 reporter) lists an address of its own in the same object.
	l2 := v1alpha1.Announcement{IP: "198.51.100.10", Node: "node9", Protocol: v1alpha1.ProtocolARP, Interfaces: []string{"eth0"}, Since: &metav1.Time{Time: time.Now().Truncate(time.Second)}}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var sa v1alpha1.ServiceAnnouncement
		if err := l.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web"}, &sa); err != nil {
			return err
		}
		sa.Status.Announcements = append(sa.Status.Announcements, l2)
		return l.c.Update(ctx, &sa)
	}); err != nil {
		t.Fatal(err)
	}
	l2Entry := "198.51.100.10 node9 ARP"

	// node2 is no longer selected: its paths are withdrawn and its entries go; node1's stay
	// as they were (same since), and so does the layer 2 entry.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := l.c.Get(ctx, client.ObjectKeyFromObject(adv), adv); err != nil {
			return err
		}
		adv.Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"kubernetes.io/hostname": "node1"}}}
		return l.c.Update(ctx, adv)
	}); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 20*time.Second, "node2's path withdrawn", func(context.Context) error {
		got, _, err := frrNextHops(frr, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, v4s(l.nodes[:1]))
	})
	check("node2's entries removed, the others kept", append(bgpEntries(ips, "node1"), l2Entry))
	_, entries, _ = l.announcements("web")
	for _, a := range entries {
		if a.Node == "node1" && !a.Since.Equal(since[a.IP+" node1"]) {
			t.Errorf("node1's entry for %s was rewritten: since %v, was %v", a.IP, a.Since, since[a.IP+" node1"])
		}
	}

	// Selected again: node2 comes back.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := l.c.Get(ctx, client.ObjectKeyFromObject(adv), adv); err != nil {
			return err
		}
		adv.Spec.NodeSelectors = nil
		return l.c.Update(ctx, adv)
	}); err != nil {
		t.Fatal(err)
	}
	check("node2 listed again", append(bgpEntries(ips, "node1", "node2"), l2Entry))

	// SIGTERM: the speaker removes its own entries on its way out.
	l.nodes[0].speaker.Signal(syscall.SIGTERM)
	if ok, err := l.nodes[0].speaker.Wait(15 * time.Second); !ok || err != nil {
		t.Fatalf("speaker did not exit cleanly after SIGTERM: exited=%v err=%v", ok, err)
	}
	got, _, err := l.announcements("web")
	if err != nil {
		t.Fatal(err)
	}
	// Removed before the process exited, not by anyone after it.
	if err := wantSet(got, append(bgpEntries(ips, "node2"), l2Entry)); err != nil {
		t.Fatalf("after node1's SIGTERM: %v", err)
	}

	// A second Service: only the running speaker lists it.
	l.service("api", false, "198.51.100.20")
	kit.Eventually(t, 30*time.Second, "the second Service listed by node2 alone", func(context.Context) error {
		got, _, err := l.announcements("api")
		if err != nil {
			return err
		}
		if len(got) != 1 || !strings.HasPrefix(got[0], "198.51.100.20 node2 BGP") {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
}

// l2Split separates the layer 2 entries ("ip node protocol") from the BGP ones.
func l2Split(entries []string) (bgp, l2 []string) {
	for _, e := range entries {
		if strings.HasSuffix(e, " BGP") {
			bgp = append(bgp, e)
		} else {
			l2 = append(l2, e)
		}
	}
	return bgp, l2
}

// Speakers running layer 2 and BGP at once write one ServiceAnnouncement concurrently: it
// ends up with every node's BGP entries and the layer 2 owner's ARP and NDP entries, and when
// a speaker stops, each writer removes only its own entries (and the layer 2 address moves).
func TestFRRServiceAnnouncementsWithL2(t *testing.T) {
	l := newLab(t, 2)
	frr := routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	l.pool()
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.create(&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"},
		Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{"public"}}})
	for _, n := range l.nodes {
		n.extraArg = []string{"--l2"}
	}
	l.startAll()
	ips := []string{"198.51.100.10", "2001:db8:ff::10"}
	l.service("web", false, ips...)

	converged := func(what string, nodes ...string) {
		t.Helper()
		kit.Eventually(t, 40*time.Second, what, func(context.Context) error {
			got, _, err := l.announcements("web")
			if err != nil {
				return err
			}
			bgp, l2 := l2Split(got)
			if err := wantSet(bgp, bgpEntries(ips, nodes...)); err != nil {
				return fmt.Errorf("BGP entries: %v", err)
			}
			// One layer 2 owner per address, one of the running nodes.
			if len(l2) != 2 || !strings.HasPrefix(l2[0], ips[0]+" ") || !strings.HasSuffix(l2[0], " ARP") ||
				!strings.HasPrefix(l2[1], ips[1]+" ") || !strings.HasSuffix(l2[1], " NDP") {
				return fmt.Errorf("layer 2 entries %v", l2)
			}
			for _, e := range l2 {
				if !slices.Contains(nodes, strings.Fields(e)[1]) {
					return fmt.Errorf("layer 2 entry %q of a node not running", e)
				}
			}
			return nil
		})
	}
	converged("BGP entries of both nodes and the layer 2 owner's entries", "node1", "node2")
	kit.Eventually(t, 10*time.Second, "both next hops at the router", func(context.Context) error {
		got, _, err := frrNextHops(frr, "198.51.100.10/32")
		if err != nil {
			return err
		}
		return wantSet(got, v4s(l.nodes))
	})

	l.nodes[0].speaker.Signal(syscall.SIGTERM)
	if ok, err := l.nodes[0].speaker.Wait(15 * time.Second); !ok || err != nil {
		t.Fatalf("speaker did not exit cleanly after SIGTERM: exited=%v err=%v", ok, err)
	}
	converged("node2 alone, by BGP and layer 2", "node2")
}
