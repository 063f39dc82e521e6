package ipam

import (
	"context"

	"github.com/fairlead-lb/fairlead/providers"
)

// Pools is the local pools as a providers.Provider, beside the Elastic IPs and the NLB: the
// Service reconciler asks it for addresses the way it asks them. What only the local pools
// know (each address's pool and ipMode, the addresses a pool no longer covers) stays with the
// State it wraps.
//
// Its records are the Services' status: the State is rebuilt from them (LoadFromAPI) before
// any Ensure or Release, so nothing outlives a Service the way a cloud resource can.
type Pools struct{ State *State }

var _ providers.Provider = Pools{}

// Ensure gives the Service the addresses its description asks for. On failure the Ingress
// holds what the Service keeps, and the error is an *Error whose reason names the condition.
func (p Pools) Ensure(_ context.Context, d *providers.Service) (providers.Ingress, error) {
	r, err := RequestOf(d)
	if err != nil {
		// Bad input on the Service: nothing is allocated or released; it keeps what it holds.
		return providers.Ingress{IPs: p.State.Held(d.Key()), Warnings: r.Warnings},
			&Error{Reason: ReasonInvalidRequest, Message: err.Error()}
	}
	ips, err := p.State.Ensure(r)
	return providers.Ingress{IPs: ips, Warnings: r.Warnings}, err
}

// Release frees every address the Service holds.
func (p Pools) Release(_ context.Context, key string) error {
	p.State.Release(key)
	return nil
}

// Owned lists the Services holding addresses.
func (p Pools) Owned(context.Context) ([]string, error) {
	return p.State.alloc.Keys(), nil
}
