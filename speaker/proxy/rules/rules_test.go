package rules

import (
	"fmt"
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
	if len(r.Chains) != 0 {
		t.Errorf("a plain ClusterIP needs no chain of its own: %v", chains(r))
	}
	want := []string{
		"cluster-ips-4 10.96.0.10 : ", // shared by the Service's ports: other ports are rejected
		"endpoints-4 10.96.0.10 . tcp . 80 . 0 : 10.244.1.1 . 8080",
		"endpoints-4 10.96.0.10 . tcp . 80 . 1 : 10.244.2.1 . 8080",
		"endpoints-4 10.96.0.10 . tcp . 80 . 2 : 10.244.3.1 . 8080",
		"hairpin-4 10.244.1.1 . 10.244.1.1 : ", // only the local endpoint
		"masq-outside-cluster-4 10.96.0.10 . tcp . 80 : ",
		"service-ips-4 10.96.0.10 . tcp . 80 : goto spread4-3",
	}
	if got := elements(r); !slices.Equal(got, want) {
		t.Errorf("elements\n got %q\nwant %q", got, want)
	}
	for _, e := range r.Elements {
		if e.Shared != (strings.HasPrefix(e.Map, "hairpin") || strings.HasPrefix(e.Map, "cluster-ips")) {
			t.Errorf("only hairpin and cluster-ips elements are shared: %+v", e)
		}
		if !e.Shared && e.GroupID() != "service-ips-4 10.96.0.10 . tcp . 80" {
			t.Errorf("element %s is not grouped under its address: %q", e.ID(), e.GroupID())
		}
	}
	// The shared chain for three endpoints picks one of indexes 0..2.
	_, baseRules := Base(cidrs)
	found := false
	for _, br := range baseRules {
		found = found || (br.Chain == "spread4-3" && br.Rule == "dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 3 map @endpoints-4")
	}
	if !found {
		t.Error("no shared spread chain for three IPv4 endpoints")
	}
}

func TestManyEndpointsGetChainsOfTheirOwn(t *testing.T) {
	sp := base()
	for i := range MaxSpread + 1 {
		sp.ClusterEndpoints = append(sp.ClusterEndpoints, ep(fmt.Sprintf("10.244.1.%d", i+1), false))
	}
	r := Render(sp, cidrs)
	c := chains(r)
	if got := c["svc4-ns/web/tcp/http"]; !slices.Equal(got, []string{"ip saddr != @cluster-cidrs-4 jump mark-for-masquerade", "goto clu4-ns/web/tcp/http"}) {
		t.Errorf("svc chain %q", got)
	}
	if got := c["clu4-ns/web/tcp/http"]; len(got) != 1 || !strings.HasPrefix(got[0], fmt.Sprintf("numgen random mod %d vmap { 0 : goto ep4-ns/web/tcp/http__10.244.1.1/8080, ", MaxSpread+1)) {
		t.Errorf("clu chain %q", got)
	}
	if got := c["ep4-ns/web/tcp/http__10.244.1.2/8080"]; !slices.Equal(got, []string{"ip saddr 10.244.1.2 jump mark-for-masquerade", "meta l4proto tcp dnat ip to 10.244.1.2:8080"}) {
		t.Errorf("endpoint chain %q", got)
	}
	if got := elements(r); !slices.Equal(got, []string{"cluster-ips-4 10.96.0.10 : ", "service-ips-4 10.96.0.10 . tcp . 80 : goto svc4-ns/web/tcp/http"}) {
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
		"cluster-ips-4 10.96.0.10 : ",
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
	mk := func(local bool, cfg Config) []string {
		sp := base()
		sp.Family = model.IPv6
		sp.ClusterIPs = []netip.Addr{netip.MustParseAddr("fd00:96::10")}
		sp.NodePort = 30080
		sp.ExternalIPs = []netip.Addr{netip.MustParseAddr("2001:db8::5")}
		sp.ExternalLocal = local
		sp.ClusterEndpoints = []model.Endpoint{ep("fd00:244::1", false), ep("fd00:244::2", false)}
		return elements(Render(sp, cfg))
	}
	has := func(t *testing.T, got []string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("missing %q in\n%s", w, strings.Join(got, "\n"))
			}
		}
	}
	lacks := func(t *testing.T, got []string, prefix string) {
		t.Helper()
		for _, g := range got {
			if strings.HasPrefix(g, prefix) {
				t.Errorf("unexpected %q", g)
			}
		}
	}
	got := mk(false, Config{})
	has(t, got,
		"service-ips-6 2001:db8::5 . tcp . 80 : goto spread6-2",
		"endpoints-6 2001:db8::5 . tcp . 80 . 1 : fd00:244::2 . 8080",
		"masq-always-6 2001:db8::5 . tcp . 80 : ",
		"service-nodeports-6 tcp . 30080 : goto spread-np6-2",
		"nodeport-endpoints-6 tcp . 30080 . 0 : fd00:244::1 . 8080",
		"masq-always-nodeports-6 tcp . 30080 : ",
		"service-ips-6 fd00:96::10 . tcp . 80 : goto spread6-2")
	// Without cluster CIDRs nothing is masqueraded for ClusterIPs.
	lacks(t, got, "masq-outside-cluster-6")
	lacks(t, got, "external-local")

	// Local, and no local endpoint: external clients are dropped; pods and the node go
	// anywhere, the node masqueraded.
	got = mk(true, Config{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:244::/32")}})
	has(t, got,
		"external-local-ips-6 2001:db8::5 . tcp . 80 : drop",
		"external-local-nodeports-6 tcp . 30080 : drop",
		"service-ips-6 2001:db8::5 . tcp . 80 : goto spread6-2",
		"masq-from-node-6 2001:db8::5 . tcp . 80 : ",
		"masq-from-node-nodeports-6 tcp . 30080 : ",
		"masq-outside-cluster-6 fd00:96::10 . tcp . 80 : ")
	lacks(t, got, "masq-always")
	lacks(t, got, "local-endpoints")
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
