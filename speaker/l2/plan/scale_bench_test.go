package plan

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// BenchmarkComputeScale is one plan over the cluster test/bench/scale builds: n Local Services
// with an address each, n/100 Nodes, an EndpointSlice per Service with 3 endpoints on 3
// consecutive Nodes, only node-000 alive. With rebuild, each iteration is one snapshot Build
// and one Compute, the speaker's CPU per informer event; without, Compute alone from the
// snapshot the source keeps, the speaker's CPU every 5 s at idle.
func BenchmarkComputeScale(b *testing.B) {
	for _, rebuild := range []bool{false, true} {
		b.Run(fmt.Sprintf("rebuild=%t", rebuild), func(b *testing.B) { benchmarkComputeScale(b, rebuild) })
	}
}

func benchmarkComputeScale(b *testing.B, rebuild bool) {
	for _, n := range []int{500, 5000, 50000} {
		b.Run(fmt.Sprintf("services=%d,nodes=%d", n, n/100), func(b *testing.B) {
			nodes := n / 100
			in := snapshot.Input{
				Pools:            []*v1alpha1.IPPool{ippool("scale", nil, "2001:db8:5ca1::/112")},
				L2Advertisements: []*v1alpha1.L2Advertisement{ad("scale", v1alpha1.L2AdvertisementSpec{IPPools: []string{"scale"}})},
				DefaultClass:     true,
			}
			alive := func(name string) bool { return name == "node-000" }
			for i := range nodes {
				in.Nodes = append(in.Nodes, node(fmt.Sprintf("node-%03d", i), true, nil))
			}
			for i := range n {
				name := fmt.Sprintf("svc-%05d", i)
				in.Services = append(in.Services, service(name, true, fmt.Sprintf("2001:db8:5ca1::%x", i+1)))
				eps := map[string]bool{}
				for j := range 3 {
					eps[fmt.Sprintf("node-%03d", (3*i+j)%nodes)] = true
				}
				in.EndpointSlices = append(in.EndpointSlices, slice(name, discoveryv1.AddressTypeIPv6, eps))
			}
			var owned int
			snap := snapshot.Build(in)
			for b.Loop() {
				if rebuild {
					snap = snapshot.Build(in)
				}
				as, problems := Compute(Input{Snapshot: snap, Alive: alive})
				if len(as) != n || len(problems) > 0 {
					b.Fatalf("%d announcements, problems %v", len(as), problems)
				}
				owned = 0
				for _, a := range as {
					if a.Owner == "node-000" {
						owned++
					}
				}
			}
			b.ReportMetric(float64(owned), "owned")
		})
	}
}
