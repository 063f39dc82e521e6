package nftsync

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/fairlead-lb/fairlead/speaker/proxy/model"
	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
	"github.com/fairlead-lb/fairlead/test/netns"
)

func port(name string, eps ...string) *model.ServicePort {
	sp := &model.ServicePort{
		Namespace: "default", Name: name, PortName: "http", Protocol: corev1.ProtocolTCP, Family: model.IPv4,
		Port: 80, NodePort: 30080, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		LoadBalancerIPs: []netip.Addr{netip.MustParseAddr("198.51.100.10")},
		SourceRanges:    []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		AffinityTimeout: time.Minute,
	}
	for _, e := range eps {
		sp.ClusterEndpoints = append(sp.ClusterEndpoints, model.Endpoint{Addr: netip.MustParseAddr(e), Port: 8080})
	}
	return sp
}

func port6(name string, eps ...string) *model.ServicePort {
	sp := &model.ServicePort{
		Namespace: "default", Name: name, Protocol: corev1.ProtocolUDP, Family: model.IPv6,
		Port: 53, NodePort: 30053, ClusterIPs: []netip.Addr{netip.MustParseAddr("fd00:96::10")},
		ExternalIPs: []netip.Addr{netip.MustParseAddr("2001:db8::10")}, ExternalLocal: true,
	}
	for _, e := range eps {
		ep := model.Endpoint{Addr: netip.MustParseAddr(e), Port: 5353, Local: true}
		sp.ClusterEndpoints = append(sp.ClusterEndpoints, ep)
		sp.LocalEndpoints = append(sp.LocalEndpoints, ep)
	}
	return sp
}

// inNS runs the syncer against a real kernel, inside a namespace of its own.
func inNS(t testing.TB) (run func(func(s *Syncer) error), list func() string) {
	ns := netns.New(t, "nftsync")
	var s *Syncer
	run = func(fn func(*Syncer) error) {
		t.Helper()
		if err := ns.Do(func() error {
			if s == nil {
				nft, err := knftables.New(knftables.InetFamily, "fairlead")
				if err != nil {
					return err
				}
				s = New(nft, "fairlead", rules.Config{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
			}
			return fn(s)
		}); err != nil {
			t.Fatal(err)
		}
	}
	list = func() string { return ns.MustRun("nft", "list", "table", "inet", "fairlead") }
	return run, list
}

func render(sps ...*model.ServicePort) map[string]*rules.Service {
	out := map[string]*rules.Service{}
	for _, sp := range sps {
		out[sp.Key()] = rules.Render(sp, rules.Config{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	}
	return out
}

func TestKernelAcceptsFullAndPartialSyncs(t *testing.T) {
	run, list := inNS(t)
	ctx := context.Background()
	sctp := port("sig", "10.244.1.5")
	sctp.Protocol, sctp.ClusterIPs, sctp.LoadBalancerIPs = corev1.ProtocolSCTP, []netip.Addr{netip.MustParseAddr("10.96.0.11")}, nil
	dns := port6("dns", "fd00:244::2")
	dns.AffinityTimeout = time.Hour
	run(func(s *Syncer) error {
		_, err := s.Full(ctx, render(port("web", "10.244.1.2", "10.244.2.2"), dns, port("empty"), sctp))
		return err
	})
	got := list()
	for _, want := range []string{
		"10.96.0.10 . tcp . 80 : goto svc4-default/web/tcp/http",
		"198.51.100.10 . tcp . 80 : goto ext4-default/web/tcp/http",
		"tcp . 30080 : goto ext4-default/web/tcp/http",
		"numgen random mod 2 vmap { 0 : goto ep4-default/web/tcp/http__10.244.1.2/8080, 1 : goto ep4-default/web/tcp/http__10.244.2.2/8080 }",
		"dnat ip6 to [fd00:244::2]:5353",
		"10.96.0.10 . tcp . 80 : goto reject-chain", // "empty" shares web's address in this test
		"ip saddr != 192.0.2.0/24 drop",
		"set aff4-60s-default/web/tcp/http__10.244.1.2/8080",
		"update @aff6-3600s-default/dns/udp/53__fd00.244..2/5353 { ip6 saddr }",
		"10.96.0.11 . sctp . 80 : goto svc4-default/sig/sctp/http",
		"meta l4proto sctp dnat ip to 10.244.1.5:8080",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}

	// One endpoint goes away: a small transaction, and its chain and affinity set are gone.
	run(func(s *Syncer) error {
		res, err := s.Partial(ctx, render(port("web", "10.244.2.2")))
		if err == nil && res.Operations > 20 {
			t.Errorf("removing one endpoint took %d operations", res.Operations)
		}
		return err
	})
	got = list()
	if strings.Contains(got, "10.244.1.2") {
		t.Errorf("removed endpoint still programmed:\n%s", got)
	}
	if !strings.Contains(got, "goto ep4-default/web/tcp/http__10.244.2.2/8080") {
		t.Errorf("remaining endpoint not programmed:\n%s", got)
	}

	// The Service is deleted: nothing of it remains.
	run(func(s *Syncer) error {
		_, err := s.Partial(ctx, map[string]*rules.Service{port("web").Key(): nil})
		return err
	})
	if got = list(); strings.Contains(got, "default/web") {
		t.Errorf("deleted Service still programmed:\n%s", got)
	}
}

func TestFullSyncRepairsDriftAndRemovesStrangers(t *testing.T) {
	run, list := inNS(t)
	ctx := context.Background()
	desired := render(port("web", "10.244.1.2"))
	run(func(s *Syncer) error { _, err := s.Full(ctx, desired); return err })
	want := list()

	// Someone flushes our NAT chain, deletes an element and adds a chain of their own.
	run(func(*Syncer) error {
		for _, cmd := range []string{
			"flush chain inet fairlead services",
			"delete element inet fairlead service-ips-4 { 10.96.0.10 . tcp . 80 }",
			"add chain inet fairlead stranger",
		} {
			if out, err := runNft(cmd); err != nil {
				return fmt.Errorf("%s: %v: %s", cmd, err, out)
			}
		}
		return nil
	})
	run(func(s *Syncer) error { _, err := s.Full(ctx, desired); return err })
	// The same lines; objects a full sync recreates are listed in another order.
	sorted := func(s string) string { l := strings.Split(s, "\n"); slices.Sort(l); return strings.Join(l, "\n") }
	if got := list(); sorted(got) != sorted(want) {
		t.Errorf("full sync did not restore the ruleset:\nwant:\n%s\ngot:\n%s", want, got)
	}
}

func TestConflictingAddressesDoNotBlockOthers(t *testing.T) {
	run, list := inNS(t)
	ctx := context.Background()
	a, b := port("a", "10.244.1.2"), port("b", "10.244.1.3")
	b.LoadBalancerIPs = nil // b claims a's ClusterIP and NodePort (as bad externalIPs could)
	run(func(s *Syncer) error {
		res, err := s.Full(ctx, render(a, b))
		if err == nil && len(res.Conflicts) == 0 {
			t.Error("conflicts not reported")
		}
		return err
	})
	got := list()
	if !strings.Contains(got, "10.96.0.10 . tcp . 80 : goto svc4-default/a/tcp/http") {
		t.Errorf("first owner lost its address:\n%s", got)
	}
	// A later change to b alone still succeeds.
	b2 := port("b", "10.244.1.4")
	b2.LoadBalancerIPs = nil
	run(func(s *Syncer) error { _, err := s.Partial(ctx, render(b2)); return err })
}

// A table left by someone else with an incompatible base chain is replaced, atomically.
func TestFullSyncReplacesAnIncompatibleTable(t *testing.T) {
	run, list := inNS(t)
	run(func(*Syncer) error {
		for _, cmd := range []string{
			"add table inet fairlead",
			"add chain inet fairlead filter-prerouting { type filter hook prerouting priority 0 ; }",
		} {
			if out, err := runNft(cmd); err != nil {
				return fmt.Errorf("%s: %v: %s", cmd, err, out)
			}
		}
		return nil
	})
	run(func(s *Syncer) error {
		_, err := s.Full(context.Background(), render(port("web", "10.244.1.2")))
		return err
	})
	got := list()
	if !strings.Contains(got, "goto svc4-default/web/tcp/http") || !strings.Contains(got, "priority dstnat - 10") {
		t.Errorf("table not replaced:\n%s", got)
	}
}

// On the shared path a conflict leaves out the loser's whole group (its spread elements
// too), and an element two Services want stays until neither does.
func TestSharedElementsAndGroups(t *testing.T) {
	run, list := inNS(t)
	ctx := context.Background()
	plain := func(name string, eps ...string) *model.ServicePort {
		sp := port(name, eps...)
		sp.AffinityTimeout, sp.SourceRanges, sp.LoadBalancerIPs = 0, nil, nil
		for i := range sp.ClusterEndpoints {
			sp.ClusterEndpoints[i].Local = true
		}
		return sp
	}
	a, b := plain("a", "10.244.1.2"), plain("b", "10.244.1.2", "10.244.1.3")
	run(func(s *Syncer) error {
		res, err := s.Full(ctx, render(a, b))
		if err == nil && len(res.Conflicts) != 2 {
			t.Errorf("want one conflict for the ClusterIP and one for the NodePort, got %v", res.Conflicts)
		}
		return err
	})
	got := list()
	for _, want := range []string{"10.96.0.10 . tcp . 80 : goto spread4-1", "10.96.0.10 . tcp . 80 . 0 : 10.244.1.2 . 8080", "10.244.1.2 . 10.244.1.2"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "10.96.0.10 . tcp . 80 . 1") {
		t.Errorf("the loser's spread elements leaked:\n%s", got)
	}
	run(func(s *Syncer) error { _, err := s.Partial(ctx, map[string]*rules.Service{a.Key(): nil}); return err })
	if got := list(); !strings.Contains(got, "10.244.1.2 . 10.244.1.2") {
		t.Errorf("hairpin element removed while b still wants it:\n%s", got)
	}
	run(func(s *Syncer) error { _, err := s.Partial(ctx, map[string]*rules.Service{b.Key(): nil}); return err })
	if got := list(); strings.Contains(got, "10.244.1.2 . 10.244.1.2") || strings.Contains(got, "10.96.0.10") {
		t.Errorf("elements left after both Services went:\n%s", got)
	}
	run(func(s *Syncer) error {
		if r, e := s.Counts(); r != 0 || e != 0 {
			t.Errorf("counts after removing everything: %d rules, %d elements", r, e)
		}
		return nil
	})
}

// A restarted proxy (a new Syncer) updates the table it finds in place: replacing it would
// lose affinity entries and, for an instant, the hooks.
func TestRestartUpdatesInPlace(t *testing.T) {
	run, _ := inNS(t)
	ctx := context.Background()
	plain := port("a", "10.244.1.2")
	plain.AffinityTimeout = 0
	want := render(port("b", "10.244.1.3"), plain, port6("c", "fd00:244::2"))
	run(func(s *Syncer) error { _, err := s.Full(ctx, want); return err })
	run(func(s *Syncer) error {
		fresh := New(s.nft, "fairlead", s.cfg)
		res, err := fresh.Full(ctx, want)
		if err == nil && res.Replaced != nil {
			t.Errorf("the table was replaced: %v", res.Replaced)
		}
		return err
	})
}
