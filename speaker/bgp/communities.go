package bgp

import (
	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// The speaker reads Community objects: BGPAdvertisements name their aliases.
//
// +kubebuilder:rbac:groups=fairlead.dev,resources=communities,verbs=list;watch

// LargeCommunity is an RFC 8092 community.
type LargeCommunity = v1alpha1.LargeCommunity

// compileAdvertisements compiles the advertisements with v1alpha1's Compile, the one the
// controller reports as their Accepted condition, against the Community objects' aliases and
// the pools (an aggregation wider than a selected pool's prefix is refused).
// An advertisement that does not compile is left out whole (never guessed at) and is a
// Problem; so are Community objects whose aliases cannot be used.
func compileAdvertisements(advs []*v1alpha1.BGPAdvertisement, comms []*v1alpha1.Community, pools []*v1alpha1.IPPool) ([]*v1alpha1.CompiledBGPAdvertisement, []Problem) {
	aliases, cps := v1alpha1.CompileCommunities(comms)
	var problems []Problem
	for _, p := range cps {
		problems = append(problems, Problem{"Community", p.Community, p.Reason, p.Message})
	}
	var out []*v1alpha1.CompiledBGPAdvertisement
	for _, a := range advs {
		c, err := a.Compile(aliases, pools)
		if err != nil {
			problems = append(problems, Problem{"BGPAdvertisement", a.Name, "InvalidAdvertisement", err.Error()})
			continue
		}
		out = append(out, c)
	}
	return out, problems
}
