package netns

import (
	"strings"
	"testing"
)

// Two namespaces on a bridge in a third reach each other, and everything is gone afterwards.
func TestBridgeTopology(t *testing.T) {
	var names []string
	t.Run("build", func(t *testing.T) {
		sw, a, b := New(t, "sw"), New(t, "a"), New(t, "b")
		names = []string{sw.Name, a.Name, b.Name}
		Veth(t, a, "eth0", sw, "pa")
		Veth(t, b, "eth0", sw, "pb")
		sw.Bridge("br0", "pa", "pb")
		a.Addr("eth0", "192.0.2.1/24")
		b.Addr("eth0", "192.0.2.2/24")
		a.Addr("eth0", "2001:db8::1/64")
		b.Addr("eth0", "2001:db8::2/64")
		a.MustRun("ping", "-c1", "-W2", "192.0.2.2")
		a.MustRun("ping", "-c1", "-W2", "2001:db8::2")
		p := b.Start("sleep", "60")
		if ok, _ := p.Exited(); ok {
			t.Fatal("sleep ended at once")
		}
	})
	out, _ := New(t, "check").Run("ip", "netns", "list")
	for _, n := range names {
		if strings.Contains(out, n) {
			t.Errorf("namespace %s left behind", n)
		}
	}
}
