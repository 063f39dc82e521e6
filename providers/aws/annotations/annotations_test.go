package annotations

import (
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/providers"
)

func a(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i]
		if !strings.Contains(k, "/") {
			k = Prefix + k
		}
		m[k] = kv[i+1]
	}
	return m
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Settings{Scheme: "internet-facing", TargetType: "instance", IPAddressType: "ipv4", ManageBackendRules: true, LBAttributes: map[string]string{}, TGAttributes: map[string]string{},
		Tags: map[string]string{}, TargetNodeLabels: map[string]string{}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Parse(nil) = %+v, want %+v", s, want)
	}
}

func TestParse(t *testing.T) {
	s, err := Parse(a(
		Scheme, "internal",
		FairleadTargetType, "ip",
		HealthProtocol, "http", HealthPort, "8080", HealthPath, "/ready", HealthInterval, "30", HealthTimeout, "6",
		HealthyThreshold, "3", UnhealthyThreshold, "4", HealthSuccessCodes, "200-299,302",
		ProxyProtocol, "*",
		SSLCert, "arn:aws:acm:us-east-1:123456789012:certificate/abc, arn:aws:acm:us-east-1:123456789012:certificate/def",
		SSLPorts, "https, 8443", SSLNegotiationPolicy, "ELBSecurityPolicy-TLS13-1-2-Res-2021-06", BackendProtocol, "ssl", ALPNPolicy, "HTTP2Preferred",
		Subnets, "subnet-0a, private-b", PrivateIPv4Addresses, "10.0.1.10,10.0.2.10",
		LoadBalancerAttributes, "deletion_protection.enabled=true, load_balancing.cross_zone.enabled=true",
		TargetGroupAttributes, "deregistration_delay.timeout_seconds=30,preserve_client_ip.enabled=false",
		AdditionalResourceTags, "team=shop, cost-center=42",
		IPAddressType, "ipv4",
		LoadBalancerName, "shop-web",
		SecurityGroups, "sg-0123, frontend",
	))
	if err != nil {
		t.Fatal(err)
	}
	want := &Settings{
		Scheme: "internal", TargetType: "ip", IPAddressType: "ipv4",
		Health:        Health{Protocol: "HTTP", Port: "8080", Path: "/ready", Interval: 30, Timeout: 6, Healthy: 3, Unhealthy: 4, SuccessCodes: "200-299,302"},
		ProxyProtocol: true,
		TLS: &TLS{Certificates: []string{"arn:aws:acm:us-east-1:123456789012:certificate/abc", "arn:aws:acm:us-east-1:123456789012:certificate/def"},
			Ports: []string{"https", "8443"}, Policy: "ELBSecurityPolicy-TLS13-1-2-Res-2021-06", BackendTLS: true, ALPN: "HTTP2Preferred"},
		Name:             "shop-web",
		SecurityGroups:   []string{"sg-0123", "frontend"},
		Subnets:          []string{"subnet-0a", "private-b"},
		PrivateIPv4:      []netip.Addr{netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.2.10")},
		LBAttributes:     map[string]string{"deletion_protection.enabled": "true", "load_balancing.cross_zone.enabled": "true"},
		TGAttributes:     map[string]string{"deregistration_delay.timeout_seconds": "30", "preserve_client_ip.enabled": "false"},
		Tags:             map[string]string{"team": "shop", "cost-center": "42"},
		TargetNodeLabels: map[string]string{},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", s, want)
	}

	// The AWS cloud provider's internal flag; Fairlead's scheme wins over the AWS one.
	for ann, scheme := range map[string]map[string]string{
		"internal":         a(Internal, "true"),
		"internet-facing":  a(Internal, "false"),
		"internal ":        a(Internal, "0.0.0.0/0"),
		"internet-facing ": a(Scheme, "internal", FairleadScheme, "internet-facing"),
	} {
		s, err := Parse(scheme)
		if err != nil || s.Scheme != strings.TrimSpace(ann) {
			t.Errorf("Parse(%v) = %+v, %v; want scheme %s", scheme, s, err, ann)
		}
	}
	// TLS on every port by default, with AWS' current recommended policy.
	s, err = Parse(a(SSLCert, "arn:aws:iam::123456789012:server-certificate/web", ALPNPolicy, "None"))
	if err != nil || s.TLS.Policy != DefaultSSLPolicy || len(s.TLS.Ports) != 0 || s.TLS.ALPN != "" {
		t.Fatalf("Parse(ssl-cert only) = %+v, %v", s.TLS, err)
	}
	// The older way of asking for ip targets; the target type annotation wins over it.
	for ann, want := range map[*map[string]string]string{
		ptr(a(Type, "nlb-ip")): "ip", ptr(a(Type, "external")): "instance", ptr(a(Type, "nlb-ip", TargetType, "instance")): "instance",
	} {
		if s, err := Parse(*ann); err != nil || s.TargetType != want {
			t.Errorf("Parse(%v) = %+v, %v; want target type %s", *ann, s, err, want)
		}
	}
	// Classic ELB annotations mean nothing to an NLB, here as with the AWS controllers.
	if _, err := Parse(a("connection-draining-enabled", "true")); err != nil {
		t.Errorf("a classic ELB annotation: %v", err)
	}
	s, err = Parse(a(TargetNodeLabels, "pool=edge, ingress"))
	if err != nil || !reflect.DeepEqual(s.TargetNodeLabels, map[string]string{"pool": "edge", "ingress": ""}) {
		t.Fatalf("target-node-labels: %+v, %v", s.TargetNodeLabels, err)
	}
}

func TestParseInvalid(t *testing.T) {
	for _, c := range []struct {
		ann  map[string]string
		want string // in the error, besides the annotation's name
	}{
		{a(Scheme, "public"), `"public"`},
		{a(Internal, "yes"), `"yes"`},
		{a(FairleadTargetType, "pod"), `"pod"`},
		{a(HealthProtocol, "UDP"), `"UDP"`},
		{a(HealthPort, "0"), "traffic-port"},
		{a(HealthPort, "http"), "traffic-port"},
		{a(HealthPath, "healthz"), "starting with /"},
		{a(HealthInterval, "4"), "5 to 300"},
		{a(HealthInterval, "ten"), "5 to 300"},
		{a(HealthTimeout, "121"), "2 to 120"},
		{a(HealthInterval, "10", HealthTimeout, "20"), "longer than the interval"},
		{a(HealthyThreshold, "11"), "2 to 10"},
		{a(UnhealthyThreshold, "1"), "2 to 10"},
		{a(HealthSuccessCodes, "600"), "200 to 599"},
		{a(HealthSuccessCodes, "299-200"), "200 to 599"},
		{a(HealthProtocol, "TCP", HealthPath, "/x"), "no path"},
		{a(HealthProtocol, "TCP", HealthSuccessCodes, "200"), "no status codes"},
		{a(ProxyProtocol, "v2"), `"*"`},
		{a(SSLCert, "my-cert"), "not the ARN"},
		{a(SSLPorts, "443"), "needs " + Prefix + SSLCert},
		{a(BackendProtocol, "ssl"), "needs " + Prefix + SSLCert},
		{a(SSLCert, "arn:aws:acm:us-east-1:123456789012:certificate/abc", BackendProtocol, "http"), `"tcp" or "ssl"`},
		{a(SSLCert, "arn:aws:acm:us-east-1:123456789012:certificate/abc", ALPNPolicy, "h2"), `"h2"`},
		{a(SSLCert, "arn:aws:acm:us-east-1:123456789012:certificate/abc", SSLNegotiationPolicy, "a policy"), "security policy"},
		{a(EIPAllocations, "eip-1"), "eipalloc-"},
		{a(EIPAllocations, "eipalloc-1", Scheme, "internal"), "internet-facing"},
		{a(EIPAllocations, "eipalloc-1", Subnets, "subnet-a,subnet-b"), "1 allocations for 2 subnets"},
		{a(PrivateIPv4Addresses, "10.0.0.5"), "internal"},
		{a(PrivateIPv4Addresses, "2001:db8::1", Scheme, "internal"), "not an IPv4"},
		{a(Subnets, "subnet a"), "no spaces"},
		{a(IPAddressType, "ipv6"), "dualstack"},
		{a(LoadBalancerAttributes, "idle_timeout.timeout_seconds=60"), "unknown or unsupported"},
		{a(LoadBalancerAttributes, "deletion_protection.enabled"), "key=value"},
		{a(LoadBalancerAttributes, "deletion_protection.enabled=yes"), "true or false"},
		{a(LoadBalancerAttributes, "access_logs.s3.enabled=true"), "needs access_logs.s3.bucket"},
		{a(TargetGroupAttributes, "deregistration_delay.timeout_seconds=4000"), "0 to 3600"},
		{a(TargetGroupAttributes, "stickiness.enabled=true,stickiness.enabled=false"), "twice"},
		{a(ProxyProtocol, "*", TargetGroupAttributes, "proxy_protocol_v2.enabled=false"), "contradicts"},
		{a(AdditionalResourceTags, "fairlead.dev/service=x"), "reserved"},
		{a(AdditionalResourceTags, "aws:cloudformation=x"), "reserved"},
		{a(AdditionalResourceTags, "novalue"), "key=value"},
		{a(TargetNodeLabels, "bad key=1"), "label keys"},
		{a(TargetNodeLabels, "pool=edge", FairleadTargetType, "ip"), "instance targets only"},
		{a(SecurityGroups, "sg-1", ManageBackendSGRules, "true"), "open the target ports"},
		{a(Type, "elb"), "Network Load Balancers only"},
		{a("ipv6-addresses", "2001:db8::1"), "not supported by Fairlead yet"},
		{a("listener-attributes.TCP-80", "tcp.idle_timeout.seconds=60"), "not supported by Fairlead yet"},
		{a(ManageBackendSGRules, "yes"), "neither true nor false"},
		{a(LoadBalancerName, "web-"), "load balancer names"},
		{a(LoadBalancerName, "internal-web"), "internal-"},
		{a(LoadBalancerName, "fl-web"), "fl-"},
		{a(LoadBalancerName, "a-name-that-is-longer-than-32-chars"), "1 to 32"},
	} {
		_, err := Parse(c.ann)
		if providers.ReasonOf(err) != providers.ReasonInvalidService || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%v) error = %v, want an InvalidService error containing %q", c.ann, err, c.want)
			continue
		}
		named := false
		for k := range c.ann {
			named = named || strings.Contains(err.Error(), "annotation "+k+": ")
		}
		if !named {
			t.Errorf("Parse(%v) error %q names none of the annotations", c.ann, err)
		}
	}
	// Every bad annotation is reported at once.
	_, err := Parse(a(Scheme, "public", HealthPort, "x", ProxyProtocol, "on"))
	if err == nil || strings.Count(err.Error(), "annotation ") != 3 {
		t.Fatalf("error = %v, want all three annotations named", err)
	}
}

// FuzzParse: whatever the annotations, Parse either refuses them as the Service's fault or
// returns settings within what AWS accepts.
func FuzzParse(f *testing.F) {
	for _, seed := range [][2]string{
		{HealthInterval, "10"}, {HealthPort, "traffic-port"}, {HealthSuccessCodes, "200-399,404"},
		{LoadBalancerAttributes, "deletion_protection.enabled=true"}, {TargetGroupAttributes, "deregistration_delay.timeout_seconds=0"},
		{AdditionalResourceTags, "a=b,c=d"}, {SSLCert, "arn:aws:acm:us-east-1:123456789012:certificate/x"},
		{PrivateIPv4Addresses, "10.0.0.1"}, {TargetNodeLabels, "a/b=c"}, {Internal, "true"},
	} {
		f.Add(seed[0], seed[1], HealthTimeout, "5")
	}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		s, err := Parse(map[string]string{Prefix + k1: v1, Prefix + k2: v2, Prefix + SSLCert + "-not": v1})
		if err != nil {
			if providers.ReasonOf(err) != providers.ReasonInvalidService {
				t.Fatalf("error %v has reason %s", err, providers.ReasonOf(err))
			}
			return
		}
		if s.Scheme != "internet-facing" && s.Scheme != "internal" || s.TargetType != "instance" && s.TargetType != "ip" {
			t.Fatalf("scheme %q, target type %q", s.Scheme, s.TargetType)
		}
		h := s.Health
		for _, r := range []struct{ v, lo, hi int32 }{{h.Interval, 5, 300}, {h.Timeout, 2, 120}, {h.Healthy, 2, 10}, {h.Unhealthy, 2, 10}} {
			if r.v != 0 && (r.v < r.lo || r.v > r.hi) {
				t.Fatalf("health %+v out of range", h)
			}
		}
		if h.Port != "" && h.Port != TrafficPort {
			if n, err := strconv.Atoi(h.Port); err != nil || n < 1 || n > 65535 {
				t.Fatalf("health port %q", h.Port)
			}
		}
		for k := range s.Tags {
			if strings.HasPrefix(k, "fairlead.dev/") || strings.HasPrefix(strings.ToLower(k), "aws:") {
				t.Fatalf("reserved tag %q accepted", k)
			}
		}
		for k := range s.LBAttributes {
			if _, ok := lbAttributes[k]; !ok {
				t.Fatalf("unknown load balancer attribute %q accepted", k)
			}
		}
		for k := range s.TGAttributes {
			if _, ok := tgAttributes[k]; !ok {
				t.Fatalf("unknown target group attribute %q accepted", k)
			}
		}
		if s.TLS != nil && len(s.TLS.Certificates) == 0 {
			t.Fatal("TLS without a certificate")
		}
		for _, ip := range s.PrivateIPv4 {
			if !ip.Is4() {
				t.Fatalf("private address %s", ip)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }
