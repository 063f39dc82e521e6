package netns

import (
	"net"
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

// A process inside a namespace reaches a server on the host's loopback through Forward only.
func TestForwardReachesHostLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello from the host\n"))
			c.Close()
		}
	}()
	n := New(t, "fwd")
	if _, err := n.Run("bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(l.Addr().String(), ":", "/", 1)); err == nil {
		t.Fatal("the namespace reached the host's loopback without a forwarder")
	}
	n.Forward(l.Addr().String(), l.Addr().String())
	out := n.MustRun("bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(l.Addr().String(), ":", "/", 1)+"; cat <&3")
	if !strings.Contains(out, "hello from the host") {
		t.Fatalf("got %q", out)
	}
}
