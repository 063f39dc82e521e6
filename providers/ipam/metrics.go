package ipam

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics exported by the controller, next to controller-runtime's own.
var (
	PoolAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fairlead_pool_addresses",
		Help: "Addresses of a pool by family and state (total, used, free).",
	}, []string{"pool", "family", "state"})
	AllocationFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fairlead_allocation_failures_total",
		Help: "Allocation attempts that left a Service without the addresses it asked for, by reason.",
	}, []string{"reason"})
	Allocations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fairlead_allocations_total",
		Help: "Addresses given to Services.",
	})
	Releases = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fairlead_releases_total",
		Help: "Addresses released by Services.",
	})
	PendingServices = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fairlead_services_pending",
		Help: "LoadBalancer Services waiting for an address.",
	})
)

func init() {
	metrics.Registry.MustRegister(PoolAddresses, AllocationFailures, Allocations, Releases, PendingServices)
	// Every reason is served from the start, at 0: a counter that first appears at 1 is
	// invisible to increase() and rate(), so the first failure would never alert.
	for _, r := range []string{ReasonInvalidRequest, ReasonNoEligiblePool, ReasonPoolExhausted, ReasonIPUnavailable} {
		AllocationFailures.WithLabelValues(r)
	}
}
