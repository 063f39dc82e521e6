package bgp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fairlead-lb/fairlead/speaker/bfd"
)

// bfdCollector reports each BFD session's state and negotiated timers when scraped, so that
// the values are those of the moment (a Poll Sequence changes them without a state change).
type bfdCollector struct{ m *Manager }

var (
	bfdUpDesc = prometheus.NewDesc("fairlead_bfd_session_up",
		"1 when the BFD session with the BGP peer is Up.", []string{"peer"}, nil)
	bfdTxDesc = prometheus.NewDesc("fairlead_bfd_transmit_interval_seconds",
		"Negotiated BFD transmit interval: max(our desired min TX, the peer's required min RX).", []string{"peer"}, nil)
	bfdDetectDesc = prometheus.NewDesc("fairlead_bfd_detection_time_seconds",
		"BFD detection time: the peer's detect multiplier × max(our required min RX, the peer's desired min TX).", []string{"peer"}, nil)
)

func (c bfdCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bfdUpDesc
	ch <- bfdTxDesc
	ch <- bfdDetectDesc
}

func (c bfdCollector) Collect(ch chan<- prometheus.Metric) {
	for peer, i := range c.m.BFDInfo() {
		up := 0.0
		if i.State == bfd.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(bfdUpDesc, prometheus.GaugeValue, up, peer)
		ch <- prometheus.MustNewConstMetric(bfdTxDesc, prometheus.GaugeValue, i.TxInterval.Seconds(), peer)
		ch <- prometheus.MustNewConstMetric(bfdDetectDesc, prometheus.GaugeValue, i.DetectTime.Seconds(), peer)
	}
}
