package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	rules    prometheus.Gauge
	elements prometheus.Gauge
	invalid  prometheus.Counter
	lastSync prometheus.Gauge

	// kube-proxy's, under its names, labels and buckets, so that dashboards and alerts
	// written for it keep working. ip_family is "IPv4" or "IPv6": kube-proxy runs one
	// proxier per family, this proxy syncs both at once and reports the sync for each.
	kpDuration, kpFull, kpPartial *prometheus.HistogramVec
	kpProgramming                 *prometheus.HistogramVec
	kpLast, kpLastQueued          *prometheus.GaugeVec
	kpNoLocal                     *prometheus.GaugeVec
	kpFailures                    *prometheus.CounterVec
	kpEndpointChanges             prometheus.Counter
	kpEndpointPending             prometheus.Gauge
	kpServiceChanges              prometheus.Counter
	kpServicePending              prometheus.Gauge
	kpHealthz, kpLivez            *prometheus.CounterVec
}

// kube-proxy's buckets for sync durations, and for network programming latency (a leading
// 0, then 0.25 s and 0.5 s, every second to 59 s, every 5 s to 115 s, every 30 s to 5 min).
var (
	kubeProxySyncBuckets        = prometheus.ExponentialBuckets(0.001, 2, 15)
	kubeProxyProgrammingBuckets = func() []float64 {
		out := []float64{0}
		out = append(out, prometheus.LinearBuckets(0.25, 0.25, 2)...)
		out = append(out, prometheus.LinearBuckets(1, 1, 59)...)
		out = append(out, prometheus.LinearBuckets(60, 5, 12)...)
		return append(out, prometheus.LinearBuckets(120, 30, 7)...)
	}()
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{"ip_family"})
	}
	perFamily := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"ip_family"})
	}
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
		kpDuration:    hist("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", kubeProxySyncBuckets),
		kpFull:        hist("kubeproxy_sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", kubeProxySyncBuckets),
		kpPartial:     hist("kubeproxy_sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", kubeProxySyncBuckets),
		kpProgramming: hist("kubeproxy_network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds", kubeProxyProgrammingBuckets),
		kpLast:        perFamily("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced"),
		kpLastQueued:  perFamily("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued"),
		kpNoLocal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
			Help: "Number of services with a Local traffic policy and no endpoints",
		}, []string{"ip_family", "traffic_policy"}),
		kpFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_nftables_sync_failures_total", Help: "Cumulative proxy nftables sync failures",
		}, []string{"ip_family"}),
		kpEndpointChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_endpoint_changes_total", Help: "Cumulative proxy rules Endpoint changes"}),
		kpEndpointPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_endpoint_changes_pending", Help: "Pending proxy rules Endpoint changes"}),
		kpServiceChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_service_changes_total", Help: "Cumulative proxy rules Service changes"}),
		kpServicePending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_service_changes_pending", Help: "Pending proxy rules Service changes"}),
		kpHealthz: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeproxy_proxy_healthz_total", Help: "Cumulative proxy healthz HTTP status"}, []string{"code"}),
		kpLivez: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeproxy_proxy_livez_total", Help: "Cumulative proxy livez HTTP status"}, []string{"code"}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.errors, m.rules, m.elements, m.invalid, m.lastSync,
		m.kpDuration, m.kpFull, m.kpPartial, m.kpProgramming, m.kpLast, m.kpLastQueued, m.kpNoLocal, m.kpFailures,
		m.kpEndpointChanges, m.kpEndpointPending, m.kpServiceChanges, m.kpServicePending, m.kpHealthz, m.kpLivez} {
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

// CountHealthCheck counts an answer of /healthz (or /livez) by its HTTP status code.
func (p *Proxier) CountHealthCheck(livez bool, code int) {
	if livez {
		p.metrics.kpLivez.WithLabelValues(fmt.Sprint(code)).Inc()
	} else {
		p.metrics.kpHealthz.WithLabelValues(fmt.Sprint(code)).Inc()
	}
}
