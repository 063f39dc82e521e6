package bgp

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// The speaker reads Community objects: BGPAdvertisements name their aliases.
//
// +kubebuilder:rbac:groups=fairlead.dev,resources=communities,verbs=list;watch

// communityValue is what one alias stands for: a standard or a large community.
type communityValue struct {
	std      uint32
	large    *LargeCommunity
	conflict string // set when Community objects disagree: the alias cannot be used
}

// aliasSet maps alias names to their values.
type aliasSet map[string]communityValue

// compileAliases collects the aliases of every Community object. An alias that two objects
// define differently is left out (an advertisement using it is then invalid) and reported on
// both; a value that does not parse is reported on its object.
func compileAliases(objs []*v1alpha1.Community) (aliasSet, []Problem) {
	objs = slices.Clone(objs)
	slices.SortFunc(objs, func(a, b *v1alpha1.Community) int { return cmp.Compare(a.Name, b.Name) })
	set := aliasSet{}
	definedBy := map[string]string{}
	conflicted := map[string]bool{}
	var problems []Problem
	for _, o := range objs {
		for _, a := range o.Spec.Communities {
			if _, wk := wellKnownCommunities[a.Name]; wk {
				problems = append(problems, Problem{"Community", o.Name, "InvalidCommunity", fmt.Sprintf("alias %q is a well-known community name", a.Name)})
				continue
			}
			v, err := parseCommunityValue(a.Value)
			if err != nil {
				problems = append(problems, Problem{"Community", o.Name, "InvalidCommunity", fmt.Sprintf("alias %q: %v", a.Name, err)})
				continue
			}
			if old, ok := set[a.Name]; ok {
				if !conflicted[a.Name] && equalValue(old, v) {
					continue
				}
				msg := fmt.Sprintf("alias %q is defined differently by Communities %q and %q", a.Name, definedBy[a.Name], o.Name)
				problems = append(problems, Problem{"Community", o.Name, "ConflictingAlias", msg})
				if !conflicted[a.Name] {
					problems = append(problems, Problem{"Community", definedBy[a.Name], "ConflictingAlias", msg})
				}
				set[a.Name] = communityValue{conflict: msg}
				conflicted[a.Name] = true
				continue
			}
			set[a.Name], definedBy[a.Name] = v, o.Name
		}
	}
	return set, problems
}

func equalValue(a, b communityValue) bool {
	if (a.large == nil) != (b.large == nil) {
		return false
	}
	return a.std == b.std && (a.large == nil || *a.large == *b.large)
}

// parseCommunityValue parses "ASN:VALUE" or "large:GLOBAL:LOCAL1:LOCAL2".
func parseCommunityValue(s string) (communityValue, error) {
	if rest, ok := strings.CutPrefix(s, "large:"); ok {
		l, err := parseLargeCommunities([]string{rest})
		if err != nil {
			return communityValue{}, err
		}
		return communityValue{large: &l[0]}, nil
	}
	if _, wk := wellKnownCommunities[s]; wk {
		return communityValue{}, fmt.Errorf("community %q: want ASN:VALUE or large:GLOBAL:LOCAL1:LOCAL2", s)
	}
	c, err := parseCommunities([]string{s})
	if err != nil {
		return communityValue{}, err
	}
	return communityValue{std: c[0]}, nil
}

// parse resolves a BGPAdvertisement's communities: numbers, well-known names, "large:..."
// values and aliases.
func (a aliasSet) parse(ss []string) ([]uint32, []LargeCommunity, error) {
	var std []string
	var large []LargeCommunity
	var aliased []uint32
	for _, s := range ss {
		switch _, wk := wellKnownCommunities[s]; {
		case wk || (s != "" && s[0] >= '0' && s[0] <= '9'):
			std = append(std, s)
		case strings.HasPrefix(s, "large:"):
			v, err := parseCommunityValue(s)
			if err != nil {
				return nil, nil, err
			}
			large = append(large, *v.large)
		default:
			v, ok := a[s]
			if !ok {
				return nil, nil, fmt.Errorf("community %q: no Community object defines this alias (known: %s)", s, knownAliases(a))
			}
			if v.conflict != "" {
				return nil, nil, fmt.Errorf("community %q: %s", s, v.conflict)
			}
			if v.large != nil {
				large = append(large, *v.large)
			} else {
				aliased = append(aliased, v.std)
			}
		}
	}
	nums, err := parseCommunities(std)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(large, compareLarge)
	return mergeSorted(nums, aliased, cmp.Compare[uint32]), slices.Compact(large), nil
}

func knownAliases(a aliasSet) string {
	var names []string
	for n, v := range a {
		if v.conflict == "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func poolSelectors(in []metav1.LabelSelector) ([]labels.Selector, error) {
	out := make([]labels.Selector, 0, len(in))
	for i := range in {
		s, err := metav1.LabelSelectorAsSelector(&in[i])
		if err != nil {
			return nil, fmt.Errorf("ipPoolSelectors[%d]: %v", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// selectsPool: named in ipPools, matched by an ipPoolSelector, or every pool when the
// advertisement has neither (as for L2Advertisements).
func selectsPool(names []string, sels []labels.Selector, pool string, poolLabels labels.Set) bool {
	if len(names) == 0 && len(sels) == 0 {
		return true
	}
	if slices.Contains(names, pool) {
		return true
	}
	for _, s := range sels {
		if s.Matches(poolLabels) {
			return true
		}
	}
	return false
}
