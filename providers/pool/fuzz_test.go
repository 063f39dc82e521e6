package pool

import (
	"errors"
	"math/big"
	"net/netip"
	"slices"
	"testing"
)

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"198.51.100.0/24", "2001:db8::/64", "198.51.100.10-198.51.100.20", "198.51.100.10 - 198.51.100.20",
		"198.51.100.1/24", "10.0.0.9-10.0.0.1", "10.0.0.1-2001:db8::1", "::ffff:10.0.0.1-::ffff:10.0.0.2",
		"fe80::1%eth0-fe80::2%eth0", "", "-", "0.0.0.0/0", "::/0", "::ffff:0:0/96", "1.2.3.4", "1.2.3.4/32/1",
		"255.255.255.255-255.255.255.255", "::-::1", "1.2.3.4-1.2.3.4-1.2.3.4", "100.0.0.0-200.0.0.0", "fe00::-fe80::",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseRange(%q): empty error", s)
			}
			return
		}
		if !r.First.IsValid() || !r.Last.IsValid() {
			t.Fatalf("ParseRange(%q) = invalid bounds %v", s, r)
		}
		if r.First.Compare(r.Last) > 0 {
			t.Fatalf("ParseRange(%q): First %v > Last %v", s, r.First, r.Last)
		}
		if r.First.Is4() != r.Last.Is4() || r.First.Is4In6() || r.Last.Is4In6() || r.First.Zone() != "" || r.Last.Zone() != "" {
			t.Fatalf("ParseRange(%q) = %#v: mixed, mapped or zoned", s, r)
		}
		again, err := ParseRange(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRange(%q) = %v, which re-parses as %v, %v", s, r, again, err)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) {
			t.Fatalf("%v does not contain its bounds", r)
		}
		if bs := r.Special(); len(bs) > 0 {
			t.Fatalf("ParseRange(%q) = %v, which includes %v", s, r, bs)
		}
	})
}

// fuzzLayouts are the pools FuzzAllocateRelease drives: small enough for a
// naive model, with the awkward spots (.255/.0 crossings, several ranges,
// the edges of special-purpose blocks that NewPool cuts out, the top and
// bottom of the address space, IPv6). They are parsed without ParseRange's
// special-purpose check.
var fuzzLayouts = [][]string{
	{"192.0.2.224/27", "198.51.100.254-198.51.101.2"},
	{"192.0.2.224/27", "198.51.100.254-198.51.101.2", "2001:db8::fffe-2001:db8::1:1"},
	{"198.51.100.255/32", "198.51.101.0/32", "198.51.101.5-198.51.101.6", "223.255.255.250-224.0.0.3", "255.255.255.254/31"},
	{"2001:db8::/124", "feff:ffff:ffff:ffff:ffff:ffff:ffff:fffc-ff00::2", "::/125"},
	{"126.255.255.254-127.0.0.1", "127.255.255.255-128.0.0.2", "0.0.0.0/32", "1.0.0.0/31"},
}

func FuzzAllocateRelease(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 0, 3, 1, 0, 0})
	f.Add([]byte{3, 0, 0, 1, 0, 2, 5, 3, 5, 0, 0, 4, 0})
	f.Add([]byte{5, 2, 3, 2, 4, 2, 9, 0, 0, 0, 0, 3, 4, 0, 0})
	f.Add([]byte{6, 1, 0, 1, 0, 1, 0, 1, 0, 4, 1, 1, 0})
	all := make([]byte, 0, 200)
	all = append(all, 1)
	for range 60 {
		all = append(all, 0, 0)
	}
	all = append(all, 4, 7, 4, 3, 0, 0, 0, 0)
	f.Add(all)

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		avoid := data[0]&1 == 1
		layout := fuzzLayouts[int(data[0]>>1)%len(fuzzLayouts)]
		ranges := rawRanges(t, layout...)
		p := NewPool("fuzz", ranges, avoid)
		m := newPoolModel(ranges, avoid)

		ops := data[1:]
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%5, int(ops[i+1])
			switch op {
			case 0, 1:
				fam := IPv4
				if op == 1 {
					fam = IPv6
				}
				a, err := p.AllocateNext(fam)
				want, wantErr := m.next(fam)
				if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) || a != want {
					t.Fatalf("op %d AllocateNext(%v) = %v, %v; model says %v, %v", i/2, fam, a, err, want, wantErr)
				}
				if err == nil {
					if m.used[a] {
						t.Fatalf("%v handed out twice", a)
					}
					if !p.Usable(a) || !p.Contains(a) {
						t.Fatalf("%v handed out but not usable", a)
					}
					m.used[a] = true
				}
			case 2:
				a := m.universe[arg%len(m.universe)]
				err := p.Reserve(a)
				var want error
				_, special := Special(a)
				switch {
				case special:
					want = ErrSpecial
				case !m.contains(a):
					want = ErrNotInPool
				case !m.usable(a):
					want = ErrBuggyIP
				case m.used[a]:
					want = ErrInUse
				}
				if !errors.Is(err, want) || (err == nil) != (want == nil) {
					t.Fatalf("op %d Reserve(%v) = %v; want %v", i/2, a, err, want)
				}
				if err == nil {
					m.used[a] = true
				}
			case 3:
				a := m.universe[arg%len(m.universe)]
				p.Release(a)
				delete(m.used, a)
			case 4:
				// Release something actually in use, to exercise splits.
				used := m.usedList()
				if len(used) == 0 {
					continue
				}
				a := used[arg%len(used)]
				p.Release(a)
				delete(m.used, a)
				if p.InUse(a) {
					t.Fatalf("%v still in use after Release", a)
				}
			}
			m.check(t, p)
		}
		// Whatever happened, the pool can be filled to the brim, in order.
		for _, fam := range p.Families() {
			for {
				want, wantErr := m.next(fam)
				a, err := p.AllocateNext(fam)
				if a != want || (err == nil) != (wantErr == nil) {
					t.Fatalf("filling: AllocateNext(%v) = %v, %v; model says %v, %v", fam, a, err, want, wantErr)
				}
				if err != nil {
					break
				}
				m.used[a] = true
			}
		}
		m.check(t, p)
	})
}

// poolModel is the obviously-correct, address-by-address reference.
type poolModel struct {
	ranges   []Range
	avoid    bool
	universe []netip.Addr // every pool address plus neighbours outside
	used     map[netip.Addr]bool
}

func newPoolModel(ranges []Range, avoid bool) *poolModel {
	m := &poolModel{ranges: ranges, avoid: avoid, used: map[netip.Addr]bool{}}
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			m.universe = append(m.universe, a)
		}
	}
	for _, r := range ranges {
		add(r.First.Prev())
		for a := r.First; a.IsValid() && a.Compare(r.Last) <= 0; a = a.Next() {
			add(a)
		}
		add(r.Last.Next())
	}
	add(netip.MustParseAddr("203.0.113.1"))
	add(netip.MustParseAddr("2001:db8:ffff::1"))
	slices.SortFunc(m.universe, netip.Addr.Compare)
	return m
}

func (m *poolModel) contains(a netip.Addr) bool {
	if _, special := Special(a); special {
		return false
	}
	for _, r := range m.ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

func (m *poolModel) usable(a netip.Addr) bool {
	if !m.contains(a) {
		return false
	}
	if m.avoid && a.Is4() {
		b := a.As4()[3]
		return b != 0 && b != 255
	}
	return true
}

func (m *poolModel) hasFamily(f Family) bool {
	for _, a := range m.universe {
		if FamilyOf(a) == f && m.contains(a) {
			return true
		}
	}
	return false
}

func (m *poolModel) next(f Family) (netip.Addr, error) {
	if !m.hasFamily(f) {
		return netip.Addr{}, ErrNoFamily
	}
	for _, a := range m.universe {
		if FamilyOf(a) == f && m.usable(a) && !m.used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, ErrExhausted
}

func (m *poolModel) usedList() []netip.Addr {
	var as []netip.Addr
	for _, a := range m.universe {
		if m.used[a] {
			as = append(as, a)
		}
	}
	return as
}

func (m *poolModel) check(t *testing.T, p *Pool) {
	t.Helper()
	for _, a := range m.universe {
		if p.InUse(a) != m.used[a] {
			t.Fatalf("InUse(%v) = %v, model says %v", a, p.InUse(a), m.used[a])
		}
		if p.Contains(a) != m.contains(a) || p.Usable(a) != m.usable(a) {
			t.Fatalf("%v: Contains %v Usable %v, model says %v %v", a, p.Contains(a), p.Usable(a), m.contains(a), m.usable(a))
		}
	}
	for _, f := range []Family{IPv4, IPv6} {
		var total, used int64
		for _, a := range m.universe {
			if FamilyOf(a) == f && m.usable(a) {
				total++
				if m.used[a] {
					used++
				}
			}
		}
		s := p.Stats(f)
		if s.Total.Cmp(big.NewInt(total)) != 0 || s.Used != used || s.Free.Cmp(big.NewInt(total-used)) != 0 {
			t.Fatalf("Stats(%v) = %v/%d/%v, model says %d/%d/%d", f, s.Total, s.Used, s.Free, total, used, total-used)
		}
	}
	// The coalescing invariant: nothing free separates consecutive runs.
	for _, fam := range []*family{p.v4, p.v6} {
		if fam == nil {
			continue
		}
		var prev *run
		fam.runs.Ascend(func(r run) bool {
			if !p.Usable(r.start) || !p.Usable(r.end) || r.end.Less(r.start) {
				t.Fatalf("bad run %v-%v", r.start, r.end)
			}
			if prev != nil {
				if n, ok := p.nextUsable(fam, prev.end); ok && n == r.start {
					t.Fatalf("runs %v-%v and %v-%v should have merged", prev.start, prev.end, r.start, r.end)
				}
			}
			prev = &r
			return true
		})
	}
}

// fuzzServices are the services FuzzAllocator juggles: s0, s1 and s2 share
// key "a" but s2 clashes with s0 on a port; s3 never shares; s4 has another
// key; s5 is in another namespace; s6 and s7 are Local with different pods.
var fuzzServices = []Service{
	{Key: "ns/s0", Namespace: "ns", SharingKey: "a", Ports: []Port{{"TCP", 80}}},
	{Key: "ns/s1", Namespace: "ns", SharingKey: "a", Ports: []Port{{"UDP", 80}}},
	{Key: "ns/s2", Namespace: "ns", SharingKey: "a", Ports: []Port{{"TCP", 80}, {"TCP", 81}}},
	{Key: "ns/s3", Namespace: "ns"},
	{Key: "ns/s4", Namespace: "ns", SharingKey: "b", Ports: []Port{{"TCP", 82}}},
	{Key: "other/s5", Namespace: "other", SharingKey: "a", Ports: []Port{{"TCP", 83}}},
	{Key: "ns/s6", Namespace: "ns", SharingKey: "a", BackendKey: "app=x", Ports: []Port{{"TCP", 84}}},
	{Key: "ns/s7", Namespace: "ns", SharingKey: "a", BackendKey: "app=y", Ports: []Port{{"TCP", 85}}},
}

// fuzzPoolVersions are what SetPool may install, by pool name.
var fuzzPoolVersions = []struct {
	name   string
	ranges []string
	avoid  bool
}{
	{"p1", []string{"192.0.2.0/29"}, false},
	{"p1", []string{"192.0.2.4/30"}, false},
	{"p1", []string{"192.0.2.0/28"}, true},
	{"p2", []string{"192.0.2.16/30", "2001:db8::/126"}, false},
	{"p2", []string{"2001:db8::2/127"}, false},
}

// modelCompatible is MetalLB's sharing rule, written out plainly.
func modelCompatible(a, b Service) bool {
	if a.SharingKey == "" || a.SharingKey != b.SharingKey || a.Namespace != b.Namespace || a.BackendKey != b.BackendKey {
		return false
	}
	for _, p := range a.Ports {
		for _, q := range b.Ports {
			if p == q {
				return false
			}
		}
	}
	return true
}

func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 0, 3, 0, 5, 1, 7, 2, 8, 0})
	f.Add([]byte{0, 0, 3, 0, 9, 1, 0, 3, 6, 1, 0, 3, 1, 0, 4, 5})
	f.Add([]byte{1, 0, 0, 0, 2, 0, 4, 0, 1, 2, 0, 0, 1, 1, 1, 2, 6, 9, 7, 0})
	f.Add([]byte{2, 0, 0, 0, 0, 8, 0, 0, 3, 3, 9, 4, 8, 9, 4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		al := NewAllocator()
		pools := map[string]*Pool{}
		deleting := map[string]bool{}
		holders := map[netip.Addr]map[string]bool{} // the model
		var universe []netip.Addr
		for a := ip("192.0.2.0"); a.Less(ip("192.0.2.21")); a = a.Next() {
			universe = append(universe, a)
		}
		universe = append(universe, addrs("2001:db8::", "2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4")...)

		setPool := func(i int, del bool) {
			v := fuzzPoolVersions[i%len(fuzzPoolVersions)]
			p := NewPool(v.name, mustRanges(t, v.ranges...), v.avoid)
			al.SetPool(p, del)
			pools[v.name], deleting[v.name] = p, del
		}
		setPool(0, false)
		setPool(3, false)

		usableSomewhere := func(a netip.Addr) error {
			for _, p := range pools {
				if p.Contains(a) && !p.Usable(a) {
					return ErrBuggyIP
				}
			}
			return nil
		}
		conflict := func(s Service, a netip.Addr) bool {
			for k := range holders[a] {
				if k != s.Key && !modelCompatible(fuzzServices[keyIndex(k)], s) {
					return true
				}
			}
			return false
		}
		hold := func(s Service, a netip.Addr) {
			if holders[a] == nil {
				holders[a] = map[string]bool{}
			}
			holders[a][s.Key] = true
		}

		for i := 0; i+2 < len(data); i += 3 {
			op, x, y := data[i]%8, int(data[i+1]), int(data[i+2])
			s := fuzzServices[x%len(fuzzServices)]
			switch op {
			case 0, 1: // AllocateFrom
				name := "p1"
				if y&1 == 1 {
					name = "p2"
				}
				fam := IPv4
				if y&2 == 2 {
					fam = IPv6
				}
				want, wantErr := expectAllocate(pools, deleting, holders, conflict, s, name, fam)
				a, err := al.AllocateFrom(s, name, fam)
				if a != want || !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
					t.Fatalf("AllocateFrom(%s, %s, %v) = %v, %v; model says %v, %v", s.Key, name, fam, a, err, want, wantErr)
				}
				if err == nil {
					hold(s, a)
				}
			case 2: // Assign
				a := universe[y%len(universe)]
				var want error
				if conflict(s, a) {
					want = ErrInUse
				} else {
					want = usableSomewhere(a)
				}
				err := al.Assign(s, a)
				if !errors.Is(err, want) || (err == nil) != (want == nil) {
					t.Fatalf("Assign(%s, %v) = %v; model says %v", s.Key, a, err, want)
				}
				if err == nil {
					hold(s, a)
				}
			case 3: // Release
				a := universe[y%len(universe)]
				al.Release(s.Key, a)
				delete(holders[a], s.Key)
				if len(holders[a]) == 0 {
					delete(holders, a)
				}
			case 4: // ReleaseAll
				var want []netip.Addr
				for a, ks := range holders {
					if ks[s.Key] {
						want = append(want, a)
						delete(ks, s.Key)
						if len(ks) == 0 {
							delete(holders, a)
						}
					}
				}
				slices.SortFunc(want, netip.Addr.Compare)
				if got := al.ReleaseAll(s.Key); !slices.Equal(got, want) {
					t.Fatalf("ReleaseAll(%s) = %v, model says %v", s.Key, got, want)
				}
			case 5, 6: // SetPool, sometimes as deleting
				setPool(y, op == 6)
			case 7: // RemovePool
				name := []string{"p1", "p2"}[y%2]
				al.RemovePool(name)
				delete(pools, name)
				delete(deleting, name)
			}
			checkAllocator(t, al, pools, holders, universe)
		}
	})
}

func keyIndex(key string) int {
	return slices.IndexFunc(fuzzServices, func(s Service) bool { return s.Key == key })
}

func expectAllocate(pools map[string]*Pool, deleting map[string]bool, holders map[netip.Addr]map[string]bool,
	conflict func(Service, netip.Addr) bool, s Service, name string, fam Family) (netip.Addr, error) {
	p := pools[name]
	switch {
	case p == nil:
		return netip.Addr{}, ErrUnknownPool
	case deleting[name]:
		return netip.Addr{}, ErrPoolDeleting
	case !slices.Contains(p.Families(), fam):
		return netip.Addr{}, ErrNoFamily
	}
	var held []netip.Addr
	for a := range holders {
		held = append(held, a)
	}
	slices.SortFunc(held, netip.Addr.Compare)
	for _, a := range held {
		if holders[a][s.Key] && FamilyOf(a) == fam && p.Usable(a) {
			if conflict(s, a) {
				return netip.Addr{}, ErrInUse
			}
			return a, nil
		}
	}
	if s.SharingKey != "" {
		for _, a := range held {
			if FamilyOf(a) == fam && p.Usable(a) && !conflict(s, a) {
				return a, nil
			}
		}
	}
	// Lowest usable address that nobody holds.
	for _, r := range p.Ranges() {
		if r.Family() != fam {
			continue
		}
		for a := r.First; a.IsValid() && a.Compare(r.Last) <= 0; a = a.Next() {
			if p.Usable(a) && holders[a] == nil {
				return a, nil
			}
		}
	}
	return netip.Addr{}, ErrExhausted
}

func checkAllocator(t *testing.T, al *Allocator, pools map[string]*Pool, holders map[netip.Addr]map[string]bool, universe []netip.Addr) {
	t.Helper()
	for _, a := range universe {
		var want []string
		for k := range holders[a] {
			want = append(want, k)
		}
		slices.Sort(want)
		if got := al.Holders(a); !slices.Equal(got, want) {
			t.Fatalf("Holders(%v) = %v, model says %v", a, got, want)
		}
		for i, k := range want {
			for _, k2 := range want[i+1:] {
				if !modelCompatible(fuzzServices[keyIndex(k)], fuzzServices[keyIndex(k2)]) {
					t.Fatalf("%v held by incompatible %s and %s", a, k, k2)
				}
			}
		}
		for name, p := range pools {
			if got, want := p.InUse(a), len(want) > 0 && p.Usable(a); got != want {
				t.Fatalf("pool %s: InUse(%v) = %v, want %v", name, a, got, want)
			}
		}
	}
	for name, p := range pools {
		st, ok := al.PoolStats(name)
		if !ok {
			t.Fatalf("PoolStats(%s) missing", name)
		}
		for _, f := range p.Families() {
			var used int64
			for _, a := range universe {
				if FamilyOf(a) == f && p.Usable(a) && len(holders[a]) > 0 {
					used++
				}
			}
			if st[f].Used != used {
				t.Fatalf("pool %s %v: Used %d, model says %d", name, f, st[f].Used, used)
			}
		}
	}
}
