package ipam

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/pool"
)

// Which of two overlapping pools keeps its addresses.
func TestCompileAllOverlapWinner(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type poolDef struct {
		name    string
		created time.Time
		ready   bool  // status Ready=True
		readyAt int64 // the condition's observedGeneration (the pool is at generation 2)
	}
	mk := func(d poolDef, addr string) v1alpha1.IPPool {
		p := v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: d.name, Generation: 2, CreationTimestamp: metav1.NewTime(d.created)},
			Spec: v1alpha1.IPPoolSpec{Addresses: []string{addr}}}
		if d.ready {
			p.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Valid", ObservedGeneration: d.readyAt}}
		}
		return p
	}
	ranges := func(s string) []pool.Range {
		rs, err := pool.ParseRanges([]string{s})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	for _, tc := range []struct {
		name   string
		a, b   poolDef           // a: 198.51.100.0/24, b: 198.51.100.128/25
		loaded map[string]string // pool name -> the ranges it is loaded with
		winner string
	}{
		{"older wins over a smaller name", poolDef{name: "zeta", created: t0}, poolDef{name: "alpha", created: t0.Add(time.Second)}, nil, "zeta"},
		{"same second, neither established: name", poolDef{name: "zeta", created: t0}, poolDef{name: "alpha", created: t0}, nil, "alpha"},
		{"same second, the loaded one wins", poolDef{name: "zeta", created: t0}, poolDef{name: "alpha", created: t0},
			map[string]string{"zeta": "198.51.100.0/24"}, "zeta"},
		{"same second, loaded with other ranges does not count", poolDef{name: "zeta", created: t0}, poolDef{name: "alpha", created: t0},
			map[string]string{"zeta": "198.51.101.0/24"}, "alpha"},
		{"same second, Ready in status wins (after a restart)", poolDef{name: "zeta", created: t0, ready: true, readyAt: 2}, poolDef{name: "alpha", created: t0}, nil, "zeta"},
		{"same second, Ready for an older generation does not count", poolDef{name: "zeta", created: t0, ready: true, readyAt: 1}, poolDef{name: "alpha", created: t0}, nil, "alpha"},
		{"both established: name", poolDef{name: "zeta", created: t0, ready: true, readyAt: 2}, poolDef{name: "alpha", created: t0, ready: true, readyAt: 2}, nil, "alpha"},
		{"established but newer still loses", poolDef{name: "zeta", created: t0}, poolDef{name: "alpha", created: t0.Add(time.Second), ready: true, readyAt: 2},
			map[string]string{"alpha": "198.51.100.128/25"}, "zeta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loaded := map[string][]pool.Range{}
			for n, r := range tc.loaded {
				loaded[n] = ranges(r)
			}
			items := []v1alpha1.IPPool{mk(tc.a, "198.51.100.0/24"), mk(tc.b, "198.51.100.128/25")}
			for _, order := range [][]v1alpha1.IPPool{items, {items[1], items[0]}} {
				good, _, bad := compileAll(slices.Clone(order), loaded)
				loser := tc.a.name
				if loser == tc.winner {
					loser = tc.b.name
				}
				if _, ok := good[tc.winner]; !ok || len(good) != 1 {
					t.Fatalf("valid pools %v, want only %s (problems %v)", keys(good), tc.winner, bad)
				}
				if p := bad[loser]; p.Reason != "Overlap" || !strings.Contains(p.Message, `pool "`+tc.winner+`"`) {
					t.Errorf("%s: problem %+v, want Overlap naming %s", loser, p, tc.winner)
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
