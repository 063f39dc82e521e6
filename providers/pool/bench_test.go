package pool

import (
	"fmt"
	"runtime"
	"testing"
)

const benchServices = 100_000

func BenchmarkAllocate100kSlash8(b *testing.B) {
	benchmarkAllocate(b, "10.0.0.0/8", IPv4)
}

func BenchmarkAllocate100kSlash64(b *testing.B) {
	benchmarkAllocate(b, "2001:db8::/64", IPv6)
}

// benchmarkAllocate fills a fresh allocator with 100k services per
// iteration. Besides the usual numbers it reports the time and the bytes
// allocated per address, and the heap still in use per held address once
// all 100k are held (what a controller pays at rest).
func benchmarkAllocate(b *testing.B, cidr string, f Family) {
	ranges := mustRanges(b, cidr)
	svcs := make([]Service, benchServices)
	for i := range svcs {
		svcs[i] = Service{Key: fmt.Sprintf("ns/svc-%d", i), Namespace: "ns"}
	}
	var before, after runtime.MemStats
	var retained uint64
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		runtime.ReadMemStats(&before)
		al := NewAllocator()
		al.SetPool(NewPool("big", ranges, false), false)
		for i := range svcs {
			if _, err := al.AllocateFrom(svcs[i], "big", f); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if after.HeapAlloc > before.HeapAlloc {
			retained = after.HeapAlloc - before.HeapAlloc
		}
		if st, _ := al.PoolStats("big"); st[f].Used != benchServices {
			b.Fatalf("Used = %d", st[f].Used)
		}
		runtime.KeepAlive(al)
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N) * benchServices
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/addr")
	b.ReportMetric(float64(retained)/benchServices, "heap-B/addr")
}
