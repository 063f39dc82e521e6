package proxy

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	rules    prometheus.Gauge
	elements prometheus.Gauge
	invalid  prometheus.Counter
	lastSync prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fairlead_proxy_sync_duration_seconds",
			Help: "Time to program nftables, by kind of sync (full or partial).",
			// From a one-Service partial sync (milliseconds) to a full sync of tens of
			// thousands of Services (seconds).
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fairlead_proxy_sync_errors_total",
			Help: "Syncs that failed, by kind (a failed partial sync is followed by a full one).",
		}, []string{"kind"}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fairlead_proxy_rules",
			Help: "nftables rules programmed for Services (the fixed base chains excluded).",
		}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fairlead_proxy_map_elements",
			Help: "Elements programmed in the Service lookup maps.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fairlead_proxy_invalid_objects_total",
			Help: "Invalid parts of Services and EndpointSlices skipped by the proxy.",
		}),
		// What the healthz endpoint judges by, for alerts: 0 until the first sync succeeds.
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fairlead_proxy_last_sync_timestamp_seconds",
			Help: "Unix time of the last successful sync (full or partial); 0 before the first.",
		}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.errors, m.rules, m.elements, m.invalid, m.lastSync} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Served at 0 from the start, so that increase() sees the first error.
	for _, kind := range []string{"full", "partial"} {
		m.errors.WithLabelValues(kind)
	}
	return m, nil
}
