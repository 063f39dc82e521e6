package announcer

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fairlead-lb/fairlead/speaker/l2/plan"
)

// The alerts FairleadAddressNotAnnounced and FairleadAddressWithoutEligibleNode read these.
func TestL2PlanMetric(t *testing.T) {
	m := newL2Metrics(prometheus.NewRegistry())
	ip := netip.MustParseAddr
	m.setPlan([]plan.Announcement{
		{IP: ip("198.51.100.1"), Owner: "node1"},
		{IP: ip("198.51.100.2"), Owner: "node2"},
		{IP: ip("2001:db8::1")}, // no eligible node
	})
	if e, u := testutil.ToFloat64(m.plan.WithLabelValues("elected")), testutil.ToFloat64(m.plan.WithLabelValues("unowned")); e != 2 || u != 1 {
		t.Errorf("elected %v, unowned %v; want 2 and 1", e, u)
	}
	// A later plan replaces the counts, down to zero.
	m.setPlan(nil)
	if e, u := testutil.ToFloat64(m.plan.WithLabelValues("elected")), testutil.ToFloat64(m.plan.WithLabelValues("unowned")); e != 0 || u != 0 {
		t.Errorf("after an empty plan: elected %v, unowned %v; want 0", e, u)
	}
}
