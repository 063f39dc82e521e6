package soak

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s*1000) * time.Millisecond) }

// attempts of one probe, one a second from 0 to n-1 s, each taking 100 ms; failed lists the
// seconds that failed.
func series(probe string, n int, failed ...int) []Attempt {
	var out []Attempt
	for i := 0; i < n; i++ {
		ok := true
		for _, f := range failed {
			ok = ok && f != i
		}
		out = append(out, Attempt{Probe: probe, Start: at(float64(i)), End: at(float64(i) + 0.1), OK: ok})
	}
	return out
}

func TestCountsAndGaps(t *testing.T) {
	attempts := append(series("l2-v4", 20, 5, 6, 7), series("bgp-v4", 20, 15)...)
	all := Counts(attempts, Window{at(0), at(20)}, at(0), at(20))
	if c := all["l2-v4"]; c.Attempted != 20 || c.Failed != 3 || c.LongestGap != 4*time.Second {
		t.Errorf("l2-v4 over the run: %+v, want 20 attempted, 3 failed, gap 4s (4.1 → 8.1)", c)
	}
	// The last answer is at 19.1 s, the run ends at 20 s: that gap (0.9 s) is smaller.
	if c := all["bgp-v4"]; c.Attempted != 20 || c.Failed != 1 || c.LongestGap != 2*time.Second {
		t.Errorf("bgp-v4 over the run: %+v, want 20, 1, 2s", c)
	}
	// A window from 6 s to 9 s: three l2-v4 attempts start in it (6, 7, 8), two failed; the
	// gap 4.1 → 8.1 s overlaps it in part and counts in full.
	w := Counts(attempts, Window{at(6), at(8.5)}, at(0), at(20))
	if c := w["l2-v4"]; c.Attempted != 3 || c.Failed != 2 || c.LongestGap != 4*time.Second {
		t.Errorf("l2-v4 in [6, 8.5]: %+v, want 3, 2, 4s", c)
	}
	if c := w["bgp-v4"]; c.Attempted != 3 || c.Failed != 0 || c.LongestGap != time.Second {
		t.Errorf("bgp-v4 in [6, 8.5]: %+v, want 3, 0, 1s", c)
	}
	if s := Sum(w); s.Attempted != 6 || s.Failed != 2 || s.LongestGap != 4*time.Second {
		t.Errorf("sum in [6, 8.5]: %+v", s)
	}
	// Inside the windows: both probes' attempts at 5, 6 and 15 s.
	q := Quiet(attempts, []Window{{at(5), at(6.5)}, {at(15), at(15)}})
	if n := len(q); n != 40-6 {
		t.Errorf("%d attempts outside the windows, want 34", n)
	}
	if s := Sum(Counts(q, Window{at(0), at(20)}, at(0), at(20))); s.Failed != 1 {
		t.Errorf("outside the windows %d failed, want 1 (l2-v4 at 7 s)", s.Failed)
	}
}

// What fails a run: a lost connection during a fail-static fault or with no fault on, an
// unrecovered fault, any changed or duplicate address, a double announcement outside a
// fault; a lost connection during a speaker kill or a double announcement during a failover
// does not.
func TestReportFailures(t *testing.T) {
	base := func() *Report {
		return &Report{Seed: 1, Start: at(0), End: at(60), Probes: []string{"l2-v4", "bgp-v4"},
			Attempts: append(series("l2-v4", 60), series("bgp-v4", 60)...),
			Results: []Result{
				{Fault: Fault{Kind: KillSpeaker, Node: 2, Hold: 3 * time.Second}, Injected: at(10), Undone: at(13), Converged: at(15)},
				{Fault: Fault{Kind: PauseAPIServer, Hold: 30 * time.Second}, Injected: at(20), Undone: at(50), Converged: at(52)},
			}}
	}
	r := base()
	if f := r.Failures(); len(f) != 0 {
		t.Fatalf("a clean run fails: %v", f)
	}
	r.Attempts = append(series("l2-v4", 60, 11, 12), series("bgp-v4", 60)...)
	r.AnnouncedSvcann = []Event{{At: at(12), What: "198.51.100.1 by node1, node2"}}
	r.AnnouncedARP = []Event{{At: at(14), What: "198.51.100.1 from two MACs"}}
	if f := r.Failures(); len(f) != 0 {
		t.Fatalf("losses and double announcements during a speaker kill fail the run: %v", f)
	}
	var out bytes.Buffer
	r.Write(&out)
	for _, want := range []string{"| 1 | kill-speaker node2 | 3s | 12 | 2 | l2-v4 2 | 3s | 2s |",
		"| ... during a fault's failover | 1 / 1 | reported |", "| faults recovered | 2 of 2 | all |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}

	// A connection lost during a fail-static fault is listed with where it went and why.
	r = base()
	r.Attempts = series("bgp-v4", 60)
	r.Attempts[30].OK, r.Attempts[30].Target, r.Attempts[30].Err = false, "client-bgp → 203.0.113.2:80", "i/o timeout"
	out.Reset()
	r.Write(&out)
	if want := "lost during fault 2 (pause-apiserver, at 30s: 10s after it began, -20s after it was undone, failed after 100ms): bgp-v4 client-bgp → 203.0.113.2:80: i/o timeout"; !strings.Contains(out.String(), want) {
		t.Errorf("the report lacks %q:\n%s", want, out.String())
	}

	for name, c := range map[string]struct {
		mutate func(*Report)
		want   string
	}{
		"lost during the apiserver pause": {func(r *Report) { r.Attempts = series("bgp-v4", 60, 30) }, "pause-apiserver): 1 of"},
		"lost with no fault on":           {func(r *Report) { r.Attempts = series("bgp-v4", 60, 55) }, "1 connections failed while no fault was on"},
		"not recovered":                   {func(r *Report) { r.Results[0].Converged = time.Time{}; r.Results[0].Err = "node2 not Ready" }, "not recovered: node2 not Ready"},
		"changed":                         {func(r *Report) { r.Changed = []Event{{At: at(30), What: "x"}} }, "address changed: x"},
		"duplicate":                       {func(r *Report) { r.Duplicate = []Event{{At: at(30), What: "y"}} }, "handed out twice: y"},
		"announced twice, no fault":       {func(r *Report) { r.AnnouncedARP = []Event{{At: at(17), What: "z"}} }, "outside a fault, at 17s: z"},
	} {
		r := base()
		c.mutate(r)
		f := r.Failures()
		if len(f) != 1 || !strings.Contains(f[0], c.want) {
			t.Errorf("%s: failures %q, want one with %q", name, f, c.want)
		}
	}
}
