package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// The demo's layer 2 Service answers the client on the LAN, from one of the demo's Pods, and
// the client's kernel learnt the address from the node the ServiceAnnouncement names.
func TestL2ServiceReachableFromLAN(t *testing.T) {
	_, ip := demoService(t, "echo-l2")
	var a answer
	kit.Eventually(t, converge, "a request from the LAN client", func(context.Context) (err error) {
		a, err = request(theLab.ClientL2(), addr80(ip))
		return err
	})
	pods, err := readyEchoPods()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pods, a.Pod) {
		t.Fatalf("answer from %q, not one of the demo's Pods %v", a.Pod, pods)
	}

	// The address may still be moving back to a node restarted by another test: ask until the
	// report and the wire agree.
	kit.Eventually(t, converge, "ARP answered by the node the ServiceAnnouncement names", func(context.Context) error {
		owner, err := announcedBy("echo-l2", ip)
		if err != nil {
			return err
		}
		if len(owner) != 1 {
			return fmt.Errorf("announced by %v", owner)
		}
		n, ok := theLab.NodeNamed(owner[0])
		if !ok {
			return fmt.Errorf("announced by %q, not a lab node", owner[0])
		}
		mac, err := arpOwner(ip)
		if err != nil {
			return err
		}
		if want := nodeMAC(t, n); mac != want {
			return fmt.Errorf("ARP for %s answered by %s, want %s's %s", ip, mac, n.Name, want)
		}
		return nil
	})
}

// The demo's BGP Service: the router learnt a /32 from every node (ETP Cluster, ECMP), it is
// in FRR's RIB with three paths and in the router's kernel FIB with three next hops, and the
// client behind the router reaches a Pod through it.
func TestBGPServiceReachableFromBehindRouter(t *testing.T) {
	_, ip := demoService(t, "echo-bgp")
	kit.Eventually(t, converge, "the router's FIB routes "+ip+" via every node", func(context.Context) error {
		hops, err := routerHops(ip)
		if err == nil && !slices.Equal(hops, allNodeNames()) {
			err = fmt.Errorf("next hops %v", hops)
		}
		return err
	})
	out, err := theLab.Vtysh("show bgp ipv4 unicast " + ip + "/32 json")
	if err != nil {
		t.Fatal(err)
	}
	var rib struct {
		Paths []struct {
			Valid    bool `json:"valid"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &rib); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var via []string
	for _, p := range rib.Paths {
		if p.Valid && len(p.Nexthops) > 0 {
			via = append(via, p.Nexthops[0].IP)
		}
	}
	slices.Sort(via)
	if want := []string{"192.0.2.11", "192.0.2.12", "192.0.2.13"}; !slices.Equal(via, want) {
		t.Errorf("FRR's RIB has paths for %s via %v, want %v:\n%s", ip, via, want, out)
	}
	kernel, err := inNS(theLab.Router(), "ip", "route", "show", ip)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(kernel, "nexthop via") != 3 {
		t.Errorf("the router's kernel route to %s has not 3 next hops:\n%s", ip, kernel)
	}

	var a answer
	kit.Eventually(t, converge, "a request from behind the router", func(context.Context) (err error) {
		a, err = request(theLab.ClientBGP(), addr80(ip))
		return err
	})
	pods, err := readyEchoPods()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pods, a.Pod) {
		t.Fatalf("answer from %q, not one of the demo's Pods %v", a.Pod, pods)
	}

	// What an operator sees: the controller's summary of the speakers' sessions.
	kit.Eventually(t, converge, "kubectl get bgppeers -o wide shows every session established", func(context.Context) error {
		out, err := kubectl("get", "bgppeers", "router", "-o", "wide", "--no-headers")
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) < 10 || f[4] != "3/3" || f[5] != "True" || f[8] != "True" {
			return fmt.Errorf("want SESSIONS 3/3, ESTABLISHED True, ACCEPTED True: %q", out)
		}
		return nil
	})
}

// externalTrafficPolicy: Local keeps the client's address, by layer 2 and by BGP; the demo's
// Cluster Services, for contrast, show a node's address instead.
func TestETPLocalShowsClientAddress(t *testing.T) {
	local := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	for _, c := range []struct {
		pool, from, client, cluster string
	}{
		{"lab-l2", theLab.ClientL2(), "192.0.2.100", "echo-l2"},
		{"lab-bgp", theLab.ClientBGP(), "10.255.0.2", "echo-bgp"},
	} {
		t.Run(c.pool, func(t *testing.T) {
			s := createService(t, echoService("local-"+strings.TrimPrefix(c.pool, "lab-"), c.pool, local))
			ip := s.Status.LoadBalancer.Ingress[0].IP
			kit.Eventually(t, converge, "requests through "+ip+" show the client's address", func(context.Context) error {
				for i := 0; i < 6; i++ {
					a, err := request(c.from, addr80(ip))
					if err != nil {
						return err
					}
					if a.Client.Addr() != netip.MustParseAddr(c.client) {
						return fmt.Errorf("%s saw client %s, want %s", a.Pod, a.Client, c.client)
					}
				}
				return nil
			})
			_, clusterIP := demoService(t, c.cluster)
			a, err := request(c.from, addr80(clusterIP))
			if err != nil {
				t.Fatal(err)
			}
			if a.Client.Addr() == netip.MustParseAddr(c.client) {
				t.Errorf("the Cluster Service %s kept the client's address (%s): not masqueraded", c.cluster, a.Client)
			}
		})
	}
}

// A dual-stack Service answers over IPv6: by layer 2 (NDP) from the LAN client and by BGP
// (an IPv6 /128 learnt over MP-BGP, routed to the nodes' IPv6 addresses) from behind the
// router, from Pods' IPv6 addresses.
func TestDualStackAnswersOverIPv6(t *testing.T) {
	dual := func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	for _, c := range []struct{ pool, from, prefix string }{
		{"lab-l2", theLab.ClientL2(), "2001:db8:ff::/64"},
		{"lab-bgp", theLab.ClientBGP(), "2001:db8:fe::/64"},
	} {
		t.Run(c.pool, func(t *testing.T) {
			s := createService(t, echoService("dual-"+strings.TrimPrefix(c.pool, "lab-"), c.pool, dual))
			ip6 := ingress(t, s, true)
			if !netip.MustParsePrefix(c.prefix).Contains(netip.MustParseAddr(ip6)) {
				t.Fatalf("IPv6 address %s not from %s", ip6, c.prefix)
			}
			if c.pool == "lab-bgp" {
				kit.Eventually(t, converge, "the router routes "+ip6+" via every node", func(context.Context) error {
					hops, err := routerHops(ip6)
					if err == nil && !slices.Equal(hops, allNodeNames()) {
						err = fmt.Errorf("next hops %v", hops)
					}
					return err
				})
			}
			pods, err := readyEchoPods()
			if err != nil {
				t.Fatal(err)
			}
			var a answer
			kit.Eventually(t, converge, "a request to ["+ip6+"]:80", func(context.Context) (err error) {
				a, err = request(c.from, addr80(ip6))
				return err
			})
			if !slices.Contains(pods, a.Pod) {
				t.Errorf("answer from %q, not one of the demo's Pods %v", a.Pod, pods)
			}
			if !a.Client.Addr().Is6() {
				t.Errorf("the Pod saw an IPv4 client (%s): the request did not travel over IPv6", a.Client)
			}
			// The IPv4 route may reach the router after the IPv6 one.
			ip4 := ingress(t, s, false)
			kit.Eventually(t, converge, "a request to the Service's IPv4 address "+ip4, func(context.Context) error {
				_, err := request(c.from, addr80(ip4))
				return err
			})
		})
	}
}
