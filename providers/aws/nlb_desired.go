package aws

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
)

// Fairlead's own annotations for the scheme and target type; the AWS cloud provider's and the
// AWS Load Balancer Controller's (service.beta.kubernetes.io/aws-load-balancer-*) are read too,
// so that Services move over unchanged. providers/aws/annotations parses them all.
const (
	// AnnotationScheme: "internet-facing" (default) or "internal".
	AnnotationScheme = annotations.FairleadScheme
	// AnnotationTargetType: "instance" (default: NodePorts on the nodes) or "ip" (pod IPs; the
	// pods must be reachable from the VPC, as with the VPC CNI).
	AnnotationTargetType = annotations.FairleadTargetType
)

const (
	schemeInternetFacing = "internet-facing"
	schemeInternal       = "internal"
	targetInstance       = "instance"
	targetIP             = "ip"
	// healthCheckPath is what kube-proxy (and Fairlead's proxy) serve on healthCheckNodePort.
	healthCheckPath = "/healthz"
)

// nlbSpec is the desired state of a Service's NLB, computed from its description alone.
type nlbSpec struct {
	key, hash  string
	name       string // the load balancer's: the annotation's, or Fairlead's fl-<hash>
	scheme     string
	targetType string
	listeners  []listenerSpec // sorted by port
	// ingress are the security group rules: every listener port from every source range.
	ingress []ruleSpec
	// subnets asked for by annotation (IDs or Name tags), with an Elastic IP or a private
	// address each (by position); empty: the provider's own choice.
	subnets     []string
	allocations []string
	privateIPs  []netip.Addr
	// attributes are every load balancer attribute Fairlead manages: the annotation's values
	// over AWS' defaults, so an attribute dropped from the annotation goes back to its default.
	attributes map[string]string
	// tags are the Service's additional-resource-tags, on everything created for it.
	tags map[string]string
	// ipAddressType is the NLB's, "ipv4" or "dualstack"; ipv6Targets: ip targets are the
	// pods' IPv6 addresses (the Service's primary family is IPv6).
	ipAddressType string
	ipv6Targets   bool
	// securityGroups (IDs or Name tags) replace Fairlead's own group on the load balancer;
	// manageBackend: open the target ports in the nodes' group for the load balancer's.
	securityGroups []string
	manageBackend  bool
}

type listenerSpec struct {
	port     int32
	protocol string // TCP, UDP, TCP_UDP or TLS
	tls      *tlsSpec
	group    targetGroupSpec
}

type tlsSpec struct {
	certificates []string // the first is the default
	policy       string
	alpn         string
}

type targetGroupSpec struct {
	name       string
	protocol   string // TCP, UDP, TCP_UDP or TLS
	port       int32  // the targets' port: NodePort for instance targets
	health     healthSpec
	attributes map[string]string // as for nlbSpec.attributes
	ipv6       bool              // IPv6 targets (ip target type only)
	targets    []target
}

// healthSpec is a target group's health check; zero numbers are AWS' defaults.
type healthSpec struct {
	protocol  string // TCP, HTTP or HTTPS
	port      string // "traffic-port" or a number
	path      string // HTTP(S) only
	codes     string // HTTP(S) only
	interval  int32
	timeout   int32
	healthy   int32
	unhealthy int32
}

type target struct {
	id   string // instance ID or IP address
	port int32
}

type ruleSpec struct {
	protocol string // tcp or udp
	port     int32
	cidr     netip.Prefix
}

// desiredNLB validates the Service and computes its NLB. Errors are the Service's fault
// (providers.ReasonInvalidService) and name the offending field.
func desiredNLB(cluster string, svc *providers.Service) (*nlbSpec, error) {
	set, err := annotations.Parse(svc.Annotations)
	if err != nil {
		return nil, err
	}
	d := &nlbSpec{
		key: svc.Key(), hash: serviceHash(cluster, svc.Key()), scheme: set.Scheme, targetType: set.TargetType,
		subnets: set.Subnets, allocations: set.EIPAllocations, privateIPs: set.PrivateIPv4,
		attributes: overlay(annotations.LBAttributeDefaults(), set.LBAttributes), tags: set.Tags,
		ipAddressType: set.IPAddressType, name: cmp.Or(set.Name, loadBalancerName(serviceHash(cluster, svc.Key()))),
		securityGroups: set.SecurityGroups, manageBackend: set.ManageBackendRules,
	}
	if len(set.SecurityGroups) > 0 && len(svc.SourceRanges) > 0 {
		return nil, invalid("NLB mode: loadBalancerSourceRanges are enforced by Fairlead's own security group, which annotation %s%s replaces; put the ranges in those groups instead",
			annotations.Prefix, annotations.SecurityGroups)
	}
	if len(svc.Families) > 0 && svc.Families[0] == "IPv6" && set.TargetType == targetIP {
		// Pod targets of the Service's primary family: a target group holds one family.
		d.ipv6Targets = true
	}
	tlsPorts, err := selectTLSPorts(set.TLS, svc.Ports)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(svc.Families, "IPv4") && set.TargetType == targetInstance {
		return nil, invalid("NLB mode: instance targets reach NodePorts over the nodes' IPv4 addresses; an IPv6-only Service needs ip targets (annotation %s%s: ip)",
			annotations.Prefix, annotations.TargetType)
	}
	if slices.Contains(svc.Families, "IPv6") && d.ipAddressType != "dualstack" {
		return nil, invalid("NLB mode: the Service has the IPv6 family; its NLB must be dual-stack (annotation %s%s: dualstack)",
			annotations.Prefix, annotations.IPAddressType)
	}
	if len(svc.Ports) == 0 {
		return nil, invalid("NLB mode: the Service has no ports")
	}

	// One listener per port number. A port with both TCP and UDP becomes one TCP_UDP listener,
	// which AWS requires to forward to a single target port.
	byPort := map[int32][]providers.Port{}
	for _, p := range svc.Ports {
		byPort[p.Port] = append(byPort[p.Port], p)
	}
	for port, ps := range byPort {
		l, err := d.listener(svc, set, port, ps, tlsPorts[port])
		if err != nil {
			return nil, err
		}
		d.listeners = append(d.listeners, l)
	}
	slices.SortFunc(d.listeners, func(a, b listenerSpec) int { return int(a.port - b.port) })

	ranges := svc.SourceRanges
	if len(ranges) == 0 {
		ranges = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	for _, l := range d.listeners {
		if len(d.securityGroups) > 0 {
			// Fairlead's group is not on the load balancer: it opens nothing.
			break
		}
		for _, proto := range ipProtocols(l.protocol) {
			for _, r := range ranges {
				if !r.Addr().Is4() && d.ipAddressType != "dualstack" {
					// An ipv4 NLB: an IPv6 range could never match a client.
					continue
				}
				d.ingress = append(d.ingress, ruleSpec{protocol: proto, port: l.port, cidr: r.Masked()})
			}
		}
	}
	return d, nil
}

func (d *nlbSpec) listener(svc *providers.Service, set *annotations.Settings, port int32, ps []providers.Port, tls bool) (listenerSpec, error) {
	l := listenerSpec{port: port}
	var targetPort int32
	var endpoints []netip.AddrPort
	for i, p := range ps {
		if p.Protocol != "TCP" && p.Protocol != "UDP" {
			return l, invalid("NLB mode: port %d: protocol %q is not supported by Network Load Balancers (TCP and UDP are)", port, p.Protocol)
		}
		tp := p.NodePort
		if d.targetType == targetIP {
			tp = 0
			if len(p.Endpoints) > 0 {
				tp = int32(p.Endpoints[0].Port())
			}
		} else if tp == 0 {
			return l, invalid("NLB mode: port %d/%s has no nodePort; instance targets need NodePorts (allocateLoadBalancerNodePorts must not be false)", port, p.Protocol)
		}
		if i > 0 && tp != targetPort && tp != 0 && targetPort != 0 {
			return l, invalid("NLB mode: port %d is served over TCP and UDP on different target ports (%d, %d); an NLB forwards both to one port", port, targetPort, tp)
		}
		if tp != 0 {
			targetPort = tp
		}
		endpoints = append(endpoints, p.Endpoints...)
	}
	l.protocol = ps[0].Protocol
	if len(ps) > 1 {
		l.protocol = "TCP_UDP"
	}

	g := targetGroupSpec{protocol: l.protocol, port: targetPort}
	if tls {
		if l.protocol != "TCP" {
			return l, invalid("annotation %s: port %d is %s; only TCP ports can take TLS", annotations.Prefix+annotations.SSLPorts, port, l.protocol)
		}
		l.protocol = "TLS"
		l.tls = &tlsSpec{certificates: set.TLS.Certificates, policy: set.TLS.Policy, alpn: set.TLS.ALPN}
		if set.TLS.BackendTLS {
			g.protocol = "TLS"
		}
	}
	switch d.targetType {
	case targetInstance:
		for _, n := range svc.Nodes {
			if !labelsMatch(n.Labels, set.TargetNodeLabels) {
				continue
			}
			if n.ProviderID == "" {
				// Not initialized by the cloud controller manager yet: it joins once it is.
				continue
			}
			id, err := instanceID(n.ProviderID)
			if err != nil {
				return l, &providers.Error{Reason: providers.ReasonInvalidService, Err: fmt.Errorf("NLB mode: node %s: %w", n.Name, err)}
			}
			g.targets = append(g.targets, target{id: id, port: targetPort})
		}
	case targetIP:
		if targetPort == 0 {
			// No endpoint yet to learn the target port from: the group must exist for the
			// listener, and its port is only a default (each target carries its own).
			targetPort = 1
			g.port = 1
		}
		for _, ep := range endpoints {
			if ep.Addr().Is4() == d.ipv6Targets {
				continue
			}
			g.targets = append(g.targets, target{id: ep.Addr().String(), port: int32(ep.Port())})
		}
	}
	slices.SortFunc(g.targets, func(a, b target) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return int(a.port - b.port)
	})
	g.targets = slices.Compact(g.targets)
	g.health = health(svc, set, d.targetType)
	g.attributes = overlay(annotations.TGAttributeDefaults(), set.TGAttributes)
	if set.ProxyProtocol {
		g.attributes["proxy_protocol_v2.enabled"] = "true"
	}
	g.ipv6 = d.ipv6Targets
	g.name = targetGroupName(d.hash, g.protocol, g.port, d.targetType, g.ipv6)
	l.group = g
	return l, nil
}

// health is a target group's health check: the annotations' over the defaults. Under
// externalTrafficPolicy Local with instance targets the defaults are an HTTP check of
// healthCheckNodePort, where only nodes with a ready endpoint answer 200, so the NLB sends
// traffic only to them and the client's source address is kept; with ip targets the pods are
// checked themselves.
func health(svc *providers.Service, set *annotations.Settings, targetType string) healthSpec {
	a := set.Health
	h := healthSpec{protocol: "TCP", port: annotations.TrafficPort}
	if svc.LocalTraffic && svc.HealthCheckNodePort != 0 && targetType == targetInstance {
		h = healthSpec{protocol: "HTTP", port: fmt.Sprint(svc.HealthCheckNodePort), path: healthCheckPath}
	}
	if a.Protocol != "" && a.Protocol != h.protocol {
		h.protocol, h.path = a.Protocol, ""
	}
	if a.Port != "" {
		h.port = a.Port
	}
	if h.protocol != "TCP" {
		h.path = cmp.Or(a.Path, h.path, "/")
		h.codes = cmp.Or(a.SuccessCodes, "200-399")
	}
	h.interval = cmp.Or(a.Interval, healthInterval)
	h.timeout = a.Timeout
	h.healthy = cmp.Or(a.Healthy, healthThreshold)
	h.unhealthy = cmp.Or(a.Unhealthy, healthThreshold)
	return h
}

// selectTLSPorts returns the Service ports (by number) that get TLS listeners.
func selectTLSPorts(t *annotations.TLS, ports []providers.Port) (map[int32]bool, error) {
	out := map[int32]bool{}
	if t == nil {
		return out, nil
	}
	if len(t.Ports) == 0 {
		for _, p := range ports {
			out[p.Port] = p.Protocol == "TCP"
		}
		// A port served over both TCP and UDP stays plain: TLS cannot carry its UDP half.
		for _, p := range ports {
			if p.Protocol != "TCP" {
				out[p.Port] = false
			}
		}
		return out, nil
	}
	for _, want := range t.Ports {
		found := false
		for _, p := range ports {
			if p.Name == want || fmt.Sprint(p.Port) == want {
				out[p.Port], found = true, true
			}
		}
		if !found {
			return nil, invalid("annotation %s: %q is neither the name nor the number of a port of the Service", annotations.Prefix+annotations.SSLPorts, want)
		}
	}
	return out, nil
}

// labelsMatch: every key of want is on the node, with its value unless that is empty.
func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		got, ok := have[k]
		if !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

// ipProtocols are the IP protocols (as security groups name them) an NLB protocol uses.
func ipProtocols(p string) []string {
	switch p {
	case "TCP_UDP":
		return []string{"tcp", "udp"}
	case "UDP":
		return []string{"udp"}
	}
	return []string{"tcp"} // TCP, TLS
}

func overlay(base, over map[string]string) map[string]string {
	maps.Copy(base, over)
	return base
}

// instanceID takes the instance ID from a node's providerID, "aws:///<zone>/<instance-id>"
// (the form the AWS cloud provider and EKS set) or "aws:///<instance-id>".
func instanceID(providerID string) (string, error) {
	rest, ok := strings.CutPrefix(providerID, "aws://")
	if !ok {
		return "", fmt.Errorf("providerID %q is not an AWS one (aws:///<zone>/<instance-id>)", providerID)
	}
	id := rest[strings.LastIndex(rest, "/")+1:]
	if !strings.HasPrefix(id, "i-") {
		return "", fmt.Errorf("providerID %q does not end in an instance ID", providerID)
	}
	return id, nil
}

func invalid(format string, args ...any) error {
	return providers.Errorf(providers.ReasonInvalidService, format, args...)
}

// UsesEndpoints reports whether a Service with these annotations sends traffic to pod IPs (ip
// targets): only then do its endpoints, not just its nodes, shape the load balancer.
func UsesEndpoints(ann map[string]string) bool {
	set, err := annotations.Parse(ann)
	return err == nil && set.TargetType == targetIP
}

// InstanceID returns the EC2 instance ID in a node's spec.providerID.
func InstanceID(providerID string) (string, error) { return instanceID(providerID) }
