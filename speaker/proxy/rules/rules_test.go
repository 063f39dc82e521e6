package rules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/fairlead-lb/fairlead/speaker/proxy/model"
)

func ep(s string, local bool) model.Endpoint {
	return model.Endpoint{Addr: netip.MustParseAddr(s), Port: 8080, Local: local}
}

func base() *model.ServicePort {
	return &model.ServicePort{
		Namespace: "ns", Name: "web", PortName: "http", Protocol: corev1.ProtocolTCP, Family: model.IPv4, Port: 80,
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
	}
}

func chains(s *Service) map[string][]string {
	out := map[string][]string{}
	for _, c := range s.Chains {
		out[c.Name] = c.Rules
	}
	return out
}

func elements(s *Service) []string {
	var out []string
	for _, e := range s.Elements {
		out = append(out, e.ID()+" : "+e.Value)
	}
	slices.Sort(out)
	return out
}

var cidrs = Config{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}

func TestClusterIPSpreadsEvenly(t *testing.T) {
	sp := base()
	sp.ClusterEndpoints = []model.Endpoint{ep("10.244.1.1", true), ep("10.244.2.1", false), ep("10.244.3.1", false)}
	r := Render(sp, cidrs)
	c := chains(r)
	want := map[string][]string{
		"svc4-ns/web/tcp/http": {"ip saddr != @cluster-cidrs-4 jump mark-for-masquerade", "goto clu4-ns/web/tcp/http"},
		"clu4-ns/web/tcp/http": {"numgen random mod 3 vmap { 0 : goto ep4-ns/web/tcp/http__10.244.1.1/8080, " +
			"1 : goto ep4-ns/web/tcp/http__10.244.2.1/8080, 2 : goto ep4-ns/web/tcp/http__10.244.3.1/8080 }"},
		"ep4-ns/web/tcp/http__10.244.2.1/8080": {"ip saddr 10.244.2.1 jump mark-for-masquerade", "meta l4proto tcp dnat ip to 10.244.2.1:8080"},
	}
	for name, rules := range want {
		if !slices.Equal(c[name], rules) {
			t.Errorf("chain %s:\n got %q\nwant %q", name, c[name], rules)
		}
	}
	if len(r.Chains) != 5 {
		t.Errorf("want svc, clu and 3 endpoint chains, got %v", c)
	}
	if got := elements(r); !slices.Equal(got, []string{"service-ips-4 10.96.0.10 . tcp . 80 : goto svc4-ns/web/tcp/http"}) {
		t.Errorf("elements %v", got)
	}
}

func TestNoEndpointsRejectsEverywhere(t *testing.T) {
	sp := base()
	sp.NodePort = 30080
	sp.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("198.51.100.1")}
	sp.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	r := Render(sp, Config{})
	want := []string{
		"firewall-ips-4 198.51.100.1 . tcp . 80 : goto fw4-ns/web/tcp/http",
		"no-endpoint-nodeports-4 tcp . 30080 : goto reject-chain",
		"no-endpoint-services-4 10.96.0.10 . tcp . 80 : goto reject-chain",
		"no-endpoint-services-4 198.51.100.1 . tcp . 80 : goto reject-chain",
	}
	if got := elements(r); !slices.Equal(got, want) {
		t.Errorf("elements\n got %q\nwant %q", got, want)
	}
	if c := chains(r); len(c) != 1 || c["fw4-ns/web/tcp/http"][0] != "ip saddr != { 192.0.2.0/24 } drop" {
		t.Errorf("want only the firewall chain, got %v", c)
	}
}

func TestExternalPolicies(t *testing.T) {
	mk := func(local bool, cfg Config) map[string][]string {
		sp := base()
		sp.Family = model.IPv6
		sp.ClusterIPs = []netip.Addr{netip.MustParseAddr("fd00:96::10")}
		sp.NodePort = 30080
		sp.ExternalIPs = []netip.Addr{netip.MustParseAddr("2001:db8::5")}
		sp.ExternalLocal = local
		sp.ClusterEndpoints = []model.Endpoint{ep("fd00:244::1", false), ep("fd00:244::2", false)}
		return chains(Render(sp, cfg))
	}
	c := mk(false, Config{})
	if got := c["ext6-ns/web/tcp/http"]; !slices.Equal(got, []string{"jump mark-for-masquerade", "goto clu6-ns/web/tcp/http"}) {
		t.Errorf("Cluster policy: %q", got)
	}
	if got := c["ep6-ns/web/tcp/http__fd00.244..2/8080"]; !slices.Equal(got, []string{
		"ip6 saddr fd00:244::2 jump mark-for-masquerade", "meta l4proto tcp dnat ip6 to [fd00:244::2]:8080"}) {
		t.Errorf("IPv6 endpoint chain: %q", got)
	}
	if got := c["svc6-ns/web/tcp/http"]; !slices.Equal(got, []string{"goto clu6-ns/web/tcp/http"}) {
		t.Errorf("without cluster CIDRs nothing is masqueraded for ClusterIPs: %q", got)
	}

	// Local, and no local endpoint: external traffic is dropped, the node's own goes anywhere.
	c = mk(true, Config{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:244::/32")}})
	if got := c["ext6-ns/web/tcp/http"]; !slices.Equal(got, []string{
		"fib saddr type local jump mark-for-masquerade", "fib saddr type local goto clu6-ns/web/tcp/http",
		"ip6 saddr @cluster-cidrs-6 goto clu6-ns/web/tcp/http", "goto loc6-ns/web/tcp/http"}) {
		t.Errorf("Local policy: %q", got)
	}
	if got := c["loc6-ns/web/tcp/http"]; !slices.Equal(got, []string{"drop"}) {
		t.Errorf("local chain without local endpoints: %q", got)
	}
}

func TestInternalLocalAndAffinity(t *testing.T) {
	sp := base()
	sp.Protocol = corev1.ProtocolSCTP
	sp.InternalLocal = true
	sp.AffinityTimeout = 3 * time.Minute
	sp.ClusterEndpoints = []model.Endpoint{ep("10.244.1.1", true), ep("10.244.2.1", false)}
	sp.LocalEndpoints = []model.Endpoint{ep("10.244.1.1", true)}
	r := Render(sp, Config{})
	c := chains(r)
	if got := c["svc4-ns/web/sctp/http"]; !slices.Equal(got, []string{"goto loc4-ns/web/sctp/http"}) {
		t.Errorf("internal Local: %q", got)
	}
	aff := "aff4-180s-ns/web/sctp/http__10.244.1.1/8080"
	if got := c["loc4-ns/web/sctp/http"]; !slices.Equal(got, []string{
		"ip saddr @" + aff + " goto ep4-ns/web/sctp/http__10.244.1.1/8080", "goto ep4-ns/web/sctp/http__10.244.1.1/8080"}) {
		t.Errorf("local chain with affinity: %q", got)
	}
	if got := c["ep4-ns/web/sctp/http__10.244.1.1/8080"]; !slices.Equal(got, []string{
		"ip saddr 10.244.1.1 jump mark-for-masquerade", "update @" + aff + " { ip saddr }", "meta l4proto sctp dnat ip to 10.244.1.1:8080"}) {
		t.Errorf("endpoint chain with affinity: %q", got)
	}
	if len(r.Sets) != 2 || r.Sets[0].Timeout != 3*time.Minute || r.Sets[0].Type != "ipv4_addr" {
		t.Errorf("affinity sets %+v", r.Sets)
	}
	if got := elements(r); !strings.Contains(strings.Join(got, "\n"), "10.96.0.10 . sctp . 80") {
		t.Errorf("elements %v", got)
	}
}

func TestNodePortAddressesRestrictTheMatch(t *testing.T) {
	for cfg, want := range map[*Config]string{
		{}: "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports-4",
		{NodePortCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}: "fib daddr type local ip daddr @nodeport-cidrs-4 meta l4proto . th dport vmap @service-nodeports-4",
	} {
		_, rules := Base(*cfg)
		found := false
		for _, r := range rules {
			found = found || (r.Chain == ChainServices && r.Rule == want)
		}
		if !found {
			t.Errorf("services chain lacks %q", want)
		}
		elems := BaseElements(*cfg)
		if len(elems) != len(cfg.NodePortCIDRs) {
			t.Errorf("base elements %v", elems)
		}
	}
}
