package pool

import (
	"net/netip"
	"strings"
	"testing"
)

func mustRange(t testing.TB, s string) Range {
	t.Helper()
	r, err := ParseRange(s)
	if err != nil {
		t.Fatalf("ParseRange(%q): %v", s, err)
	}
	return r
}

func mustRanges(t testing.TB, ss ...string) []Range {
	t.Helper()
	rs, err := ParseRanges(ss)
	if err != nil {
		t.Fatalf("ParseRanges(%q): %v", ss, err)
	}
	return rs
}

// The syntax of the whole address space (ParseRange refuses it for its special-purpose
// addresses: special_test.go).
func TestParseRangeWholeSpace(t *testing.T) {
	r, err := parseRange("0.0.0.0/0")
	if err != nil || r.First != netip.MustParseAddr("0.0.0.0") || r.Last != netip.MustParseAddr("255.255.255.255") || r.String() != "0.0.0.0/0" {
		t.Errorf("parseRange(0.0.0.0/0) = %v, %v", r, err)
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in          string
		first, last string
		family      Family
		str         string
	}{
		{"198.51.100.0/24", "198.51.100.0", "198.51.100.255", IPv4, "198.51.100.0/24"},
		{"  198.51.100.0/24 ", "198.51.100.0", "198.51.100.255", IPv4, "198.51.100.0/24"},
		{"198.51.100.7/32", "198.51.100.7", "198.51.100.7", IPv4, "198.51.100.7/32"},
		{"10.0.0.0/8", "10.0.0.0", "10.255.255.255", IPv4, "10.0.0.0/8"},
		{"2001:db8::/64", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", IPv6, "2001:db8::/64"},
		{"2001:db8::/127", "2001:db8::", "2001:db8::1", IPv6, "2001:db8::/127"},
		{"198.51.100.10-198.51.100.20", "198.51.100.10", "198.51.100.20", IPv4, "198.51.100.10-198.51.100.20"},
		{"198.51.100.10 - 198.51.100.20", "198.51.100.10", "198.51.100.20", IPv4, "198.51.100.10-198.51.100.20"},
		{"198.51.100.5-198.51.100.5", "198.51.100.5", "198.51.100.5", IPv4, "198.51.100.5/32"},
		// A dash range that happens to be a CIDR prints as one.
		{"198.51.100.0-198.51.100.127", "198.51.100.0", "198.51.100.127", IPv4, "198.51.100.0/25"},
		{"198.51.100.254-198.51.101.1", "198.51.100.254", "198.51.101.1", IPv4, "198.51.100.254-198.51.101.1"},
		{"2001:db8::1-2001:db8::ff", "2001:db8::1", "2001:db8::ff", IPv6, "2001:db8::1-2001:db8::ff"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r := mustRange(t, tt.in)
			if want := (Range{netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last)}); r != want {
				t.Errorf("got %v-%v, want %v-%v", r.First, r.Last, want.First, want.Last)
			}
			if r.Family() != tt.family {
				t.Errorf("family %v, want %v", r.Family(), tt.family)
			}
			if r.String() != tt.str {
				t.Errorf("String() = %q, want %q", r.String(), tt.str)
			}
			if again := mustRange(t, r.String()); again != r {
				t.Errorf("String() does not round-trip: %v", again)
			}
		})
	}
}

func TestParseRangeErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "address range is empty"},
		{"   ", "address range is empty"},
		{"foo", `"foo" is not an IP range or CIDR`},
		{"198.51.100.1", `"198.51.100.1" is a single address, not a range; write 198.51.100.1/32`},
		{"2001:db8::1", `write 2001:db8::1/128`},
		{"198.51.100.1/24", "198.51.100.1/24 has host bits set; did you mean 198.51.100.0/24?"},
		{"2001:db8::1/64", "2001:db8::1/64 has host bits set; did you mean 2001:db8::/64?"},
		{"198.51.100.0/33", `"198.51.100.0/33" is not a valid CIDR`},
		{"198.51.100.0/", `"198.51.100.0/" is not a valid CIDR`},
		{"10.0.0.9-10.0.0.1", "range 10.0.0.9-10.0.0.1 is reversed"},
		{"10.0.0.1-2001:db8::1", "range 10.0.0.1-2001:db8::1 mixes IPv4 and IPv6"},
		{"2001:db8::1-10.0.0.1", "range 2001:db8::1-10.0.0.1 mixes IPv4 and IPv6"},
		{"::ffff:10.0.0.1-::ffff:10.0.0.9", "::ffff:10.0.0.1 is an IPv4-mapped IPv6 address; write it as 10.0.0.1"},
		{"::ffff:10.0.0.0/104", `"::ffff:10.0.0.0/104" uses IPv4-mapped IPv6 addresses`},
		{"fe80::1%eth0-fe80::9%eth0", "has an IPv6 zone"},
		{"fe80::%eth-0/64", "has an IPv6 zone"},
		{"10.0.0.1-", `range "10.0.0.1-" needs an address on both sides`},
		{"-10.0.0.1", `range "-10.0.0.1" needs an address on both sides`},
		{"10.0.0.1-10.0.0.x", `end "10.0.0.x" is not an IP address`},
		{"10.0.0.1-10.0.0.2-10.0.0.3", `end "10.0.0.2-10.0.0.3" is not an IP address`},
		{"x-10.0.0.1", `start "x" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRange(tt.in)
			if err == nil {
				t.Fatalf("ParseRange(%q) = %v, want error containing %q", tt.in, r, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseRange(%q) error %q, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestRangeContains(t *testing.T) {
	r := mustRange(t, "198.51.100.10-198.51.100.20")
	tests := []struct {
		a    string
		want bool
	}{
		{"198.51.100.9", false},
		{"198.51.100.10", true},
		{"198.51.100.15", true},
		{"198.51.100.20", true},
		{"198.51.100.21", false},
		{"::ffff:198.51.100.15", true}, // mapped form is the same address
		{"2001:db8::1", false},
	}
	for _, tt := range tests {
		if got := r.Contains(netip.MustParseAddr(tt.a)); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.a, got, tt.want)
		}
	}
	if r.Contains(netip.Addr{}) {
		t.Error("Contains(invalid) = true")
	}
}

func TestParseRanges(t *testing.T) {
	rs := mustRanges(t, "2001:db8::/64", "198.51.100.128/25", "198.51.100.0-198.51.100.127")
	want := []string{"198.51.100.0/25", "198.51.100.128/25", "2001:db8::/64"}
	if len(rs) != len(want) {
		t.Fatalf("got %v, want %v", rs, want)
	}
	for i := range want {
		if rs[i].String() != want[i] {
			t.Errorf("rs[%d] = %v, want %s", i, rs[i], want[i])
		}
	}
	if rs, err := ParseRanges(nil); err != nil || len(rs) != 0 {
		t.Errorf("ParseRanges(nil) = %v, %v", rs, err)
	}

	bad := []struct {
		in   []string
		want string
	}{
		{[]string{"198.51.100.0/24", "198.51.100.10-198.51.100.20"}, "198.51.100.0/24 overlaps 198.51.100.10-198.51.100.20"},
		{[]string{"198.51.100.10-198.51.100.20", "198.51.100.0/24"}, "198.51.100.0/24 overlaps 198.51.100.10-198.51.100.20"},
		// The wide first entry must be caught against the third too.
		{[]string{"10.0.0.0/8", "9.0.0.0/8", "10.1.0.0/16"}, "10.0.0.0/8 overlaps 10.1.0.0/16"},
		{[]string{"10.0.0.1-10.0.0.100", "10.0.0.2-10.0.0.3", "10.0.0.50-10.0.0.60"}, "10.0.0.1-10.0.0.100 overlaps 10.0.0.2-10.0.0.3"},
		{[]string{"10.0.0.0/24", "10.0.0.255-10.0.1.5"}, "10.0.0.0/24 overlaps 10.0.0.255-10.0.1.5"},
		{[]string{"10.0.0.0/24", "10.0.0.0/24"}, "10.0.0.0/24 overlaps 10.0.0.0/24"},
		{[]string{"10.0.0.0/24", "bogus"}, `"bogus" is not an IP range or CIDR`},
	}
	for _, tt := range bad {
		_, err := ParseRanges(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRanges(%q) error %v, want %q", tt.in, err, tt.want)
		}
	}
	// Touching is not overlapping.
	mustRanges(t, "10.0.0.0/24", "10.0.1.0/24")
}

func TestOverlaps(t *testing.T) {
	tests := []struct {
		a, b   []string
		ok     bool
		ra, rb string
	}{
		{[]string{"10.0.0.0/24"}, []string{"10.0.1.0/24"}, false, "", ""},
		{[]string{"10.0.0.0/24"}, []string{"10.0.0.128/25"}, true, "10.0.0.0/24", "10.0.0.128/25"},
		{[]string{"10.0.0.0/24", "10.0.2.0/24"}, []string{"10.0.1.0/24", "10.0.2.255-10.0.3.4"}, true, "10.0.2.0/24", "10.0.2.255-10.0.3.4"},
		{[]string{"10.0.0.0/24", "2001:db8::/64"}, []string{"2001:db8::/48"}, true, "2001:db8::/64", "2001:db8::/48"},
		{[]string{"10.0.0.0/24", "2001:db8::/64"}, []string{"2001:db9::/48", "10.0.1.0/24"}, false, "", ""},
		{nil, []string{"10.0.0.0/8"}, false, "", ""},
		{[]string{"1.0.0.0/8"}, []string{"2001:db8::/32"}, false, "", ""},
	}
	for _, tt := range tests {
		ra, rb, ok := Overlaps(mustRanges(t, tt.a...), mustRanges(t, tt.b...))
		if ok != tt.ok || (ok && (ra.String() != tt.ra || rb.String() != tt.rb)) {
			t.Errorf("Overlaps(%v, %v) = %v, %v, %v; want %s, %s, %v", tt.a, tt.b, ra, rb, ok, tt.ra, tt.rb, tt.ok)
		}
	}
}

func TestFamilyOf(t *testing.T) {
	for s, want := range map[string]Family{"10.0.0.1": IPv4, "::ffff:10.0.0.1": IPv4, "2001:db8::1": IPv6, "::": IPv6} {
		if got := FamilyOf(netip.MustParseAddr(s)); got != want {
			t.Errorf("FamilyOf(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestRangePrefixes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"198.51.100.0/24", "198.51.100.0/24"},
		{"198.51.100.7/32", "198.51.100.7/32"},
		{"198.51.100.0-198.51.100.255", "198.51.100.0/24"},
		{"198.51.100.10-198.51.100.20", "198.51.100.10/31 198.51.100.12/30 198.51.100.16/30 198.51.100.20/32"},
		{"198.51.100.1-198.51.100.254", "198.51.100.1/32 198.51.100.2/31 198.51.100.4/30 198.51.100.8/29 198.51.100.16/28 198.51.100.32/27 " +
			"198.51.100.64/26 198.51.100.128/26 198.51.100.192/27 198.51.100.224/28 198.51.100.240/29 198.51.100.248/30 198.51.100.252/31 198.51.100.254/32"},
		{"203.0.113.255-203.0.114.0", "203.0.113.255/32 203.0.114.0/32"},
		{"2001:db8::-2001:db8::1:ffff", "2001:db8::/111"},
		{"2001:db8::ffff-2001:db8::1:0", "2001:db8::ffff/128 2001:db8::1:0/128"},
	} {
		var got []string
		for _, p := range mustRange(t, tc.in).Prefixes() {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("Prefixes(%s) = %s, want %s", tc.in, strings.Join(got, " "), tc.want)
		}
	}
	// The top of the address space ends the walk (no address after it).
	whole, _ := parseRange("128.0.0.0-255.255.255.255")
	if got := whole.Prefixes(); len(got) != 1 || got[0].String() != "128.0.0.0/1" {
		t.Errorf("Prefixes(128.0.0.0-255.255.255.255) = %v", got)
	}
}
