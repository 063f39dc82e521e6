package pool

import (
	"errors"
	"math/big"
	"net/netip"
	"strings"
	"testing"
)

var ip = netip.MustParseAddr

func newPool(t testing.TB, avoid bool, ranges ...string) *Pool {
	t.Helper()
	return NewPool("blue", mustRanges(t, ranges...), avoid)
}

// allocN allocates n addresses of family f and returns them as strings.
func allocN(t testing.TB, p *Pool, f Family, n int) []string {
	t.Helper()
	var got []string
	for range n {
		a, err := p.AllocateNext(f)
		if err != nil {
			t.Fatalf("AllocateNext(%v) after %v: %v", f, got, err)
		}
		got = append(got, a.String())
	}
	return got
}

func checkStats(t testing.TB, p *Pool, f Family, total string, used int64) {
	t.Helper()
	s := p.Stats(f)
	wantTotal, _ := new(big.Int).SetString(total, 10)
	wantFree := new(big.Int).Sub(wantTotal, big.NewInt(used))
	if s.Total.Cmp(wantTotal) != 0 || s.Used != used || s.Free.Cmp(wantFree) != 0 {
		t.Errorf("Stats(%v) = total %v used %d free %v; want total %v used %d free %v", f, s.Total, s.Used, s.Free, wantTotal, used, wantFree)
	}
}

func TestAllocateLowestFirst(t *testing.T) {
	tests := []struct {
		name   string
		avoid  bool
		ranges []string
		f      Family
		want   []string
	}{
		{"cidr", false, []string{"198.51.100.0/30"}, IPv4,
			[]string{"198.51.100.0", "198.51.100.1", "198.51.100.2", "198.51.100.3"}},
		{"range", false, []string{"198.51.100.10-198.51.100.12"}, IPv4,
			[]string{"198.51.100.10", "198.51.100.11", "198.51.100.12"}},
		{"ranges crossing", false, []string{"198.51.100.254-198.51.101.1", "198.51.100.10-198.51.100.11"}, IPv4,
			[]string{"198.51.100.10", "198.51.100.11", "198.51.100.254", "198.51.100.255", "198.51.101.0", "198.51.101.1"}},
		{"ranges crossing, avoid", true, []string{"198.51.100.254-198.51.101.1", "198.51.100.10-198.51.100.11"}, IPv4,
			[]string{"198.51.100.10", "198.51.100.11", "198.51.100.254", "198.51.101.1"}},
		{"only buggy ranges skipped", true, []string{"198.51.100.255-198.51.101.0", "198.51.102.0/32", "198.51.103.7/32"}, IPv4,
			[]string{"198.51.103.7"}},
		{"ipv6", false, []string{"2001:db8::fffe-2001:db8::1:1", "198.51.100.0/24"}, IPv6,
			[]string{"2001:db8::fffe", "2001:db8::ffff", "2001:db8::1:0", "2001:db8::1:1"}},
		{"ipv6 ignores avoid", true, []string{"2001:db8::ff/128", "2001:db8::100/128"}, IPv6,
			[]string{"2001:db8::ff", "2001:db8::100"}},
		{"top of unicast space", false, []string{"223.255.255.254/31"}, IPv4,
			[]string{"223.255.255.254", "223.255.255.255"}},
		{"top of ipv6 unicast space", false, []string{"feff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"}, IPv6,
			[]string{"feff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, tt.avoid, tt.ranges...)
			got := allocN(t, p, tt.f, len(tt.want))
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if a, err := p.AllocateNext(tt.f); !errors.Is(err, ErrExhausted) {
				t.Errorf("after %d allocations got %v, %v; want ErrExhausted", len(tt.want), a, err)
			}
			checkStats(t, p, tt.f, big.NewInt(int64(len(tt.want))).String(), int64(len(tt.want)))
		})
	}
}

func TestAvoidBuggyIPs(t *testing.T) {
	p := newPool(t, true, "198.51.100.0/23")
	checkStats(t, p, IPv4, "508", 0) // 512 minus .0 and .255 of two /24s
	seen := map[string]bool{}
	for range 508 {
		a, err := p.AllocateNext(IPv4)
		if err != nil {
			t.Fatal(err)
		}
		if b := a.As4()[3]; b == 0 || b == 255 {
			t.Fatalf("handed out %v", a)
		}
		if seen[a.String()] {
			t.Fatalf("handed out %v twice", a)
		}
		seen[a.String()] = true
	}
	checkStats(t, p, IPv4, "508", 508)
	if _, err := p.AllocateNext(IPv4); !errors.Is(err, ErrExhausted) {
		t.Errorf("got %v, want ErrExhausted", err)
	}
	// All 508 allocations coalesced across the .255/.0 boundary.
	if n := p.v4.runs.Len(); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}

	q := newPool(t, true, "198.51.100.0/23")
	for _, s := range []string{"198.51.100.255", "198.51.101.0", "198.51.100.0"} {
		err := q.Reserve(ip(s))
		if !errors.Is(err, ErrBuggyIP) || !strings.Contains(err.Error(), s) {
			t.Errorf("Reserve(%s) = %v, want ErrBuggyIP naming it", s, err)
		}
		if q.Usable(ip(s)) || !q.Contains(ip(s)) {
			t.Errorf("%s: Usable %v Contains %v", s, q.Usable(ip(s)), q.Contains(ip(s)))
		}
	}
	if err := q.Reserve(ip("198.51.100.255")); err == nil || err.Error() != `198.51.100.255 ends in .255, which pool "blue" avoids (avoidBuggyIPs)` {
		t.Errorf("message: %v", err)
	}
	// Without the option those are ordinary addresses.
	r := newPool(t, false, "198.51.100.0/23")
	if err := r.Reserve(ip("198.51.100.255")); err != nil {
		t.Error(err)
	}
	checkStats(t, r, IPv4, "512", 1)
}

func TestBuggyCount(t *testing.T) {
	tests := []struct {
		r    string
		want int64
	}{
		{"198.51.100.0/24", 2},
		{"198.51.100.1-198.51.100.254", 0},
		{"198.51.100.255-198.51.101.0", 2},
		{"198.51.100.0/32", 1},
		{"198.51.100.128/25", 1},
		{"10.0.0.0/8", 2 * 65536},
		{"0.0.0.0/0", 2 * 16777216},
		{"0.0.0.0/31", 1},
		{"255.255.255.0/24", 2},
	}
	for _, tt := range tests {
		if got := buggyIn(rawRanges(t, tt.r)[0]); got != tt.want {
			t.Errorf("buggyIn(%s) = %d, want %d", tt.r, got, tt.want)
		}
	}
}

func TestExhaustionThenRelease(t *testing.T) {
	p := newPool(t, false, "198.51.100.0/30")
	allocN(t, p, IPv4, 4)
	_, err := p.AllocateNext(IPv4)
	if !errors.Is(err, ErrExhausted) || err.Error() != `pool "blue" has no free IPv4 address` {
		t.Fatalf("got %v", err)
	}
	p.Release(ip("198.51.100.2"))
	p.Release(ip("198.51.100.2")) // idempotent
	checkStats(t, p, IPv4, "4", 3)
	if a, err := p.AllocateNext(IPv4); err != nil || a != ip("198.51.100.2") {
		t.Errorf("got %v, %v; want 198.51.100.2", a, err)
	}
}

func TestReleaseHole(t *testing.T) {
	tests := []struct {
		name    string
		avoid   bool
		ranges  []string
		n       int
		release []string
		want    []string // next allocations, lowest first
	}{
		{"middle", false, []string{"198.51.100.0/24"}, 10, []string{"198.51.100.5"}, []string{"198.51.100.5", "198.51.100.10"}},
		{"first", false, []string{"198.51.100.0/24"}, 10, []string{"198.51.100.0"}, []string{"198.51.100.0", "198.51.100.10"}},
		{"last", false, []string{"198.51.100.0/24"}, 10, []string{"198.51.100.9"}, []string{"198.51.100.9", "198.51.100.10"}},
		{"two holes", false, []string{"198.51.100.0/24"}, 10, []string{"198.51.100.7", "198.51.100.3"}, []string{"198.51.100.3", "198.51.100.7", "198.51.100.10"}},
		{"across buggy gap", true, []string{"198.51.100.250-198.51.101.5"}, 8, []string{"198.51.100.254", "198.51.101.1"},
			[]string{"198.51.100.254", "198.51.101.1", "198.51.101.4"}},
		{"across ranges", false, []string{"198.51.100.1/32", "198.51.100.3/32", "198.51.100.5/32"}, 3, []string{"198.51.100.3"},
			[]string{"198.51.100.3"}},
		{"ipv6 middle", false, []string{"2001:db8::/120"}, 10, []string{"2001:db8::4"}, []string{"2001:db8::4", "2001:db8::a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, tt.avoid, tt.ranges...)
			f := p.Families()[0]
			allocN(t, p, f, tt.n)
			for _, s := range tt.release {
				if !p.InUse(ip(s)) {
					t.Fatalf("%s not in use before release", s)
				}
				p.Release(ip(s))
				if p.InUse(ip(s)) {
					t.Fatalf("%s in use after release", s)
				}
			}
			if got := allocN(t, p, f, len(tt.want)); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReserve(t *testing.T) {
	p := newPool(t, false, "198.51.100.0/24", "2001:db8::/64")
	if err := p.Reserve(ip("198.51.100.1")); err != nil {
		t.Fatal(err)
	}
	// Reserving through the mapped form hits the same address.
	if err := p.Reserve(ip("::ffff:198.51.100.1")); !errors.Is(err, ErrInUse) {
		t.Errorf("got %v, want ErrInUse", err)
	}
	if err := p.Reserve(ip("198.51.101.1")); !errors.Is(err, ErrNotInPool) || err.Error() != `198.51.101.1 is not in pool "blue"` {
		t.Errorf("got %v, want ErrNotInPool", err)
	}
	if err := p.Reserve(netip.Addr{}); !errors.Is(err, ErrNotInPool) {
		t.Errorf("got %v, want ErrNotInPool", err)
	}
	if err := p.Reserve(ip("2001:db8::ffff:0:0:1")); err != nil {
		t.Fatal(err)
	}
	// Reserved addresses are skipped by AllocateNext.
	if got := allocN(t, p, IPv4, 2); strings.Join(got, " ") != "198.51.100.0 198.51.100.2" {
		t.Errorf("got %v", got)
	}
	checkStats(t, p, IPv6, "18446744073709551616", 1)
	p.Release(ip("198.51.101.1")) // not in pool: no-op
	p.Release(ip("198.51.100.77"))
	checkStats(t, p, IPv4, "256", 3)
}

func TestNoFamily(t *testing.T) {
	p := newPool(t, false, "198.51.100.0/24")
	_, err := p.AllocateNext(IPv6)
	if !errors.Is(err, ErrNoFamily) || err.Error() != `pool "blue" has no IPv6 range` {
		t.Errorf("got %v", err)
	}
	if fs := p.Families(); len(fs) != 1 || fs[0] != IPv4 {
		t.Errorf("Families() = %v", fs)
	}
	checkStats(t, p, IPv6, "0", 0)
	dual := newPool(t, false, "2001:db8::/64", "198.51.100.0/24")
	if fs := dual.Families(); len(fs) != 2 || fs[0] != IPv4 || fs[1] != IPv6 {
		t.Errorf("Families() = %v", fs)
	}
}

func TestHugePools(t *testing.T) {
	p := newPool(t, false, "10.0.0.0/8", "2001:db8::/64")
	checkStats(t, p, IPv4, "16777216", 0)
	checkStats(t, p, IPv6, "18446744073709551616", 0)
	allocN(t, p, IPv4, 1000)
	allocN(t, p, IPv6, 1000)
	checkStats(t, p, IPv4, "16777216", 1000)
	checkStats(t, p, IPv6, "18446744073709551616", 1000)
	if err := p.Reserve(ip("10.255.255.255")); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(ip("2001:db8::ffff:ffff:ffff:ffff")); err != nil {
		t.Fatal(err)
	}
	if p.v4.runs.Len() != 2 || p.v6.runs.Len() != 2 {
		t.Errorf("runs: %d, %d; want 2, 2", p.v4.runs.Len(), p.v6.runs.Len())
	}

	q := newPool(t, true, "10.0.0.0/8")
	checkStats(t, q, IPv4, "16646144", 0) // minus 2 per /24
	all := newPool(t, false, "2000::/3")
	checkStats(t, all, IPv6, "42535295865117307932921825928971026432", 0)
}

func TestOverlappingRangesMerged(t *testing.T) {
	// NewPool tolerates overlaps that ParseRanges would reject.
	p := NewPool("x", []Range{mustRange(t, "198.51.100.0/24"), mustRange(t, "198.51.100.10-198.51.101.3")}, false)
	checkStats(t, p, IPv4, "260", 0)
	if len(p.Ranges()) != 2 {
		t.Errorf("Ranges() = %v, want both as given", p.Ranges())
	}
}
