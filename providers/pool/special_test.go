package pool

import (
	"errors"
	"math/big"
	"strings"
	"testing"
)

// rawRanges parses without the special-purpose check: what a caller that bypasses
// ParseRange could hand to NewPool.
func rawRanges(t testing.TB, ss ...string) []Range {
	t.Helper()
	var rs []Range
	for _, s := range ss {
		r, err := parseRange(s)
		if err != nil {
			t.Fatalf("parseRange(%q): %v", s, err)
		}
		rs = append(rs, r)
	}
	return rs
}

func TestParseRangeRefusesSpecialPurpose(t *testing.T) {
	tests := []struct {
		in   string
		want []string // the blocks the error must name
	}{
		{"0.0.0.0/0", []string{"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"}},
		{"::/0", []string{"::/128", "::1/128", "::ffff:0.0.0.0/96", "fe80::/10", "ff00::/8"}},
		{"0.0.0.0/8", []string{"0.0.0.0/8"}},
		{"0.0.0.0/32", []string{"0.0.0.0/8"}},
		{"127.0.0.0/8", []string{"127.0.0.0/8 (loopback)"}},
		{"127.0.0.1/32", []string{"127.0.0.0/8"}},
		{"224.0.0.0/4", []string{"224.0.0.0/4 (multicast)"}},
		{"239.1.2.0/24", []string{"224.0.0.0/4"}},
		{"255.255.255.255/32", []string{"240.0.0.0/4"}},
		{"240.0.0.0/4", []string{"240.0.0.0/4"}},
		{"169.254.0.0/16", []string{"169.254.0.0/16 (link-local)"}},
		{"169.254.1.0/24", []string{"169.254.0.0/16"}},
		{"::/128", []string{"::/128 (unspecified)"}},
		{"::1/128", []string{"::1/128 (loopback)"}},
		{"ff00::/8", []string{"ff00::/8 (multicast)"}},
		{"ff02::1/128", []string{"ff00::/8"}},
		{"fe80::/10", []string{"fe80::/10 (link-local)"}},
		{"fe80::/64", []string{"fe80::/10"}},
		// Ranges whose ends are outside a block but which span it.
		{"100.0.0.0-200.0.0.0", []string{"127.0.0.0/8", "169.254.0.0/16"}},
		{"198.51.100.0-224.0.0.0", []string{"224.0.0.0/4"}},
		{"::-::5", []string{"::/128", "::1/128"}},
		{"::fffe:0:0-::1:0:0:0", []string{"::ffff:0.0.0.0/96 (IPv4-mapped)"}},
		{"fe00::-fe80::1", []string{"fe80::/10"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseRange(tt.in)
			if !errors.Is(err, ErrSpecial) {
				t.Fatalf("ParseRange(%q) = %v, want ErrSpecial", tt.in, err)
			}
			if !strings.HasPrefix(err.Error(), strings.TrimSpace(strings.SplitN(tt.in, "-", 2)[0])) {
				t.Errorf("error %q does not start with the range", err)
			}
			for _, b := range tt.want {
				if !strings.Contains(err.Error(), b) {
					t.Errorf("error %q does not name %s", err, b)
				}
			}
			if _, err := ParseRanges([]string{"198.51.100.0/24", tt.in}); !errors.Is(err, ErrSpecial) {
				t.Errorf("ParseRanges with %q = %v, want ErrSpecial", tt.in, err)
			}
		})
	}
	// Right next to the blocks is fine.
	for _, s := range []string{"1.0.0.0/8", "126.255.255.255/32", "128.0.0.0/32", "169.253.255.255/32", "169.255.0.0/16",
		"223.255.255.255/32", "::2/128", "::fffe:ffff:ffff/128", "::1:0:0:0/128", "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
		"fec0::/10", "feff::/16", "100.64.0.0/10", "2001:db8::/32", "64:ff9b::/96"} {
		if _, err := ParseRange(s); err != nil {
			t.Errorf("ParseRange(%q): %v", s, err)
		}
	}
}

func TestSpecial(t *testing.T) {
	tests := []struct {
		addr    string
		special string // the block, "" if none
	}{
		{"0.0.0.0", "0.0.0.0/8"},
		{"0.255.255.255", "0.0.0.0/8"},
		{"1.0.0.0", ""},
		{"127.0.0.1", "127.0.0.0/8"},
		{"::ffff:127.0.0.1", "127.0.0.0/8"}, // mapped: judged as the IPv4 address
		{"::ffff:198.51.100.1", ""},
		{"169.254.169.254", "169.254.0.0/16"},
		{"224.0.0.1", "224.0.0.0/4"},
		{"255.255.255.255", "240.0.0.0/4"},
		{"223.255.255.255", ""},
		{"::", "::/128"},
		{"::1", "::1/128"},
		{"::2", ""},
		{"fe80::1", "fe80::/10"},
		{"febf:ffff::1", "fe80::/10"},
		{"fec0::1", ""},
		{"ff02::1", "ff00::/8"},
		{"2001:db8::1", ""},
	}
	for _, tt := range tests {
		b, ok := Special(ip(tt.addr))
		if got := map[bool]string{true: b.Prefix.String()}[ok]; got != tt.special {
			t.Errorf("Special(%s) = %q, want %q", tt.addr, got, tt.special)
		}
	}
}

// A pool built from ranges that were never checked still leaves the special blocks out: it
// neither counts nor hands out nor reserves their addresses.
func TestPoolLeavesSpecialOut(t *testing.T) {
	tests := []struct {
		name   string
		ranges []string
		f      Family
		first  []string // the lowest addresses handed out
		total  string
	}{
		{"whole IPv4 space", []string{"0.0.0.0/0"}, IPv4, []string{"1.0.0.0", "1.0.0.1"},
			// 2^32 - 0/8 - 127/8 - 169.254/16 - 224/4 - 240/4
			big.NewInt(1<<32 - 2<<24 - 1<<16 - 2<<28).String()},
		{"across loopback", []string{"126.255.255.254-128.0.0.1"}, IPv4,
			[]string{"126.255.255.254", "126.255.255.255", "128.0.0.0", "128.0.0.1"}, "4"},
		{"into multicast", []string{"223.255.255.254-255.255.255.255"}, IPv4,
			[]string{"223.255.255.254", "223.255.255.255"}, "2"},
		{"around link-local", []string{"169.253.255.255-169.255.0.0"}, IPv4,
			[]string{"169.253.255.255", "169.255.0.0"}, "2"},
		{"low IPv6", []string{"::/126"}, IPv6, []string{"::2", "::3"}, "2"},
		{"IPv6 link-local and multicast", []string{"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff-ffff::"}, IPv6,
			[]string{"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPool("blue", rawRanges(t, tt.ranges...), false)
			got := allocN(t, p, tt.f, len(tt.first))
			if strings.Join(got, " ") != strings.Join(tt.first, " ") {
				t.Errorf("handed out %v, want %v", got, tt.first)
			}
			if tt.total != "" {
				if s := p.Stats(tt.f); s.Total.String() != tt.total {
					t.Errorf("total %v, want %s", s.Total, tt.total)
				}
				if tt.total == "2" || tt.total == "4" {
					if a, err := p.AllocateNext(tt.f); !errors.Is(err, ErrExhausted) {
						t.Errorf("after the usable ones: %v, %v; want ErrExhausted", a, err)
					}
				}
			}
			for _, r := range p.Ranges() {
				if bs := r.Special(); len(bs) > 0 {
					t.Errorf("range %v kept special blocks %v", r, bs)
				}
			}
		})
	}
	p := NewPool("blue", rawRanges(t, "127.0.0.0/8", "ff00::/8"), false)
	if fs := p.Families(); len(fs) != 0 {
		t.Errorf("a pool of nothing but special addresses has families %v", fs)
	}
	for _, a := range []string{"127.0.0.1", "ff02::1"} {
		if p.Contains(ip(a)) || p.Usable(ip(a)) {
			t.Errorf("%s: contained or usable", a)
		}
		if err := p.Reserve(ip(a)); !errors.Is(err, ErrSpecial) {
			t.Errorf("Reserve(%s) = %v, want ErrSpecial", a, err)
		}
	}
}

// The allocator never assigns a special-purpose address, in a pool or outside every pool
// (where it would otherwise be held as an orphan, as a restart restores what Services hold).
func TestAllocatorRefusesSpecial(t *testing.T) {
	al := newAllocator(t, NewPool("everything", rawRanges(t, "0.0.0.0/0", "::/0"), false))
	for _, s := range []string{"0.0.0.0", "127.0.0.1", "::ffff:127.0.0.1", "169.254.1.1", "224.0.0.5", "255.255.255.255",
		"::", "::1", "fe80::1", "ff02::1"} {
		err := al.Assign(svc("default/web", ""), ip(s))
		if !errors.Is(err, ErrSpecial) || !strings.Contains(err.Error(), "never handed out") {
			t.Errorf("Assign(%s) = %v, want ErrSpecial", s, err)
		}
	}
	if got := al.Held("default/web"); len(got) != 0 {
		t.Errorf("holds %v after refused assignments", got)
	}
	if a := mustAllocate(t, al, svc("default/web", ""), "everything", IPv4); a != ip("1.0.0.0") {
		t.Errorf("first IPv4 address %v, want 1.0.0.0", a)
	}
	if a := mustAllocate(t, al, svc("default/web6", ""), "everything", IPv6); a != ip("::2") {
		t.Errorf("first IPv6 address %v, want ::2", a)
	}
	// Orphans too.
	empty := NewAllocator()
	if err := empty.Assign(svc("default/web", ""), ip("127.0.0.1")); !errors.Is(err, ErrSpecial) {
		t.Errorf("Assign of a loopback orphan = %v, want ErrSpecial", err)
	}
}
