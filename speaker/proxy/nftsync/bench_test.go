package nftsync

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/fairlead-lb/fairlead/speaker/proxy/model"
	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
)

// bulk renders n ClusterIP ServicePorts with 5 endpoints each, as in the proxy benchmark.
func bulk(n int) map[string]*rules.Service {
	out := map[string]*rules.Service{}
	cfg := rules.Config{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/9")}}
	for i := range n {
		sp := &model.ServicePort{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i), PortName: "http",
			Protocol: corev1.ProtocolTCP, Family: model.IPv4, Port: 80,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})}}
		for k := range 5 {
			a := uint32(10)<<24 | uint32(128)<<16 + uint32(i*6+k)
			sp.ClusterEndpoints = append(sp.ClusterEndpoints, model.Endpoint{
				Addr: netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), Port: 8080})
		}
		out[sp.Key()] = rules.Render(sp, cfg)
	}
	return out
}

// BenchmarkSync10k times a full sync of 10k ServicePorts into an empty table, then partial
// syncs of one changed ServicePort, against the kernel (in a namespace of its own).
func BenchmarkSync10k(b *testing.B) {
	ctx := context.Background()
	desired := bulk(10000)
	for range b.N {
		run, _ := inNS(b)
		var full time.Duration
		run(func(s *Syncer) error {
			start := time.Now()
			_, err := s.Full(ctx, desired)
			full = time.Since(start)
			return err
		})
		b.ReportMetric(full.Seconds(), "full-s")
		var partial time.Duration
		const rounds = 10
		for i := range rounds {
			one := bulk(1)
			for k, v := range one {
				_ = k
				// A different endpoint each round.
				v.Elements[1].Value = fmt.Sprintf("10.200.0.%d . 8080", i+1)
				run(func(s *Syncer) error {
					start := time.Now()
					_, err := s.Partial(ctx, map[string]*rules.Service{k: v})
					partial += time.Since(start)
					return err
				})
			}
		}
		b.ReportMetric(partial.Seconds()*1000/rounds, "partial-ms")
	}
}
