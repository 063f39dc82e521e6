package aws

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/fairlead-lb/fairlead/providers"
)

// Service annotations the NLB mode reads. The names of the AWS cloud provider and the AWS Load
// Balancer Controller are accepted too, so that Services move over unchanged.
const (
	// AnnotationScheme: "internet-facing" (default) or "internal".
	AnnotationScheme = "fairlead.dev/aws-nlb-scheme"
	// AnnotationTargetType: "instance" (default: NodePorts on the nodes) or "ip" (pod IPs; the
	// pods must be reachable from the VPC, as with the VPC CNI).
	AnnotationTargetType = "fairlead.dev/aws-nlb-target-type"

	awsAnnotationScheme     = "service.beta.kubernetes.io/aws-load-balancer-scheme"
	awsAnnotationInternal   = "service.beta.kubernetes.io/aws-load-balancer-internal"
	awsAnnotationTargetType = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"
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
	scheme     string
	targetType string
	listeners  []listenerSpec // sorted by port
	// ingress are the security group rules: every listener port from every source range.
	ingress []ruleSpec
}

type listenerSpec struct {
	port     int32
	protocol string // TCP, UDP or TCP_UDP
	group    targetGroupSpec
}

type targetGroupSpec struct {
	name     string
	protocol string
	port     int32 // the targets' port: NodePort for instance targets
	health   healthSpec
	targets  []target
}

type healthSpec struct {
	protocol string // TCP or HTTP
	port     string // "traffic-port" or a number
	path     string // HTTP only
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
	d := &nlbSpec{key: svc.Key(), hash: serviceHash(cluster, svc.Key())}
	var err error
	if d.scheme, err = scheme(svc.Annotations); err != nil {
		return nil, err
	}
	if d.targetType, err = targetType(svc.Annotations); err != nil {
		return nil, err
	}
	for _, f := range svc.Families {
		if f != "IPv4" {
			return nil, invalid("NLB mode: IP family %s is not supported yet (the NLB is created ipv4-only)", f)
		}
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
		l, err := d.listener(svc, port, ps)
		if err != nil {
			return nil, err
		}
		d.listeners = append(d.listeners, l)
	}
	slices.SortFunc(d.listeners, func(a, b listenerSpec) int { return int(a.port - b.port) })

	ranges := svc.SourceRanges
	if len(ranges) == 0 {
		ranges = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	}
	for _, l := range d.listeners {
		protos := []string{strings.ToLower(l.protocol)}
		if l.protocol == "TCP_UDP" {
			protos = []string{"tcp", "udp"}
		}
		for _, proto := range protos {
			for _, r := range ranges {
				if !r.Addr().Is4() {
					// The NLB is ipv4-only: an IPv6 range could never match a client.
					continue
				}
				d.ingress = append(d.ingress, ruleSpec{protocol: proto, port: l.port, cidr: r.Masked()})
			}
		}
	}
	return d, nil
}

func (d *nlbSpec) listener(svc *providers.Service, port int32, ps []providers.Port) (listenerSpec, error) {
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

	g := targetGroupSpec{protocol: l.protocol, port: targetPort, health: healthSpec{protocol: "TCP", port: "traffic-port"}}
	switch d.targetType {
	case targetInstance:
		for _, n := range svc.Nodes {
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
		if svc.LocalTraffic && svc.HealthCheckNodePort != 0 {
			// Only nodes with a ready endpoint answer 200 there, so the NLB sends traffic only
			// to them and the client's source address is kept.
			g.health = healthSpec{protocol: "HTTP", port: fmt.Sprint(svc.HealthCheckNodePort), path: healthCheckPath}
		}
	case targetIP:
		if targetPort == 0 {
			// No endpoint yet to learn the target port from: the group must exist for the
			// listener, and its port is only a default (each target carries its own).
			targetPort = 1
			g.port = 1
		}
		for _, ep := range endpoints {
			if !ep.Addr().Is4() {
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
	g.name = targetGroupName(d.hash, g.protocol, g.port, d.targetType)
	l.group = g
	return l, nil
}

func scheme(ann map[string]string) (string, error) {
	if v, ok := ann[AnnotationScheme]; ok {
		return checkScheme(AnnotationScheme, v)
	}
	if v, ok := ann[awsAnnotationScheme]; ok {
		return checkScheme(awsAnnotationScheme, v)
	}
	if v, ok := ann[awsAnnotationInternal]; ok {
		switch strings.TrimSpace(strings.ToLower(v)) {
		case "true":
			return schemeInternal, nil
		case "false":
			return schemeInternetFacing, nil
		}
		return "", invalid("annotation %s: %q is neither true nor false", awsAnnotationInternal, v)
	}
	return schemeInternetFacing, nil
}

func checkScheme(name, v string) (string, error) {
	v = strings.TrimSpace(v)
	if v != schemeInternetFacing && v != schemeInternal {
		return "", invalid("annotation %s: %q is neither %q nor %q", name, v, schemeInternetFacing, schemeInternal)
	}
	return v, nil
}

func targetType(ann map[string]string) (string, error) {
	for _, name := range []string{AnnotationTargetType, awsAnnotationTargetType} {
		if v, ok := ann[name]; ok {
			v = strings.TrimSpace(v)
			if v != targetInstance && v != targetIP {
				return "", invalid("annotation %s: %q is neither %q nor %q", name, v, targetInstance, targetIP)
			}
			return v, nil
		}
	}
	return targetInstance, nil
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
func UsesEndpoints(annotations map[string]string) bool {
	t, err := targetType(annotations)
	return err == nil && t == targetIP
}

// InstanceID returns the EC2 instance ID in a node's spec.providerID.
func InstanceID(providerID string) (string, error) { return instanceID(providerID) }
