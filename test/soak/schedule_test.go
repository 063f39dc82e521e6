package soak

import (
	"reflect"
	"testing"
	"time"
)

var shortOptions = ScheduleOptions{Duration: 2 * time.Minute, Nodes: 3, QuietMin: 5 * time.Second, QuietMax: 5 * time.Second,
	PauseMin: 30 * time.Second, PauseMax: 30 * time.Second}

var longOptions = ScheduleOptions{Duration: 20 * time.Minute, Nodes: 3, QuietMin: 10 * time.Second, QuietMax: 30 * time.Second,
	PauseMin: 30 * time.Second, PauseMax: 60 * time.Second}

// A run is replayed from its seed: the same seed gives the same schedule, another seed
// another one.
func TestScheduleDeterministic(t *testing.T) {
	a, b := NewSchedule(42, longOptions), NewSchedule(42, longOptions)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 42 gave two schedules:\n%s\n%s", FormatSchedule(a), FormatSchedule(b))
	}
	if c := NewSchedule(43, longOptions); reflect.DeepEqual(a, c) {
		t.Fatalf("seeds 42 and 43 gave the same schedule:\n%s", FormatSchedule(a))
	}
}

// Every kind of fault comes once per round, every hold is in its range, node faults name a
// lab node, and the schedule fits the duration.
func TestScheduleRoundsAndBounds(t *testing.T) {
	for seed := int64(1); seed <= 50; seed++ {
		for _, o := range []ScheduleOptions{shortOptions, longOptions} {
			s := NewSchedule(seed, o)
			if len(s) == 0 || len(s)%len(Kinds) != 0 {
				t.Fatalf("seed %d: %d faults, not whole rounds of %d", seed, len(s), len(Kinds))
			}
			var total time.Duration
			for r := 0; r < len(s); r += len(Kinds) {
				seen := map[Kind]bool{}
				for _, f := range s[r : r+len(Kinds)] {
					seen[f.Kind] = true
				}
				if len(seen) != len(Kinds) {
					t.Fatalf("seed %d: round at %d has kinds %v", seed, r, seen)
				}
			}
			for _, f := range s {
				want := holds[f.Kind]
				if f.Kind == PauseAPIServer {
					want = span{o.PauseMin, o.PauseMax}
				}
				if f.Hold < want.min || f.Hold > want.max {
					t.Errorf("seed %d: %s holds %s, outside %s–%s", seed, f, f.Hold, want.min, want.max)
				}
				if f.Quiet < o.QuietMin || f.Quiet > o.QuietMax {
					t.Errorf("seed %d: %s after %s of quiet, outside %s–%s", seed, f, f.Quiet, o.QuietMin, o.QuietMax)
				}
				if onNode(f.Kind) != (f.Node >= 1 && f.Node <= o.Nodes) {
					t.Errorf("seed %d: %s names node %d", seed, f, f.Node)
				}
				total += f.Quiet + f.Hold + convergeEstimate
			}
			if len(s) > len(Kinds) && total > o.Duration {
				t.Errorf("seed %d: %d faults take an estimated %s, longer than %s", seed, len(s), total, o.Duration)
			}
		}
	}
	// The short run is one round; twenty minutes hold several.
	if n := len(NewSchedule(7, shortOptions)); n != len(Kinds) {
		t.Errorf("the short schedule has %d faults, want one round of %d", n, len(Kinds))
	}
	if n := len(NewSchedule(7, longOptions)); n < 2*len(Kinds) {
		t.Errorf("twenty minutes hold %d faults, want at least two rounds", n)
	}
}

// A schedule restricted to some kinds holds only those, still in whole rounds, and the same
// seed without a restriction draws what it always drew.
func TestScheduleKinds(t *testing.T) {
	o := longOptions
	o.Kinds = []Kind{PauseAPIServer}
	s := NewSchedule(9, o)
	if len(s) < 2 {
		t.Fatalf("twenty minutes of pauses alone hold %d faults, want several", len(s))
	}
	for _, f := range s {
		if f.Kind != PauseAPIServer {
			t.Fatalf("restricted to pauses, the schedule holds %s:\n%s", f, FormatSchedule(s))
		}
	}
	o.Kinds = []Kind{PauseAPIServer, RestartEtcd}
	if s := NewSchedule(9, o); len(s)%2 != 0 {
		t.Fatalf("two kinds give %d faults, not whole rounds:\n%s", len(s), FormatSchedule(s))
	}
	if a, b := NewSchedule(9, longOptions), NewSchedule(9, ScheduleOptions{Duration: 20 * time.Minute, Nodes: 3,
		QuietMin: 10 * time.Second, QuietMax: 30 * time.Second, PauseMin: 30 * time.Second, PauseMax: 60 * time.Second,
		Kinds: Kinds}); !reflect.DeepEqual(a, b) {
		t.Fatalf("every kind named gives another schedule than none:\n%s\n%s", FormatSchedule(a), FormatSchedule(b))
	}
}
