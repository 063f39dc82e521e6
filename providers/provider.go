// Package providers defines what the Service reconciler asks of a source of external addresses:
// the local pools (providers/pool behind providers/ipam), AWS (providers/aws) or anything a
// cloud-controller-manager adapter wraps. It has no Kubernetes imports: the reconciler translates
// a Service, its Nodes and its EndpointSlices into a Service description, and writes the Ingress
// it gets back into status.loadBalancer.
package providers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// Provider gives Services their external addresses or load balancers.
//
// Implementations keep no state a restart would lose: everything they create is tagged (or
// otherwise recorded) so that a fresh instance finds it again. Every method is idempotent and
// safe to call concurrently for different Services.
type Provider interface {
	// Ensure converges the provider's resources for the Service to its description (creating,
	// updating or adopting what a previous instance left) and returns where clients reach it.
	// On error, what exists stays recorded so that the next Ensure or Release finds it.
	Ensure(ctx context.Context, svc *Service) (Ingress, error)
	// Release removes everything held for the Service with this key ("namespace/name"). It
	// returns nil when nothing is left, including when nothing existed.
	Release(ctx context.Context, key string) error
	// Owned lists the keys of every Service the provider holds resources for, found from the
	// provider's own records (cloud tags). The reconciler releases those whose Service is gone
	// or no longer ours, e.g. deleted while the controller was down.
	Owned(ctx context.Context) ([]string, error)
}

// Service is what a provider needs to know about a LoadBalancer Service.
type Service struct {
	Namespace, Name string
	// UID changes when a Service is deleted and recreated under the same name.
	UID string
	// Annotations and Labels carry provider-specific knobs (e.g. an NLB's scheme, a pool name).
	Annotations, Labels map[string]string
	NamespaceLabels     map[string]string
	// Families are the Service's IP families, primary first: "IPv4", "IPv6".
	Families []string
	// PreferDualStack: the second family is best effort (ipFamilyPolicy PreferDualStack).
	PreferDualStack bool
	// LoadBalancerIP is spec.loadBalancerIP, an address asked for (deprecated, still honoured
	// by the providers that hand out addresses).
	LoadBalancerIP string
	// Selector is spec.selector: under local traffic, two Services share an address only when
	// the same pods answer for both.
	Selector map[string]string
	Ports    []Port
	// SourceRanges restricts the clients (spec.loadBalancerSourceRanges); empty means any.
	SourceRanges []netip.Prefix
	// LocalTraffic is externalTrafficPolicy: Local; HealthCheckNodePort then tells which
	// nodes have ready endpoints.
	LocalTraffic        bool
	HealthCheckNodePort int32
	// Nodes may receive the Service's traffic (Ready, not excluded from load balancers).
	Nodes []Node
	// StatusIPs are the addresses status.loadBalancer shows: what clients were told. A provider
	// that finds more than one resource for the Service keeps the one clients already use.
	StatusIPs []netip.Addr
}

// Key is "namespace/name", the name providers record the Service under.
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// Port is one of the Service's ports.
type Port struct {
	Name     string
	Protocol string // "TCP", "UDP" or "SCTP"
	Port     int32
	NodePort int32
	// Endpoints are the ready pods' addresses and the port they serve this Service port on,
	// for providers that send traffic to pods directly.
	Endpoints []netip.AddrPort
}

// Node is a node that may receive traffic.
type Node struct {
	Name string
	// ProviderID is spec.providerID, e.g. "aws:///us-east-1a/i-0123456789abcdef0".
	ProviderID string
	// Addresses are the node's internal addresses.
	Addresses []netip.Addr
	// Labels are the node's labels, for providers that let a Service choose its nodes.
	Labels map[string]string
}

// Equal reports whether n and o are the same node to a provider. (netip.Addr's unexported
// fields make reflection-based comparisons, such as equality.Semantic.DeepEqual, panic.)
func (n Node) Equal(o Node) bool {
	return n.Name == o.Name && n.ProviderID == o.ProviderID && slices.Equal(n.Addresses, o.Addresses) && maps.Equal(n.Labels, o.Labels)
}

// Ingress is where clients reach a Service: addresses, a DNS name, or both.
type Ingress struct {
	IPs      []netip.Addr
	Hostname string
	// Warnings describe input that was used although it looks wrong (two annotations for one
	// setting that disagree); the reconciler reports each as an Event.
	Warnings []string
}

// Reasons for a failed Ensure or Release; the reconciler reports them in conditions and
// Events.
const (
	// ReasonInvalidService: the Service asks for something the provider cannot do; retrying
	// without a change to the Service will not help.
	ReasonInvalidService = "InvalidService"
	// ReasonPermissionDenied: the provider's credentials may not do what it needs.
	ReasonPermissionDenied = "PermissionDenied"
	// ReasonMisconfigured: the provider's own configuration (or the cloud's setup) is
	// missing something; retried, since an operator fixes it outside the Service.
	ReasonMisconfigured = "Misconfigured"
	// ReasonConflict: a resource the provider would create exists and belongs to someone else.
	ReasonConflict = "Conflict"
	// ReasonExhausted: no address is left to give.
	ReasonExhausted = "Exhausted"
	// ReasonCloudError: anything else the cloud answered; retried.
	ReasonCloudError = "CloudError"
)

// Error is a provider failure with the reason to report.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given reason.
func Errorf(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the reason of err: an *Error's, or ReasonCloudError.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonCloudError
}
