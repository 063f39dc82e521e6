package nfttrace

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

const skeleton = `add table inet t { comment "x" ; }
add chain inet t pre { type nat hook prerouting priority -100 ; }
add chain inet t out { type nat hook output priority dstnat ; }
add chain inet t post { type nat hook postrouting priority srcnat ; }
add chain inet t filt { type filter hook prerouting priority -110 ; }
add chain inet t fwd { type filter hook forward priority 0 ; }
add chain inet t masq
add rule inet t post meta mark & 0x4000 == 0 return
add rule inet t post masquerade fully-random
add rule inet t masq meta mark set meta mark | 0x4000
`

func load(t *testing.T, script string) *Tracer {
	t.Helper()
	rs := New()
	if err := rs.Load(skeleton + script); err != nil {
		t.Fatal(err)
	}
	return &Tracer{Rules: rs, Node: Node{Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}}
}

func p(proto, src, dst string) Packet {
	ap := netip.MustParseAddrPort(dst)
	return Packet{Proto: proto, Src: netip.MustParseAddr(src), Dst: ap.Addr(), DPort: ap.Port()}
}

func outcomes(t *testing.T, tr *Tracer, pk Packet) []string {
	t.Helper()
	outs, err := tr.Trace(pk)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, o := range outs {
		s = append(s, o.String())
	}
	return s
}

func TestNumgenEnumeratesEveryPath(t *testing.T) {
	tr := load(t, `add chain inet t a
add chain inet t b
add rule inet t pre ip daddr 10.0.0.1 numgen random mod 2 vmap { 0 : goto a, 1 : goto b }
add rule inet t a numgen random mod 3 vmap { 0 : jump masq, 1 : jump masq, 2 : accept }
add rule inet t a dnat ip to 10.1.0.1:80
add rule inet t b dnat ip to 10.1.0.2:80
`)
	got := outcomes(t, tr, p("tcp", "203.0.113.1", "10.0.0.1:80"))
	want := []string{"dnat 10.1.0.1:80 masquerade", "dnat 10.1.0.1:80 masquerade", "accept", "dnat 10.1.0.2:80"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMapsSetsAndVerdicts(t *testing.T) {
	tr := load(t, `add map inet t svc { type ipv4_addr . inet_proto . inet_service : verdict ; }
add set inet t nets { type ipv4_addr ; flags interval ; }
add map inet t eps { typeof ip daddr . th dport . numgen random mod 1 : ip daddr . th dport ; }
add chain inet t s1
add chain inet t sub
add rule inet t pre ip daddr . meta l4proto . th dport vmap @svc
add rule inet t s1 jump sub
add rule inet t s1 dnat ip to ip daddr . th dport . numgen random mod 2 map @eps
add rule inet t sub ip saddr != @nets return
add rule inet t sub jump masq
add rule inet t filt ip saddr { 198.51.100.0/24, 198.51.100.77 } drop
add rule inet t fwd meta l4proto tcp ip daddr 10.1.0.9 reject with tcp reset
add rule inet t fwd ip daddr 10.1.0.9 reject
add element inet t nets { 10.244.0.0/16 }
add element inet t svc { 10.0.0.1 . tcp . 80 : goto s1, 10.0.0.1 . udp . 80 : drop, 10.0.0.2 . tcp . 80 : goto s1 }
add element inet t eps { 10.0.0.1 . 80 . 0 : 10.1.0.1 . 8080, 10.0.0.1 . 80 . 1 : 10.1.0.2 . 8080, 10.0.0.2 . 80 . 0 : 10.1.0.9 . 80 }
`)
	for _, tc := range []struct {
		pk   Packet
		want string
	}{
		{p("tcp", "10.244.1.1", "10.0.0.1:80"), "dnat 10.1.0.1:8080 masquerade|dnat 10.1.0.2:8080 masquerade"},
		{p("tcp", "203.0.113.1", "10.0.0.1:80"), "dnat 10.1.0.1:8080|dnat 10.1.0.2:8080"},
		{p("udp", "203.0.113.1", "10.0.0.1:80"), "drop"},
		{p("udp", "203.0.113.1", "10.0.0.1:81"), "accept"},
		{p("tcp", "198.51.100.9", "10.0.0.1:80"), "drop"},
		// A map lookup that finds nothing ends the rule as a failed match: index 1 is missing.
		{p("tcp", "203.0.113.1", "10.0.0.2:80"), "reject (tcp reset)|accept"},
		{p("udp", "203.0.113.1", "10.1.0.9:53"), "reject (icmp)"},
		{p("tcp", "203.0.113.1", "192.0.2.1:22"), "accept (to the node)"},
		// An IPv6 packet matches no ip rule.
		{p("tcp", "2001:db8::1", "[2001:db8::2]:80"), "accept"},
	} {
		if got := strings.Join(outcomes(t, tr, tc.pk), "|"); got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.pk, got, tc.want)
		}
	}
}

func TestPartialUpdates(t *testing.T) {
	tr := load(t, `add map inet t svc { type ipv4_addr . inet_proto . inet_service : verdict ; }
add chain inet t s1
add rule inet t pre ip daddr . meta l4proto . th dport vmap @svc
add rule inet t s1 dnat ip to 10.1.0.1:80
add element inet t svc { 10.0.0.1 . tcp . 80 : goto s1 }
`)
	if err := tr.Rules.Load(`delete element inet t svc { 10.0.0.1 . tcp . 80 }
add chain inet t s2
add rule inet t s2 dnat ip to 10.1.0.2:80
add element inet t svc { 10.0.0.1 . tcp . 80 : goto s2 }
flush chain inet t s1
delete chain inet t s1
`); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(t, tr, p("tcp", "203.0.113.1", "10.0.0.1:80")); !slices.Equal(got, []string{"dnat 10.1.0.2:80"}) {
		t.Errorf("got %q", got)
	}
	// A failing script changes nothing, as nft's transactions.
	if err := tr.Rules.Load("flush map inet t svc\nadd rule inet t nosuch drop\n"); err == nil {
		t.Fatal("a rule in a missing chain was accepted")
	}
	if got := outcomes(t, tr, p("tcp", "203.0.113.1", "10.0.0.1:80")); !slices.Equal(got, []string{"dnat 10.1.0.2:80"}) {
		t.Errorf("a failed script changed the rules: %q", got)
	}
}

func TestAffinityUpdates(t *testing.T) {
	tr := load(t, `add set inet t aff-a { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }
add set inet t aff-b { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }
add chain inet t a
add chain inet t b
add rule inet t pre ip daddr 10.0.0.1 ip saddr @aff-a goto a
add rule inet t pre ip daddr 10.0.0.1 ip saddr @aff-b goto b
add rule inet t pre ip daddr 10.0.0.1 numgen random mod 2 vmap { 0 : goto a, 1 : goto b }
add rule inet t a update @aff-a { ip saddr }
add rule inet t a dnat ip to 10.1.0.1:80
add rule inet t b update @aff-b { ip saddr }
add rule inet t b dnat ip to 10.1.0.2:80
`)
	outs, err := tr.Trace(p("tcp", "203.0.113.1", "10.0.0.1:80"))
	if err != nil || len(outs) != 2 {
		t.Fatalf("%v %v", outs, err)
	}
	tr.Apply(outs[1])
	if got := outcomes(t, tr, p("tcp", "203.0.113.1", "10.0.0.1:80")); !slices.Equal(got, []string{"dnat 10.1.0.2:80"}) {
		t.Errorf("after an affinity update: %q", got)
	}
	if got := outcomes(t, tr, p("tcp", "203.0.113.2", "10.0.0.1:80")); len(got) != 2 {
		t.Errorf("another source: %q", got)
	}
}

// What the tracer does not know, or what nft would refuse, fails the load.
func TestUnknownOrInvalidRulesFail(t *testing.T) {
	for _, bad := range []string{
		"add rule inet t pre tcp dport 80 accept",              // a selector it does not model
		"add rule inet t pre ip daddr 10.0.0.1 counter accept", // a statement it does not model
		"add rule inet t pre ip daddr 10.0.0.1 log prefix x",
		"add rule inet t pre ct state new,established accept",
		"add rule inet t pre ip daddr 2001:db8::1 accept", // wrong family
		"add rule inet t pre ip daddr 10.0.0.0/8x accept",
		"add rule inet t pre jump nosuch",
		"add rule inet t pre ip daddr @nosuch accept",
		"add rule inet t pre drop accept",
		"add rule inet t pre reject with icmp type host-unreachable",
		"add rule inet t pre snat ip to 10.0.0.1",
		"add set inet t s { type ipv4_addr ; }\nadd element inet t s { 10.0.0.0/8 }", // a range without interval
		"add set inet t s { type ipv4_addr ; }\nadd rule inet t pre ip daddr . th dport @s accept",
		"add map inet t m { type ipv4_addr : verdict ; }\nadd element inet t m { 10.0.0.1 : goto nosuch }",
		"add set inet t s { type ether_addr ; }",
		"add chain inet t x { type route hook output priority 0 ; }",
		"add chain inet t x { type filter hook ingress device eth0 priority 0 ; }",
		"add table ip t2",
		"insert rule inet t pre accept",
		"add set inet t s { type ipv4_addr ; }\nadd rule inet t pre update @s { ip saddr }", // not dynamic
	} {
		if err := New().Load(skeleton + bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// Statements in chains of the wrong kind fail the trace, as the kernel would refuse them.
func TestStatementsOutsideTheirHooksFail(t *testing.T) {
	for _, bad := range []string{
		"add rule inet t filt dnat ip to 10.1.0.1:80",
		"add rule inet t pre masquerade",
		"add chain inet t p2 { type nat hook postrouting priority 50 ; }\nadd rule inet t p2 reject",
	} {
		tr := load(t, bad)
		if _, err := tr.Trace(p("tcp", "203.0.113.1", "10.0.0.1:80")); err == nil {
			t.Errorf("%q: traced without error", bad)
		}
	}
}
