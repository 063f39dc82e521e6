// Package election decides which nodes may announce a Service's external addresses and, for
// layer 2, which single node answers for each address. It is pure: the caller turns Nodes,
// EndpointSlices, advertisement selectors and the failure detector's view into the plain values
// here, and every speaker that sees the same inputs reaches the same answer without talking to
// the others.
//
// Owners are chosen by rendezvous (highest random weight) hashing: each candidate node gets a
// score hash(node, key) and the highest score wins. Addresses spread evenly across nodes, and
// when a node comes or goes only the addresses it wins (or won) move; the rest stay where they
// are, so a failure does not reshuffle every client's neighbour cache.
package election

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// ExcludeLabel is the well-known label that keeps a node out of every external load balancer.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Node is what election needs to know about a Kubernetes Node.
type Node struct {
	Name   string
	Labels map[string]string
	// Ready is the Node's Ready condition as describe.NodeReady reads it (Unknown after a
	// control-plane outage does not unready a node).
	Ready bool
}

// Service is what election needs to know about a Service.
type Service struct {
	// LocalOnly is externalTrafficPolicy: Local: only nodes that host a ready endpoint may
	// attract traffic, since the node will not forward it elsewhere.
	LocalOnly bool
	// EndpointNodes are the nodes hosting at least one ready endpoint of the Service. Only
	// read when LocalOnly is set.
	EndpointNodes map[string]bool
}

// Filter holds the per-caller parts of eligibility.
type Filter struct {
	// Selects reports whether an advertisement's node selectors pick the node; nil picks all.
	Selects func(Node) bool
	// Alive reports whether the failure detector currently sees the node's speaker; nil treats
	// every node as alive (BGP, where each node only speaks for itself, needs no detector).
	Alive func(name string) bool
}

// Reason says why a node may not announce a Service; the empty Reason means it may.
type Reason string

// Reasons a node is not eligible, in the order they are checked.
const (
	Eligible        Reason = ""
	NotReady        Reason = "NodeNotReady"
	Excluded        Reason = "ExcludedByLabel"
	NotSelected     Reason = "NotSelectedByAdvertisement"
	NoLocalEndpoint Reason = "NoReadyLocalEndpoint"
	NotAlive        Reason = "SpeakerNotAlive"
)

// Check returns why n may not announce svc, or Eligible.
func Check(n Node, svc Service, f Filter) Reason {
	switch {
	case !n.Ready:
		return NotReady
	case hasLabel(n.Labels, ExcludeLabel):
		return Excluded
	case f.Selects != nil && !f.Selects(n):
		return NotSelected
	case svc.LocalOnly && !svc.EndpointNodes[n.Name]:
		return NoLocalEndpoint
	case f.Alive != nil && !f.Alive(n.Name):
		return NotAlive
	}
	return Eligible
}

func hasLabel(labels map[string]string, key string) bool {
	_, ok := labels[key]
	return ok
}

// EligibleNodes returns the names of the nodes that may announce svc, sorted. This is also the
// answer to "which nodes advertise this Service" for BGP.
func EligibleNodes(nodes []Node, svc Service, f Filter) []string {
	var out []string
	for _, n := range nodes {
		if Check(n, svc, f) == Eligible {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Eligibility is EligibleNodes computed once for every Service sharing a filter (a pool's
// advertisements and the live set), so that a plan over many Services costs the Services plus
// the nodes instead of their product: the node-wide checks run once, and a Local Service only
// looks at the nodes hosting its endpoints.
type Eligibility struct {
	all []string
	set map[string]bool
}

// NewEligibility applies every check but the Service's own to nodes.
func NewEligibility(nodes []Node, f Filter) *Eligibility {
	e := &Eligibility{all: EligibleNodes(nodes, Service{}, f), set: map[string]bool{}}
	for _, n := range e.all {
		e.set[n] = true
	}
	return e
}

// For returns what EligibleNodes(nodes, svc, f) would, sorted. The result may be shared
// between Services: callers must not modify it.
func (e *Eligibility) For(svc Service) []string {
	if !svc.LocalOnly {
		return e.all
	}
	var out []string
	for n, ok := range svc.EndpointNodes {
		if ok && e.set[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Owner returns the candidate that announces key (for layer 2: the external IP in its
// canonical text form), or false when there is no candidate.
func Owner(key string, candidates []string) (string, bool) {
	var best string
	var bestScore uint64
	found := false
	for _, c := range candidates {
		s := score(c, key)
		if !found || s > bestScore || (s == bestScore && c < best) {
			best, bestScore, found = c, s, true
		}
	}
	return best, found
}

// Rank returns the candidates in the order they would take key over: the owner first, then
// the node that takes over when the owner fails, and so on.
func Rank(key string, candidates []string) []string {
	out := slices.Clone(candidates)
	slices.SortFunc(out, func(a, b string) int {
		sa, sb := score(a, key), score(b, key)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		if a < b {
			return -1
		} else if a > b {
			return 1
		}
		return 0
	})
	return slices.Compact(out)
}

// score is the rendezvous weight of node for key. A cryptographic hash is overkill for
// security but gives uniform scores for inputs as alike as "node1"/"node2" and
// "198.51.100.1"/"198.51.100.2", where simple hashes such as FNV cluster; the cost is
// negligible next to one API event.
func score(node, key string) uint64 {
	h := sha256.New()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}
