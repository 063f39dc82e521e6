package v1alpha1

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// L2Advertisement condition types and reasons, written by the controller.
const (
	// ConditionAccepted: the spec is valid. When False, speakers ignore the whole object.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs: every pool the object names exists and at least one is selected.
	// When False the object is still used for the pools that do exist.
	ConditionResolvedRefs = "ResolvedRefs"

	ReasonAccepted       = "Accepted"
	ReasonInvalid        = "Invalid"
	ReasonResolved       = "Resolved"
	ReasonPoolNotFound   = "PoolNotFound"
	ReasonNoPoolSelected = "NoPoolSelected"
)

// CompiledL2Advertisement is an L2Advertisement whose selectors have been parsed.
//
// +kubebuilder:object:generate=false
type CompiledL2Advertisement struct {
	Object *L2Advertisement
	Pools  []labels.Selector
	Nodes  []labels.Selector
}

// Compile validates the advertisement beyond what the apiserver checks (label keys and
// values, selector operators, interface and pool names, for objects stored before the CRD's
// rules existed too) and parses its selectors. Controller and speakers call the same
// function, so an object the controller marks not Accepted is exactly one the speakers ignore.
func (a *L2Advertisement) Compile() (*CompiledL2Advertisement, error) {
	c := &CompiledL2Advertisement{Object: a}
	var errs []error
	var err error
	if c.Pools, err = selectors("ipPoolSelectors", a.Spec.IPPoolSelectors); err != nil {
		errs = append(errs, err)
	}
	if c.Nodes, err = selectors("nodeSelectors", a.Spec.NodeSelectors); err != nil {
		errs = append(errs, err)
	}
	for _, p := range a.Spec.IPPools {
		if msgs := validation.IsDNS1123Subdomain(p); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("ipPools: %q is not a pool name: %s", p, strings.Join(msgs, "; ")))
		}
	}
	for _, i := range a.Spec.Interfaces {
		if err := InterfaceName(i); err != nil {
			errs = append(errs, fmt.Errorf("interfaces: %w", err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func selectors(field string, in []metav1.LabelSelector) ([]labels.Selector, error) {
	out := make([]labels.Selector, 0, len(in))
	for i := range in {
		s, err := metav1.LabelSelectorAsSelector(&in[i])
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// anyMatches leaves "no selector" to the caller: for pools it means "all" only when no pool is
// named either.
func anyMatches(sels []labels.Selector, l map[string]string) bool {
	set := labels.Set(l)
	for _, s := range sels {
		if s.Matches(set) {
			return true
		}
	}
	return false
}

// InterfaceName applies the kernel's rules for a network interface name (dev_valid_name).
func InterfaceName(s string) error {
	switch {
	case s == "":
		return errors.New("empty interface name")
	case len(s) > 15:
		return fmt.Errorf("%q is longer than 15 characters", s)
	case s == "." || s == "..":
		return fmt.Errorf("%q is not an interface name", s)
	case strings.ContainsAny(s, "/:") || strings.ContainsFunc(s, unicode.IsSpace):
		return fmt.Errorf("%q contains '/', ':' or a space", s)
	}
	return nil
}

// SelectsPool reports whether the advertisement covers the pool: named in ipPools, matched by
// an ipPoolSelector, or every pool when neither is given.
func (c *CompiledL2Advertisement) SelectsPool(p *IPPool) bool {
	if len(c.Object.Spec.IPPools) == 0 && len(c.Pools) == 0 {
		return true
	}
	return slices.Contains(c.Object.Spec.IPPools, p.Name) || anyMatches(c.Pools, p.Labels)
}

// SelectsNode reports whether a node with these labels may answer: any selector matching, or
// every node when there is none.
func (c *CompiledL2Advertisement) SelectsNode(l map[string]string) bool {
	return len(c.Nodes) == 0 || anyMatches(c.Nodes, l)
}
