// Package annotations reads the Service annotations of the NLB mode into one validated
// Settings value: Fairlead's own (fairlead.dev/aws-nlb-*) and the
// service.beta.kubernetes.io/aws-load-balancer-* annotations of the AWS cloud provider and the
// AWS Load Balancer Controller, with the latter's meaning, so that Services move over
// unchanged. It knows nothing of AWS' API or of Kubernetes objects: fairlead-controller and
// fairlead-ccm both reach it through the NLB provider, so an annotation means the same to both.
package annotations

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/fairlead-lb/fairlead/providers"
)

// Prefix starts the annotations of the AWS cloud provider and the AWS Load Balancer Controller.
const Prefix = "service.beta.kubernetes.io/aws-load-balancer-"

// Fairlead's own names for the two settings it had before it read the AWS ones; they win over
// the AWS names when both are set.
const (
	FairleadScheme     = "fairlead.dev/aws-nlb-scheme"
	FairleadTargetType = "fairlead.dev/aws-nlb-target-type"
)

// The AWS annotations, without Prefix.
const (
	Scheme                 = "scheme"
	Internal               = "internal"
	TargetType             = "nlb-target-type"
	HealthProtocol         = "healthcheck-protocol"
	HealthPort             = "healthcheck-port"
	HealthPath             = "healthcheck-path"
	HealthInterval         = "healthcheck-interval"
	HealthTimeout          = "healthcheck-timeout"
	HealthyThreshold       = "healthcheck-healthy-threshold"
	UnhealthyThreshold     = "healthcheck-unhealthy-threshold"
	HealthSuccessCodes     = "healthcheck-success-codes"
	ProxyProtocol          = "proxy-protocol"
	SSLCert                = "ssl-cert"
	SSLPorts               = "ssl-ports"
	SSLNegotiationPolicy   = "ssl-negotiation-policy"
	BackendProtocol        = "backend-protocol"
	ALPNPolicy             = "alpn-policy"
	Subnets                = "subnets"
	EIPAllocations         = "eip-allocations"
	PrivateIPv4Addresses   = "private-ipv4-addresses"
	IPAddressType          = "ip-address-type"
	LoadBalancerAttributes = "load-balancer-attributes"
	TargetGroupAttributes  = "target-group-attributes"
	SecurityGroups         = "security-groups"
	ManageBackendSGRules   = "manage-backend-security-group-rules"
	AdditionalResourceTags = "additional-resource-tags"
	LoadBalancerName       = "name"
	TargetNodeLabels       = "target-node-labels"
	// Type is "nlb" (the AWS cloud provider) or "external" (the AWS Load Balancer Controller);
	// its older "nlb-ip" means ip targets.
	Type = "type"
)

// notImplemented are annotations of the AWS Load Balancer Controller's NLB mode that Fairlead
// does not implement: a Service carrying one is refused rather than served otherwise than its
// owner asked. (Annotations of classic ELBs, which the AWS controllers ignore for NLBs too,
// are ignored.)
var notImplemented = []string{
	"ipv6-addresses", "multi-cluster-target-group", "enable-prefix-for-ipv6-source-nat",
	"source-nat-ipv6-prefixes", "security-group-prefix-lists", "minimum-load-balancer-capacity",
	"enable-icmp-for-path-mtu-discovery", "inbound-sg-rules-on-private-link-traffic",
}

// notImplementedPrefix starts the per-listener attribute annotations (listener-attributes.TCP-80).
const notImplementedPrefix = "listener-attributes."

// Values.
const (
	// DefaultSSLPolicy is the TLS listeners' security policy unless the Service names one:
	// AWS' recommendation for new listeners (TLS 1.3 and 1.2).
	DefaultSSLPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"
	// TrafficPort is the health check port meaning "the port traffic goes to".
	TrafficPort = "traffic-port"

	schemeInternetFacing = "internet-facing"
	schemeInternal       = "internal"
	targetInstance       = "instance"
	targetIP             = "ip"
	protocolTCP          = "TCP"
	protocolHTTP         = "HTTP"
	protocolHTTPS        = "HTTPS"
)

// Settings is what a Service's annotations ask of its NLB. Zero values mean "not set": the
// provider then uses its defaults (which depend on the Service, e.g. its traffic policy).
type Settings struct {
	Scheme     string // "internet-facing" or "internal"
	TargetType string // "instance" or "ip"
	// IPAddressType is the NLB's: "ipv4" or "dualstack" (clients over IPv4 and IPv6).
	IPAddressType string
	Health        Health
	// ProxyProtocol turns on proxy protocol v2 towards every target group.
	ProxyProtocol bool
	// TLS terminates TLS on the listeners it selects; nil: none.
	TLS *TLS
	// Subnets are subnet IDs or Name tags, in the annotation's order.
	Subnets []string
	// EIPAllocations pair with the subnets in order (internet-facing only).
	EIPAllocations []string
	// PrivateIPv4 are one address per subnet (internal only), matched to subnets by CIDR.
	PrivateIPv4 []netip.Addr
	// LBAttributes and TGAttributes are the attributes set by annotation, by key.
	LBAttributes, TGAttributes map[string]string
	// SecurityGroups (IDs or Name tags) replace Fairlead's own group on the load balancer.
	SecurityGroups []string
	// ManageBackendRules: Fairlead opens the target ports in the nodes' security group.
	ManageBackendRules bool
	// Name is the load balancer's name; "" for Fairlead's (fl-<hash>).
	Name string
	// Tags are added to everything created for the Service.
	Tags map[string]string
	// TargetNodeLabels select the nodes registered as instance targets (all keys must match;
	// an empty value matches any value).
	TargetNodeLabels map[string]string
}

// Health is the health check asked for; zero fields are defaults.
type Health struct {
	Protocol     string // TCP, HTTP or HTTPS
	Port         string // TrafficPort or a number
	Path         string
	Interval     int32
	Timeout      int32
	Healthy      int32
	Unhealthy    int32
	SuccessCodes string
}

// TLS is the TLS termination asked for.
type TLS struct {
	// Certificates are ARNs; the first is the listeners' default, the others are served by SNI.
	Certificates []string
	// Ports are Service port numbers or names; empty: every TCP port.
	Ports  []string
	Policy string
	// BackendTLS re-encrypts towards the targets (backend-protocol: ssl).
	BackendTLS bool
	// ALPN is the listeners' ALPN policy, "" for none.
	ALPN string
}

// Parse validates the annotations. The error (reason providers.ReasonInvalidService) names every
// offending annotation and value at once.
func Parse(ann map[string]string) (*Settings, error) {
	p := parser{ann: ann}
	s := &Settings{}
	s.Scheme = p.scheme()
	s.TargetType = p.targetType()
	s.Health = p.health()
	if v, ok := p.get(ProxyProtocol); ok {
		if v != "*" {
			p.fail(ProxyProtocol, v, `the only value is "*" (proxy protocol v2 on every target group)`)
		}
		s.ProxyProtocol = true
	}
	s.TLS = p.tls()
	s.Subnets = p.list(Subnets)
	for _, id := range s.Subnets {
		if strings.ContainsAny(id, " \t") {
			p.fail(Subnets, id, "a subnet ID or Name tag has no spaces")
		}
	}
	s.EIPAllocations = p.list(EIPAllocations)
	for _, id := range s.EIPAllocations {
		if !strings.HasPrefix(id, "eipalloc-") {
			p.fail(EIPAllocations, id, "not an allocation ID (eipalloc-...)")
		}
	}
	if len(s.EIPAllocations) > 0 && s.Scheme == schemeInternal {
		p.fail(EIPAllocations, ann[Prefix+EIPAllocations], "Elastic IPs are for internet-facing load balancers")
	}
	for _, a := range p.list(PrivateIPv4Addresses) {
		ip, err := netip.ParseAddr(a)
		if err != nil || !ip.Is4() {
			p.fail(PrivateIPv4Addresses, a, "not an IPv4 address")
			continue
		}
		s.PrivateIPv4 = append(s.PrivateIPv4, ip)
	}
	if len(s.PrivateIPv4) > 0 && s.Scheme != schemeInternal {
		p.fail(PrivateIPv4Addresses, ann[Prefix+PrivateIPv4Addresses], "private addresses are for internal load balancers (scheme: internal)")
	}
	if n, m := len(s.EIPAllocations), len(s.Subnets); n > 0 && m > 0 && n != m {
		p.fail(EIPAllocations, ann[Prefix+EIPAllocations], fmt.Sprintf("%d allocations for %d subnets; give one per subnet", n, m))
	}
	if n, m := len(s.PrivateIPv4), len(s.Subnets); n > 0 && m > 0 && n != m {
		p.fail(PrivateIPv4Addresses, ann[Prefix+PrivateIPv4Addresses], fmt.Sprintf("%d addresses for %d subnets; give one per subnet", n, m))
	}
	s.IPAddressType = "ipv4"
	if v, ok := p.get(IPAddressType); ok {
		s.IPAddressType = p.oneOf(IPAddressType, v, "ipv4", "ipv4", "dualstack")
	}
	s.LBAttributes = p.attributes(LoadBalancerAttributes, lbAttributes)
	s.TGAttributes = p.attributes(TargetGroupAttributes, tgAttributes)
	if s.ProxyProtocol && s.TGAttributes["proxy_protocol_v2.enabled"] == "false" {
		p.fail(TargetGroupAttributes, ann[Prefix+TargetGroupAttributes], "proxy_protocol_v2.enabled=false contradicts "+Prefix+ProxyProtocol)
	}
	if s.LBAttributes["access_logs.s3.enabled"] == "true" && s.LBAttributes["access_logs.s3.bucket"] == "" {
		p.fail(LoadBalancerAttributes, ann[Prefix+LoadBalancerAttributes], "access_logs.s3.enabled=true needs access_logs.s3.bucket")
	}
	if v, ok := p.get(LoadBalancerName); ok {
		if !lbName.MatchString(v) || strings.HasPrefix(v, "internal-") || strings.HasPrefix(v, "fl-") {
			p.fail(LoadBalancerName, v, "load balancer names have 1 to 32 letters, digits and hyphens, not at either end, and start neither with internal- nor with fl- (Fairlead's own)")
		} else {
			s.Name = v
		}
	}
	s.Tags = p.tags()
	s.TargetNodeLabels = p.nodeLabels()
	if len(s.TargetNodeLabels) > 0 && s.TargetType == targetIP {
		p.fail(TargetNodeLabels, ann[Prefix+TargetNodeLabels], "applies to instance targets only; ip targets are the Service's pods")
	}
	s.SecurityGroups = p.list(SecurityGroups)
	s.ManageBackendRules = len(s.SecurityGroups) == 0
	if v, ok := p.get(ManageBackendSGRules); ok {
		switch strings.ToLower(v) {
		case "true":
			if len(s.SecurityGroups) > 0 {
				// Rules are told apart by the load balancer group they let in; a group of the
				// Service's own may be shared with others, whose rules would be mistaken for
				// this Service's.
				p.fail(ManageBackendSGRules, v, "not supported with "+Prefix+SecurityGroups+": open the target ports to your groups yourself")
			}
		case "false":
			s.ManageBackendRules = false
		default:
			p.fail(ManageBackendSGRules, v, "neither true nor false")
		}
	}
	p.unsupported()
	if err := p.err(); err != nil {
		return nil, err
	}
	return s, nil
}

type parser struct {
	ann  map[string]string
	errs []string
}

func (p *parser) get(name string) (string, bool) {
	v, ok := p.ann[Prefix+name]
	return strings.TrimSpace(v), ok
}

func (p *parser) fail(name, value, why string) {
	if !strings.Contains(name, "/") {
		name = Prefix + name
	}
	p.errs = append(p.errs, fmt.Sprintf("annotation %s: %q: %s", name, value, why))
}

func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.Sort(p.errs)
	return &providers.Error{Reason: providers.ReasonInvalidService, Err: errors.New(strings.Join(p.errs, "; "))}
}

// list splits a comma-separated value, dropping empty entries.
func (p *parser) list(name string) []string {
	v, ok := p.get(name)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func (p *parser) scheme() string {
	if v, ok := p.ann[FairleadScheme]; ok {
		return p.oneOf(FairleadScheme, strings.TrimSpace(v), schemeInternetFacing, schemeInternetFacing, schemeInternal)
	}
	if v, ok := p.get(Scheme); ok {
		return p.oneOf(Scheme, v, schemeInternetFacing, schemeInternetFacing, schemeInternal)
	}
	if v, ok := p.get(Internal); ok {
		switch strings.ToLower(v) {
		case "true", "0.0.0.0/0": // the AWS cloud provider's legacy value means internal too
			return schemeInternal
		case "false":
			return schemeInternetFacing
		}
		p.fail(Internal, v, "neither true nor false")
	}
	return schemeInternetFacing
}

func (p *parser) targetType() string {
	def := targetInstance
	if v, ok := p.get(Type); ok {
		switch strings.ToLower(v) {
		case "nlb", "external":
		case "nlb-ip":
			def = targetIP
		default:
			p.fail(Type, v, `Fairlead makes Network Load Balancers only ("nlb", "external" or "nlb-ip")`)
		}
	}
	if v, ok := p.ann[FairleadTargetType]; ok {
		return p.oneOf(FairleadTargetType, strings.TrimSpace(v), def, targetInstance, targetIP)
	}
	if v, ok := p.get(TargetType); ok {
		return p.oneOf(TargetType, v, def, targetInstance, targetIP)
	}
	return def
}

// unsupported refuses the annotations Fairlead recognises but does not implement.
func (p *parser) unsupported() {
	for k, v := range p.ann {
		name, ok := strings.CutPrefix(k, Prefix)
		if ok && (slices.Contains(notImplemented, name) || strings.HasPrefix(name, notImplementedPrefix)) {
			p.fail(name, v, "not supported by Fairlead yet")
		}
	}
}

// oneOf returns v if it is one of allowed, else records an error and returns def.
func (p *parser) oneOf(name, v, def string, allowed ...string) string {
	if slices.Contains(allowed, v) {
		return v
	}
	p.fail(name, v, "must be one of "+strings.Join(quote(allowed), ", "))
	return def
}

func quote(s []string) []string {
	out := make([]string, len(s))
	for i, e := range s {
		out[i] = strconv.Quote(e)
	}
	return out
}

// number parses an integer annotation within [lo, hi]; 0 when absent or invalid.
func (p *parser) number(name string, lo, hi int32) int32 {
	v, ok := p.get(name)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < int64(lo) || n > int64(hi) {
		p.fail(name, v, fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
		return 0
	}
	return int32(n)
}

var successCodes = regexp.MustCompile(`^[0-9]{3}(-[0-9]{3})?(,[0-9]{3}(-[0-9]{3})?)*$`)

func (p *parser) health() Health {
	var h Health
	if v, ok := p.get(HealthProtocol); ok {
		h.Protocol = p.oneOf(HealthProtocol, strings.ToUpper(v), "", protocolTCP, protocolHTTP, protocolHTTPS)
	}
	if v, ok := p.get(HealthPort); ok {
		if v == TrafficPort {
			h.Port = v
		} else if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 65535 {
			h.Port = strconv.Itoa(n)
		} else {
			p.fail(HealthPort, v, `must be "traffic-port" or a port number (1-65535)`)
		}
	}
	if v, ok := p.get(HealthPath); ok {
		if !strings.HasPrefix(v, "/") || len(v) > 1024 || strings.ContainsAny(v, " \t\n") {
			p.fail(HealthPath, v, "must be a path starting with / (at most 1024 characters, no spaces)")
		} else {
			h.Path = v
		}
	}
	// The ranges NLB target groups accept.
	h.Interval = p.number(HealthInterval, 5, 300)
	h.Timeout = p.number(HealthTimeout, 2, 120)
	h.Healthy = p.number(HealthyThreshold, 2, 10)
	h.Unhealthy = p.number(UnhealthyThreshold, 2, 10)
	if h.Timeout != 0 && h.Interval != 0 && h.Timeout > h.Interval {
		p.fail(HealthTimeout, p.ann[Prefix+HealthTimeout], fmt.Sprintf("longer than the interval (%d s)", h.Interval))
	}
	if v, ok := p.get(HealthSuccessCodes); ok {
		if !successCodes.MatchString(v) || !codesInRange(v) {
			p.fail(HealthSuccessCodes, v, `must be HTTP codes from 200 to 599, as "200", "200,202" or "200-399"`)
		} else {
			h.SuccessCodes = v
		}
	}
	if h.Protocol == protocolTCP {
		if h.Path != "" {
			p.fail(HealthPath, h.Path, "TCP health checks have no path (set "+Prefix+HealthProtocol+" to HTTP or HTTPS)")
		}
		if h.SuccessCodes != "" {
			p.fail(HealthSuccessCodes, h.SuccessCodes, "TCP health checks have no status codes")
		}
	}
	return h
}

func codesInRange(v string) bool {
	for _, part := range strings.Split(v, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if isRange {
			b, _ = strconv.Atoi(hi)
		}
		if a < 200 || b > 599 || a > b {
			return false
		}
	}
	return true
}

var (
	arnPattern    = regexp.MustCompile(`^arn:aws[a-z-]*:(acm|iam):[a-z0-9-]*:[0-9]{12}:(certificate|server-certificate)/\S+$`)
	policyPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	alpnPolicies  = []string{"HTTP1Only", "HTTP2Only", "HTTP2Optional", "HTTP2Preferred", "None"}
)

func (p *parser) tls() *TLS {
	certs := p.list(SSLCert)
	t := &TLS{Certificates: certs, Ports: p.list(SSLPorts), Policy: DefaultSSLPolicy}
	for _, c := range certs {
		if !arnPattern.MatchString(c) {
			p.fail(SSLCert, c, "not the ARN of an ACM or IAM certificate")
		}
	}
	if v, ok := p.get(SSLNegotiationPolicy); ok {
		if !policyPattern.MatchString(v) {
			p.fail(SSLNegotiationPolicy, v, "not a security policy name (e.g. "+DefaultSSLPolicy+")")
		}
		t.Policy = v
	}
	if v, ok := p.get(BackendProtocol); ok {
		switch strings.ToLower(v) {
		case "ssl", "tls":
			t.BackendTLS = true
		case "tcp":
		default:
			p.fail(BackendProtocol, v, `must be "tcp" or "ssl"`)
		}
	}
	if v, ok := p.get(ALPNPolicy); ok {
		t.ALPN = p.oneOf(ALPNPolicy, v, "", alpnPolicies...)
		if t.ALPN == "None" {
			t.ALPN = ""
		}
	}
	if len(certs) > 0 {
		return t
	}
	for _, name := range []string{SSLPorts, SSLNegotiationPolicy, ALPNPolicy} {
		if v, ok := p.get(name); ok {
			p.fail(name, v, "needs "+Prefix+SSLCert+" (TLS listeners need a certificate)")
		}
	}
	if t.BackendTLS {
		p.fail(BackendProtocol, p.ann[Prefix+BackendProtocol], "needs "+Prefix+SSLCert+" (TLS to the targets goes with TLS listeners)")
	}
	return nil
}

// attribute describes a load balancer or target group attribute Fairlead sets: check validates
// a value; def is what AWS has when nobody set it ("" when it depends on the resource, then
// an attribute removed from the annotation keeps its last value).
type attribute struct {
	check func(string) bool
	def   string
	hint  string
}

func isBool(v string) bool { return v == "true" || v == "false" }

func anyValue(string) bool { return true }

func within(lo, hi int) func(string) bool {
	return func(v string) bool {
		n, err := strconv.Atoi(v)
		return err == nil && n >= lo && n <= hi
	}
}

func among(vals ...string) func(string) bool {
	return func(v string) bool { return slices.Contains(vals, v) }
}

var lbAttributes = map[string]attribute{
	"deletion_protection.enabled":       {isBool, "false", "true or false"},
	"load_balancing.cross_zone.enabled": {isBool, "false", "true or false"},
	"access_logs.s3.enabled":            {isBool, "false", "true or false"},
	"access_logs.s3.bucket":             {anyValue, "", "a bucket name"},
	"access_logs.s3.prefix":             {anyValue, "", "a key prefix"},
	"dns_record.client_routing_policy": {among("availability_zone_affinity", "partial_availability_zone_affinity", "any_availability_zone"),
		"any_availability_zone", "availability_zone_affinity, partial_availability_zone_affinity or any_availability_zone"},
	"zonal_shift.config.enabled": {isBool, "false", "true or false"},
}

var tgAttributes = map[string]attribute{
	"deregistration_delay.timeout_seconds":                         {within(0, 3600), "300", "0 to 3600"},
	"deregistration_delay.connection_termination.enabled":          {isBool, "false", "true or false"},
	"proxy_protocol_v2.enabled":                                    {isBool, "false", "true or false"},
	"preserve_client_ip.enabled":                                   {isBool, "", "true or false"},
	"stickiness.enabled":                                           {isBool, "false", "true or false"},
	"stickiness.type":                                              {among("source_ip"), "", "source_ip"},
	"load_balancing.cross_zone.enabled":                            {among("true", "false", "use_load_balancer_configuration"), "use_load_balancer_configuration", "true, false or use_load_balancer_configuration"},
	"target_health_state.unhealthy.connection_termination.enabled": {isBool, "true", "true or false"},
}

// LBAttributeDefaults and TGAttributeDefaults are the values AWS gives the attributes Fairlead
// manages when nobody set them: an attribute removed from the annotation goes back to these.
func LBAttributeDefaults() map[string]string { return defaults(lbAttributes) }

// TGAttributeDefaults: see LBAttributeDefaults.
func TGAttributeDefaults() map[string]string { return defaults(tgAttributes) }

func defaults(attrs map[string]attribute) map[string]string {
	out := map[string]string{}
	for k, a := range attrs {
		if a.def != "" {
			out[k] = a.def
		}
	}
	return out
}

func (p *parser) attributes(name string, known map[string]attribute) map[string]string {
	out := map[string]string{}
	for _, kv := range p.list(name) {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		a, isKnown := known[k]
		switch {
		case !ok:
			p.fail(name, kv, "entries are key=value")
		case !isKnown:
			keys := make([]string, 0, len(known))
			for k := range known {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			p.fail(name, kv, "unknown or unsupported attribute "+strconv.Quote(k)+"; supported: "+strings.Join(keys, ", "))
		case !a.check(v):
			p.fail(name, kv, k+" must be "+a.hint)
		default:
			if _, dup := out[k]; dup {
				p.fail(name, kv, k+" is given twice")
			}
			out[k] = v
		}
	}
	return out
}

// Tag keys Fairlead itself uses: a Service may not set them.
var reservedTagPrefixes = []string{"aws:", "fairlead.dev/", "kubernetes.io/cluster/"}

func (p *parser) tags() map[string]string {
	out := map[string]string{}
	for _, kv := range p.list(AdditionalResourceTags) {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || k == "":
			p.fail(AdditionalResourceTags, kv, "entries are key=value")
		case len(k) > 128 || len(v) > 256:
			p.fail(AdditionalResourceTags, kv, "tag keys have at most 128 characters, values 256")
		case slices.ContainsFunc(reservedTagPrefixes, func(pre string) bool { return strings.HasPrefix(strings.ToLower(k), pre) }):
			p.fail(AdditionalResourceTags, kv, "keys starting with "+strings.Join(reservedTagPrefixes, ", ")+" are reserved")
		default:
			out[k] = v
		}
	}
	if len(out) > 40 {
		p.fail(AdditionalResourceTags, p.ann[Prefix+AdditionalResourceTags], "more than 40 tags (AWS allows 50 per resource, Fairlead uses up to 10)")
	}
	return out
}

var lbName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$`)

var labelKey = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
var labelValue = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)

func (p *parser) nodeLabels() map[string]string {
	out := map[string]string{}
	for _, kv := range p.list(TargetNodeLabels) {
		k, v, _ := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !labelKey.MatchString(k) || len(k) > 316 || !labelValue.MatchString(v) || len(v) > 63 {
			p.fail(TargetNodeLabels, kv, "entries are label keys, or key=value")
			continue
		}
		out[k] = v
	}
	return out
}
