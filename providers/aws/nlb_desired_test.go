package aws

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
)

func TestDesiredNLB(t *testing.T) {
	node := providers.Node{Name: "n1", ProviderID: "aws:///us-east-1a/i-0123456789abcdef0"}
	base := func() *providers.Service {
		return &providers.Service{Namespace: "ns", Name: "svc", Families: []string{"IPv4"}, Nodes: []providers.Node{node},
			Ports: []providers.Port{{Protocol: "TCP", Port: 80, NodePort: 30080}}}
	}
	t.Run("defaults", func(t *testing.T) {
		d, err := desiredNLB("c", base())
		if err != nil {
			t.Fatal(err)
		}
		if d.scheme != schemeInternetFacing || d.targetType != targetInstance || len(d.listeners) != 1 {
			t.Fatalf("spec = %+v", d)
		}
		g := d.listeners[0].group
		if g.port != 30080 || g.health != (healthSpec{protocol: "TCP", port: "traffic-port", interval: 10, healthy: 2, unhealthy: 2}) ||
			len(g.targets) != 1 || g.targets[0] != (target{id: "i-0123456789abcdef0", port: 30080}) {
			t.Fatalf("group = %+v", g)
		}
		if len(d.ingress) != 1 || d.ingress[0] != (ruleSpec{protocol: "tcp", port: 80, cidr: netip.MustParsePrefix("0.0.0.0/0")}) {
			t.Fatalf("ingress = %+v", d.ingress)
		}
		if len(g.name) > 32 || !strings.HasPrefix(g.name, targetGroupPrefix(d.hash)) {
			t.Fatalf("target group name %q: longer than AWS' 32 characters or not under the Service's prefix", g.name)
		}
	})
	t.Run("names differ per cluster, Service, protocol and port", func(t *testing.T) {
		a := targetGroupName(serviceHash("c", "ns/a"), "TCP", 80, "instance", false)
		for _, b := range []string{
			targetGroupName(serviceHash("d", "ns/a"), "TCP", 80, "instance", false),
			targetGroupName(serviceHash("c", "ns/b"), "TCP", 80, "instance", false),
			targetGroupName(serviceHash("c", "ns/a"), "UDP", 80, "instance", false),
			targetGroupName(serviceHash("c", "ns/a"), "TCP", 81, "instance", false),
			targetGroupName(serviceHash("c", "ns/a"), "TCP", 80, "ip", false),
			targetGroupName(serviceHash("c", "ns/a"), "TCP", 80, "instance", true),
		} {
			if a == b {
				t.Errorf("name collision: %s", a)
			}
		}
	})
	t.Run("local traffic checks healthCheckNodePort", func(t *testing.T) {
		s := base()
		s.LocalTraffic, s.HealthCheckNodePort = true, 31999
		d, err := desiredNLB("c", s)
		if err != nil {
			t.Fatal(err)
		}
		if h := d.listeners[0].group.health; h != (healthSpec{protocol: "HTTP", port: "31999", path: "/healthz", codes: "200-399", interval: 10, healthy: 2, unhealthy: 2}) {
			t.Fatalf("health = %+v", h)
		}
	})
	t.Run("TCP and UDP on one port share a TCP_UDP listener", func(t *testing.T) {
		s := base()
		s.Ports = append(s.Ports, providers.Port{Protocol: "UDP", Port: 80, NodePort: 30080})
		d, err := desiredNLB("c", s)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.listeners) != 1 || d.listeners[0].protocol != "TCP_UDP" || len(d.ingress) != 2 {
			t.Fatalf("spec = %+v", d)
		}
	})
	t.Run("source ranges: masked, IPv6 dropped for an ipv4 NLB", func(t *testing.T) {
		s := base()
		s.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.0.2.7/24"), netip.MustParsePrefix("2001:db8::/32")}
		d, err := desiredNLB("c", s)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.ingress) != 1 || d.ingress[0].cidr != netip.MustParsePrefix("192.0.2.0/24") {
			t.Fatalf("ingress = %+v", d.ingress)
		}
	})
	t.Run("annotations: health check over the Local defaults, TLS ports, node labels", func(t *testing.T) {
		s := base()
		s.LocalTraffic, s.HealthCheckNodePort = true, 31999
		s.Ports = []providers.Port{
			{Name: "https", Protocol: "TCP", Port: 443, NodePort: 30443},
			{Name: "plain", Protocol: "TCP", Port: 80, NodePort: 30080},
			{Name: "dns", Protocol: "UDP", Port: 53, NodePort: 30053},
		}
		s.Nodes = append(s.Nodes, providers.Node{Name: "n2", ProviderID: "aws:///us-east-1a/i-0000000000000000e", Labels: map[string]string{"pool": "edge"}})
		s.Annotations = map[string]string{
			annotations.Prefix + annotations.HealthInterval:   "30",
			annotations.Prefix + annotations.HealthPath:       "/livez",
			annotations.Prefix + annotations.SSLCert:          "arn:aws:acm:us-east-1:123456789012:certificate/abc",
			annotations.Prefix + annotations.SSLPorts:         "https",
			annotations.Prefix + annotations.BackendProtocol:  "ssl",
			annotations.Prefix + annotations.TargetNodeLabels: "pool=edge",
			annotations.Prefix + annotations.ProxyProtocol:    "*",
		}
		d, err := desiredNLB("c", s)
		if err != nil {
			t.Fatal(err)
		}
		byPort := map[int32]listenerSpec{}
		for _, l := range d.listeners {
			byPort[l.port] = l
		}
		https, plain, dns := byPort[443], byPort[80], byPort[53]
		if https.protocol != "TLS" || https.group.protocol != "TLS" || https.tls == nil || https.tls.policy != annotations.DefaultSSLPolicy ||
			plain.protocol != "TCP" || plain.tls != nil || plain.group.protocol != "TCP" || dns.protocol != "UDP" {
			t.Fatalf("listeners = %+v", d.listeners)
		}
		// Local: healthCheckNodePort over HTTP, with the annotated path and interval.
		if h := plain.group.health; h != (healthSpec{protocol: "HTTP", port: "31999", path: "/livez", codes: "200-399", interval: 30, healthy: 2, unhealthy: 2}) {
			t.Fatalf("health = %+v", h)
		}
		if g := plain.group; len(g.targets) != 1 || g.targets[0].id != "i-0000000000000000e" || g.attributes["proxy_protocol_v2.enabled"] != "true" {
			t.Fatalf("group = %+v, want only the node labelled pool=edge, proxy protocol on", g)
		}
		// TLS listeners are TCP as far as security groups go.
		if n := len(d.ingress); n != 3 || d.ingress[0].protocol == "tls" {
			t.Fatalf("ingress = %+v", d.ingress)
		}
		// By default every TCP port is TLS, and UDP ones stay as they are.
		delete(s.Annotations, annotations.Prefix+annotations.SSLPorts)
		if d, err = desiredNLB("c", s); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.listeners {
			if (l.protocol == "TLS") != (l.port != 53) {
				t.Fatalf("listener %d: %s", l.port, l.protocol)
			}
		}
	})
	t.Run("dual-stack: IPv6 ranges kept, IPv6 pods as targets of an IPv6-first Service", func(t *testing.T) {
		s := base()
		s.Families = []string{"IPv6", "IPv4"}
		s.Annotations = map[string]string{annotations.Prefix + annotations.IPAddressType: "dualstack", AnnotationTargetType: "ip"}
		s.Ports[0].Endpoints = []netip.AddrPort{netip.MustParseAddrPort("10.244.0.5:8080"), netip.MustParseAddrPort("[2001:db8::5]:8080")}
		d, err := desiredNLB("c", s)
		if err != nil {
			t.Fatal(err)
		}
		g := d.listeners[0].group
		if d.ipAddressType != "dualstack" || !g.ipv6 || len(g.targets) != 1 || g.targets[0].id != "2001:db8::5" {
			t.Fatalf("spec %+v, group %+v", d, g)
		}
		if len(d.ingress) != 2 || d.ingress[1].cidr != netip.MustParsePrefix("::/0") {
			t.Fatalf("ingress = %+v, want 0.0.0.0/0 and ::/0", d.ingress)
		}
	})
	for name, c := range map[string]struct {
		mutate func(*providers.Service)
		want   string
	}{
		"TLS on a UDP port": {func(s *providers.Service) {
			s.Ports[0].Protocol = "UDP"
			s.Annotations = map[string]string{annotations.Prefix + annotations.SSLCert: "arn:aws:acm:us-east-1:123456789012:certificate/abc",
				annotations.Prefix + annotations.SSLPorts: "80"}
		}, "only TCP ports can take TLS"},
		"TLS on a port the Service lacks": {func(s *providers.Service) {
			s.Annotations = map[string]string{annotations.Prefix + annotations.SSLCert: "arn:aws:acm:us-east-1:123456789012:certificate/abc",
				annotations.Prefix + annotations.SSLPorts: "https"}
		}, `"https" is neither`},
		"scheme": {func(s *providers.Service) { s.Annotations = map[string]string{AnnotationScheme: "public"} }, `"public"`},
		"internal flag": {func(s *providers.Service) {
			s.Annotations = map[string]string{annotations.Prefix + annotations.Internal: "yes"}
		}, annotations.Prefix + annotations.Internal},
		"target type": {func(s *providers.Service) {
			s.Annotations = map[string]string{annotations.Prefix + annotations.TargetType: "pod"}
		}, `"pod"`},
		"sctp":        {func(s *providers.Service) { s.Ports[0].Protocol = "SCTP" }, `"SCTP"`},
		"no nodePort": {func(s *providers.Service) { s.Ports[0].NodePort = 0 }, "nodePort"},
		"no ports":    {func(s *providers.Service) { s.Ports = nil }, "no ports"},
		"providerID":  {func(s *providers.Service) { s.Nodes[0].ProviderID = "gce://p/z/n1" }, "gce://p/z/n1"},
		"IPv6":        {func(s *providers.Service) { s.Families = []string{"IPv4", "IPv6"} }, "IPv6"},
		"split target port": {func(s *providers.Service) {
			s.Ports = append(s.Ports, providers.Port{Protocol: "UDP", Port: 80, NodePort: 30081})
		}, "different target ports"},
	} {
		t.Run("invalid "+name, func(t *testing.T) {
			s := base()
			c.mutate(s)
			_, err := desiredNLB("c", s)
			if providers.ReasonOf(err) != providers.ReasonInvalidService || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want an InvalidService error mentioning %s", err, c.want)
			}
		})
	}
}

func TestInstanceID(t *testing.T) {
	for in, want := range map[string]string{
		"aws:///us-east-1a/i-0123456789abcdef0": "i-0123456789abcdef0",
		"aws:///i-0abc":                         "i-0abc",
		"aws://us-east-1a/i-0abc":               "i-0abc",
		"":                                      "",
		"aws:///us-east-1a/":                    "",
		"aws:///us-east-1a/fargate-ip-10-0-0-1": "",
	} {
		got, err := instanceID(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("instanceID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestServiceLoadBalancerName(t *testing.T) {
	def := LoadBalancerName("c", "ns/svc")
	for ann, want := range map[string]string{"": def, "shop-web": "shop-web", "bad name": def} {
		a := map[string]string{}
		if ann != "" {
			a[annotations.Prefix+annotations.LoadBalancerName] = ann
		}
		if got := ServiceLoadBalancerName("c", "ns/svc", a); got != want {
			t.Errorf("name annotation %q: %q, want %q", ann, got, want)
		}
	}
}
