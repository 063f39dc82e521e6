package pool

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

func svc(key, sharing string, ports ...string) Service {
	ns, _, _ := strings.Cut(key, "/")
	s := Service{Key: key, Namespace: ns, SharingKey: sharing}
	for _, p := range ports {
		proto, num, _ := strings.Cut(p, "/")
		var n int32
		fmt.Sscan(num, &n)
		s.Ports = append(s.Ports, Port{Protocol: proto, Port: n})
	}
	return s
}

func local(s Service, backend string) Service {
	s.BackendKey = backend
	return s
}

func newAllocator(t testing.TB, pools ...*Pool) *Allocator {
	t.Helper()
	al := NewAllocator()
	for _, p := range pools {
		al.SetPool(p, false)
	}
	return al
}

func mustAllocate(t testing.TB, al *Allocator, s Service, pool string, f Family) netip.Addr {
	t.Helper()
	a, err := al.AllocateFrom(s, pool, f)
	if err != nil {
		t.Fatalf("AllocateFrom(%s, %s, %v): %v", s.Key, pool, f, err)
	}
	return a
}

func addrs(ss ...string) []netip.Addr {
	var as []netip.Addr
	for _, s := range ss {
		as = append(as, ip(s))
	}
	return as
}

func TestSharing(t *testing.T) {
	web := svc("default/web", "a", "TCP/80")
	tests := []struct {
		name  string
		other Service
		want  string // "" means sharing is allowed
	}{
		{"compatible", svc("default/dns", "a", "UDP/53", "TCP/53"), ""},
		{"same port other protocol", svc("default/quic", "a", "UDP/80"), ""},
		{"empty protocol means TCP", svc("default/api", "a", "/80"), `198.51.100.0: port TCP/80 is also used by default/web`},
		{"lower-case protocol", svc("default/api", "a", "tcp/80"), `198.51.100.0: port TCP/80 is also used by default/web`},
		{"port clash", svc("default/api", "a", "TCP/443", "TCP/80"), `198.51.100.0: port TCP/80 is also used by default/web`},
		{"key differs", svc("default/api", "b", "TCP/443"), `198.51.100.0 is used by default/web (sharing key "a" differs from "b")`},
		{"no key", svc("default/api", "", "TCP/443"), `198.51.100.0 is used by default/web (default/api has no sharing key)`},
		{"other namespace", svc("other/api", "a", "TCP/443"), `198.51.100.0 is in use by a Service in another namespace (only Services in the same namespace can share an address, unless their pool has shareAcrossNamespaces)`},
		{"other namespace, holder without key", svc("other/api", "", "TCP/443"), `198.51.100.0 is in use by a Service in another namespace (only Services in the same namespace can share an address, unless their pool has shareAcrossNamespaces)`},
		{"local vs cluster", local(svc("default/api", "a", "TCP/443"), "app=web"), `198.51.100.0 is used by default/web (externalTrafficPolicy Local and Cluster services cannot share)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			al := newAllocator(t, newPool(t, false, "198.51.100.0/24"))
			a := mustAllocate(t, al, web, "blue", IPv4)
			err := al.Assign(tt.other, a)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Assign: %v", err)
				}
				if got := al.Holders(a); !slices.Equal(got, []string{tt.other.Key, web.Key}) && !slices.Equal(got, []string{web.Key, tt.other.Key}) {
					t.Errorf("Holders = %v", got)
				}
				// AllocateFrom also prefers the shared address.
				third := svc("default/third", "a", "TCP/9999")
				if b := mustAllocate(t, al, third, "blue", IPv4); b != a {
					t.Errorf("sharer got %v, want %v", b, a)
				}
				return
			}
			if !errors.Is(err, ErrInUse) || err.Error() != tt.want {
				t.Fatalf("Assign error %q, want %q (ErrInUse)", err, tt.want)
			}
			// A sharer that cannot share gets a fresh address instead.
			if b := mustAllocate(t, al, tt.other, "blue", IPv4); b == a {
				t.Errorf("incompatible service got the shared address %v", b)
			}
		})
	}
}

func TestSharingRefusals(t *testing.T) {
	tests := []struct {
		name        string
		holder, new Service
		want        string
	}{
		{"holder has no key", svc("default/web", "", "TCP/80"), svc("default/api", "a", "TCP/443"),
			`198.51.100.0 is used by default/web (it has no sharing key)`},
		{"different pods", local(svc("default/web", "a", "TCP/80"), "app=web"), local(svc("default/api", "a", "TCP/443"), "app=api"),
			`198.51.100.0 is used by default/web (externalTrafficPolicy Local services must select the same pods)`},
		{"cluster vs local", svc("default/web", "a", "TCP/80"), local(svc("default/api", "a", "TCP/443"), "app=web"),
			`198.51.100.0 is used by default/web (externalTrafficPolicy Local and Cluster services cannot share)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			al := newAllocator(t, newPool(t, false, "198.51.100.0/24"))
			a := mustAllocate(t, al, tt.holder, "blue", IPv4)
			err := al.Assign(tt.new, a)
			if !errors.Is(err, ErrInUse) || err.Error() != tt.want {
				t.Fatalf("Assign error %q, want %q", err, tt.want)
			}
		})
	}
	// Same pods: allowed.
	al := newAllocator(t, newPool(t, false, "198.51.100.0/24"))
	a := mustAllocate(t, al, local(svc("default/web", "a", "TCP/80"), "app=web"), "blue", IPv4)
	if err := al.Assign(local(svc("default/api", "a", "TCP/443"), "app=web"), a); err != nil {
		t.Error(err)
	}
}

func TestSharingThreeWay(t *testing.T) {
	// A newcomer must be compatible with every holder, not just one.
	al := newAllocator(t, newPool(t, false, "198.51.100.0/24"))
	a := mustAllocate(t, al, svc("default/web", "a", "TCP/80"), "blue", IPv4)
	if err := al.Assign(svc("default/dns", "a", "UDP/53"), a); err != nil {
		t.Fatal(err)
	}
	err := al.Assign(svc("default/dns2", "a", "UDP/53"), a)
	if !errors.Is(err, ErrInUse) || err.Error() != "198.51.100.0: port UDP/53 is also used by default/dns" {
		t.Errorf("got %v", err)
	}
	// AllocateFrom skips the shared address for it and picks a fresh one.
	if b := mustAllocate(t, al, svc("default/dns2", "a", "UDP/53"), "blue", IPv4); b != ip("198.51.100.1") {
		t.Errorf("got %v", b)
	}
	// Releasing one sharer keeps the address for the others.
	al.Release("default/web", a)
	if got := al.Holders(a); !slices.Equal(got, []string{"default/dns"}) {
		t.Errorf("Holders = %v", got)
	}
	al.Release("default/dns", a)
	if got := al.Holders(a); got != nil {
		t.Errorf("Holders = %v", got)
	}
	if b := mustAllocate(t, al, svc("default/x", ""), "blue", IPv4); b != a {
		t.Errorf("freed address not reused: got %v", b)
	}
}

func TestSharedAddressLowestFirst(t *testing.T) {
	al := newAllocator(t, newPool(t, false, "198.51.100.0/24", "2001:db8::/64"))
	// Occupy .0 with a non-sharer, then two group addresses.
	mustAllocate(t, al, svc("default/solo", ""), "blue", IPv4)
	mustAllocate(t, al, svc("default/a", "g", "TCP/1"), "blue", IPv4) // .1
	mustAllocate(t, al, svc("default/b", "g", "TCP/1"), "blue", IPv4) // .2, port clash with a
	mustAllocate(t, al, svc("default/c", "g", "TCP/2"), "blue", IPv6)
	if b := mustAllocate(t, al, svc("default/d", "g", "TCP/3"), "blue", IPv4); b != ip("198.51.100.1") {
		t.Errorf("got %v, want the lowest shared address", b)
	}
	if b := mustAllocate(t, al, svc("default/e", "g", "TCP/1"), "blue", IPv4); b != ip("198.51.100.3") {
		t.Errorf("got %v, want a fresh address (TCP/1 taken on both shared ones)", b)
	}
	if b := mustAllocate(t, al, svc("default/f", "g", "TCP/4"), "blue", IPv6); b != ip("2001:db8::") {
		t.Errorf("got %v, want the shared IPv6 address", b)
	}
}

func TestAssignIdempotent(t *testing.T) {
	al := newAllocator(t, newPool(t, false, "198.51.100.0/24"))
	web := svc("default/web", "a", "TCP/80")
	a := ip("198.51.100.7")
	for range 3 {
		if err := al.Assign(web, a); err != nil {
			t.Fatal(err)
		}
	}
	if got := al.Held(web.Key); !slices.Equal(got, addrs("198.51.100.7")) {
		t.Errorf("Held = %v", got)
	}
	st, _ := al.PoolStats("blue")
	if st[IPv4].Used != 1 {
		t.Errorf("Used = %d", st[IPv4].Used)
	}
	if err := al.Assign(svc("default/api", "a", "TCP/443"), a); err != nil {
		t.Fatal(err)
	}
	// Updating web's ports to clash with api's is refused; the check skips
	// web itself, whose own old ports do not count.
	if err := al.Assign(svc("default/web", "a", "TCP/80", "TCP/443"), a); !errors.Is(err, ErrInUse) {
		t.Errorf("got %v, want ErrInUse", err)
	}
	if err := al.Assign(svc("default/web", "a", "TCP/8080"), a); err != nil {
		t.Error(err)
	}
	// The update took: TCP/80 is free again on a, TCP/8080 is not.
	if err := al.Assign(svc("default/new", "a", "TCP/80"), a); err != nil {
		t.Error(err)
	}
	if err := al.Assign(svc("default/new2", "a", "TCP/8080"), a); !errors.Is(err, ErrInUse) {
		t.Errorf("got %v, want ErrInUse", err)
	}
	// AllocateFrom for a family it already holds from that pool returns it.
	if b := mustAllocate(t, al, svc("default/web", "a", "TCP/8080"), "blue", IPv4); b != a {
		t.Errorf("got %v, want %v again", b, a)
	}
	if got := al.Held(web.Key); len(got) != 1 {
		t.Errorf("Held = %v", got)
	}
}

func TestAssignChecks(t *testing.T) {
	al := newAllocator(t, newPool(t, true, "198.51.100.0/24"))
	if err := al.Assign(svc("default/web", ""), ip("198.51.100.255")); !errors.Is(err, ErrBuggyIP) {
		t.Errorf("got %v, want ErrBuggyIP", err)
	}
	if got := al.Held("default/web"); len(got) != 0 {
		t.Errorf("Held after failed Assign = %v", got)
	}
	if err := al.Assign(svc("", ""), ip("198.51.100.1")); err == nil {
		t.Error("Assign without a key succeeded")
	}
	if err := al.Assign(svc("default/web", ""), netip.Addr{}); err == nil {
		t.Error("Assign of an invalid address succeeded")
	}
	// The mapped form is the same address.
	if err := al.Assign(svc("default/web", ""), ip("::ffff:198.51.100.1")); err != nil {
		t.Fatal(err)
	}
	if err := al.Assign(svc("default/api", ""), ip("198.51.100.1")); !errors.Is(err, ErrInUse) {
		t.Errorf("got %v, want ErrInUse", err)
	}
	if got := al.Held("default/web"); !slices.Equal(got, addrs("198.51.100.1")) {
		t.Errorf("Held = %v", got)
	}
}

func TestAllocateFromErrors(t *testing.T) {
	al := newAllocator(t, newPool(t, false, "198.51.100.0/31"))
	if _, err := al.AllocateFrom(svc("default/a", ""), "red", IPv4); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("got %v, want ErrUnknownPool", err)
	}
	if _, err := al.AllocateFrom(svc("default/a", ""), "blue", IPv6); !errors.Is(err, ErrNoFamily) {
		t.Errorf("got %v, want ErrNoFamily", err)
	}
	mustAllocate(t, al, svc("default/a", ""), "blue", IPv4)
	mustAllocate(t, al, svc("default/b", ""), "blue", IPv4)
	if _, err := al.AllocateFrom(svc("default/c", ""), "blue", IPv4); !errors.Is(err, ErrExhausted) {
		t.Errorf("got %v, want ErrExhausted", err)
	}
}

func TestOrphans(t *testing.T) {
	al := newAllocator(t, newPool(t, false, "198.51.100.0/24"))
	for i := range 4 {
		mustAllocate(t, al, svc(fmt.Sprintf("default/s%d", i), ""), "blue", IPv4) // .0 - .3
	}
	// Shrink: .0 and .1 fall outside and become orphans.
	al.SetPool(NewPool("blue", mustRanges(t, "198.51.100.2-198.51.100.10"), false), false)
	if got := al.Orphans(); !slices.Equal(got, addrs("198.51.100.0", "198.51.100.1")) {
		t.Errorf("Orphans = %v", got)
	}
	if got := al.PoolOf(ip("198.51.100.0")); got != "" {
		t.Errorf("PoolOf(orphan) = %q", got)
	}
	st, _ := al.PoolStats("blue")
	if st[IPv4].Used != 2 || st[IPv4].Total.Int64() != 9 {
		t.Errorf("stats after shrink: total %v used %d", st[IPv4].Total, st[IPv4].Used)
	}
	if got := al.PoolHolders("blue"); !slices.Equal(got, []string{"default/s2", "default/s3"}) {
		t.Errorf("PoolHolders = %v", got)
	}
	// Orphans are still held: no one else may have them.
	if err := al.Assign(svc("default/x", ""), ip("198.51.100.0")); !errors.Is(err, ErrInUse) {
		t.Errorf("got %v, want ErrInUse", err)
	}
	// Grow back: they are reserved in the pool again, never re-handed.
	al.SetPool(NewPool("blue", mustRanges(t, "198.51.100.0/24"), false), false)
	if got := al.Orphans(); len(got) != 0 {
		t.Errorf("Orphans = %v", got)
	}
	if got := al.PoolOf(ip("198.51.100.0")); got != "blue" {
		t.Errorf("PoolOf = %q", got)
	}
	if b := mustAllocate(t, al, svc("default/y", ""), "blue", IPv4); b != ip("198.51.100.4") {
		t.Errorf("got %v, want 198.51.100.4", b)
	}

	// RemovePool orphans everything, still held.
	al.RemovePool("blue")
	if _, ok := al.Pool("blue"); ok {
		t.Error("pool still there")
	}
	if got := al.Orphans(); len(got) != 5 {
		t.Errorf("Orphans = %v", got)
	}
	if got := al.Held("default/s0"); !slices.Equal(got, addrs("198.51.100.0")) {
		t.Errorf("Held = %v", got)
	}
	// A new pool over the same addresses adopts them.
	al.SetPool(NewPool("green", mustRanges(t, "198.51.100.0/29"), false), false)
	if b := mustAllocate(t, al, svc("default/z", ""), "green", IPv4); b != ip("198.51.100.5") {
		t.Errorf("got %v, want 198.51.100.5", b)
	}
	// Releasing an orphan frees it for good; releasing it again is a no-op.
	al.SetPool(NewPool("green", mustRanges(t, "198.51.100.4/30"), false), false)
	al.Release("default/s0", ip("198.51.100.0"))
	al.Release("default/s0", ip("198.51.100.0"))
	if got := al.Holders(ip("198.51.100.0")); got != nil {
		t.Errorf("Holders = %v", got)
	}
	// Assign outside every pool records an orphan (state restore).
	if err := al.Assign(svc("default/w", ""), ip("203.0.113.9")); err != nil {
		t.Fatal(err)
	}
	if got := al.Orphans(); !slices.Contains(got, ip("203.0.113.9")) {
		t.Errorf("Orphans = %v", got)
	}
}

func TestDeletingPool(t *testing.T) {
	al := newAllocator(t, newPool(t, false, "198.51.100.0/24"))
	a := mustAllocate(t, al, svc("default/web", ""), "blue", IPv4)
	p, _ := al.Pool("blue")
	al.SetPool(p, true)
	_, err := al.AllocateFrom(svc("default/api", ""), "blue", IPv4)
	if !errors.Is(err, ErrPoolDeleting) || !strings.Contains(err.Error(), `pool "blue" is being deleted`) {
		t.Errorf("got %v, want ErrPoolDeleting", err)
	}
	st, ok := al.PoolStats("blue")
	if !ok || st[IPv4].Used != 1 {
		t.Errorf("PoolStats = %v, %v", st, ok)
	}
	if got := al.PoolHolders("blue"); !slices.Equal(got, []string{"default/web"}) {
		t.Errorf("PoolHolders = %v", got)
	}
	if got := al.PoolOf(a); got != "blue" {
		t.Errorf("PoolOf = %q", got)
	}
	// Restoring state into a deleting pool still works.
	if err := al.Assign(svc("default/old", ""), ip("198.51.100.9")); err != nil {
		t.Error(err)
	}
	al.ReleaseAll("default/web")
	al.ReleaseAll("default/old")
	if got := al.PoolHolders("blue"); len(got) != 0 {
		t.Errorf("PoolHolders = %v", got)
	}
	// Un-deleting re-enables allocation.
	al.SetPool(p, false)
	if b := mustAllocate(t, al, svc("default/api", ""), "blue", IPv4); b != a {
		t.Errorf("got %v, want %v", b, a)
	}
}

func TestReleaseAll(t *testing.T) {
	al := newAllocator(t,
		newPool(t, false, "198.51.100.0/24", "2001:db8::/64"),
		NewPool("red", mustRanges(t, "203.0.113.0/24"), false))
	web := svc("default/web", "")
	mustAllocate(t, al, web, "blue", IPv6)
	mustAllocate(t, al, web, "red", IPv4)
	mustAllocate(t, al, web, "blue", IPv4)
	want := addrs("198.51.100.0", "203.0.113.0", "2001:db8::")
	if got := al.Held(web.Key); !slices.Equal(got, want) {
		t.Errorf("Held = %v, want %v", got, want)
	}
	if got := al.ReleaseAll(web.Key); !slices.Equal(got, want) {
		t.Errorf("ReleaseAll = %v, want %v", got, want)
	}
	if got := al.Held(web.Key); len(got) != 0 {
		t.Errorf("Held after ReleaseAll = %v", got)
	}
	if got := al.ReleaseAll(web.Key); len(got) != 0 {
		t.Errorf("second ReleaseAll = %v", got)
	}
	for _, name := range []string{"blue", "red"} {
		st, _ := al.PoolStats(name)
		for f, s := range st {
			if s.Used != 0 {
				t.Errorf("%s %v Used = %d", name, f, s.Used)
			}
		}
	}
}

func TestOverlappingPools(t *testing.T) {
	// The controller refuses overlapping pools, but should two exist, an
	// address must still never go to two services.
	al := newAllocator(t,
		NewPool("a", mustRanges(t, "198.51.100.0/30"), false),
		NewPool("b", mustRanges(t, "198.51.100.2/31"), false))
	got := map[netip.Addr]bool{}
	for i := range 4 {
		pool := "b"
		if i%2 == 1 {
			pool = "a"
		}
		a, err := al.AllocateFrom(svc(fmt.Sprintf("default/s%d", i), ""), pool, IPv4)
		if err != nil {
			t.Fatalf("allocation %d from %s: %v", i, pool, err)
		}
		if got[a] {
			t.Fatalf("%v handed out twice", a)
		}
		got[a] = true
	}
	if al.PoolOf(ip("198.51.100.2")) != "a" {
		t.Errorf("PoolOf = %q, want the lowest name", al.PoolOf(ip("198.51.100.2")))
	}
}

func TestAllocatorConcurrent(t *testing.T) {
	al := newAllocator(t, newPool(t, false, "10.0.0.0/16"))
	var wg sync.WaitGroup
	results := make([][]netip.Addr, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				a, err := al.AllocateFrom(svc(fmt.Sprintf("ns/g%d-%d", g, i), ""), "blue", IPv4)
				if err != nil {
					t.Error(err)
					return
				}
				results[g] = append(results[g], a)
				if i%3 == 0 {
					al.Release(fmt.Sprintf("ns/g%d-%d", g, i), a)
				}
				al.PoolStats("blue")
			}
		}()
	}
	wg.Wait()
	st, _ := al.PoolStats("blue")
	if st[IPv4].Used != 4*(200-67) {
		t.Errorf("Used = %d, want %d", st[IPv4].Used, 4*(200-67))
	}
}

// A pool that opts in lets Services of different namespaces share by key, as MetalLB does;
// every other rule still holds, and a holder in another namespace is never named.
func TestSharingAcrossNamespaces(t *testing.T) {
	al := newAllocator(t, newPool(t, false, "198.51.100.0/24").ShareAcrossNamespaces())
	web := svc("a/web", "k", "TCP/80")
	a := mustAllocate(t, al, web, "blue", IPv4)
	// Found by key from another namespace, and assignable there.
	if b := mustAllocate(t, al, svc("b/dns", "k", "UDP/53"), "blue", IPv4); b != a {
		t.Errorf("b/dns got %v, want the shared %v", b, a)
	}
	if err := al.Assign(svc("c/api", "k", "TCP/443"), a); err != nil {
		t.Errorf("c/api: %v", err)
	}
	for _, tt := range []struct {
		other Service
		want  string
	}{
		{svc("d/x", "other", "TCP/8080"), "198.51.100.0 is in use by a Service in another namespace with another sharing key or none"},
		{svc("d/x", "", "TCP/8080"), "198.51.100.0 is in use by a Service in another namespace with another sharing key or none"},
		{svc("d/x", "k", "TCP/80"), "198.51.100.0: port TCP/80 is also used by a Service in another namespace"},
	} {
		if err := al.Assign(tt.other, a); !errors.Is(err, ErrInUse) || err.Error() != tt.want {
			t.Errorf("%+v: error %q, want %q", tt.other, err, tt.want)
		}
	}
	// Releasing the sharers one by one frees the address only after the last.
	for _, k := range []string{"a/web", "b/dns", "c/api"} {
		al.ReleaseAll(k)
	}
	if h := al.Holders(a); len(h) != 0 {
		t.Errorf("holders after release: %v", h)
	}
	if b := mustAllocate(t, al, svc("e/new", "k", "TCP/80"), "blue", IPv4); b != a {
		t.Errorf("the freed address was not handed out again: got %v", b)
	}

	// Without the opt-in, the same key in another namespace gets its own address.
	al = newAllocator(t, newPool(t, false, "198.51.100.0/24"))
	a = mustAllocate(t, al, web, "blue", IPv4)
	if b := mustAllocate(t, al, svc("b/dns", "k", "UDP/53"), "blue", IPv4); b == a {
		t.Errorf("b/dns shares %v with a/web without the pool's opt-in", a)
	}
}
