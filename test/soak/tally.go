package soak

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Attempt is one new connection a probe opened: when it started, when it ended, whether the
// echo server answered.
type Attempt struct {
	Probe      string
	Start, End time.Time
	OK         bool
	// Target and Err say where a failed connection went and why it failed.
	Target, Err string
}

// Window is the time a fault counts for: from its injection until the lab converged after it
// was undone (or the run gave up waiting).
type Window struct {
	Start, End time.Time
}

func (w Window) holds(t time.Time) bool { return !t.Before(w.Start) && !t.After(w.End) }

// Count is what one probe saw over some time.
type Count struct {
	Attempted, Failed int
	// LongestGap is the longest time between two answered connections of the probe that
	// overlaps the time counted (the run's start and end count as answers).
	LongestGap time.Duration
}

// Counts tallies attempts per probe over w: an attempt counts where it started. Gaps are
// measured on the whole run's answers (from and to bound the first and last), so a gap that
// straddles w's edge counts in full.
func Counts(attempts []Attempt, w Window, from, to time.Time) map[string]Count {
	out := map[string]Count{}
	last := map[string]time.Time{}
	byEnd := slices.Clone(attempts)
	slices.SortStableFunc(byEnd, func(a, b Attempt) int { return a.End.Compare(b.End) })
	gap := func(probe string, t time.Time) {
		prev, ok := last[probe]
		if !ok {
			prev = from
		}
		// The gap [prev, t] overlaps w.
		if !t.Before(w.Start) && !prev.After(w.End) {
			c := out[probe]
			c.LongestGap = max(c.LongestGap, t.Sub(prev))
			out[probe] = c
		}
		last[probe] = t
	}
	for _, a := range byEnd {
		if w.holds(a.Start) {
			c := out[a.Probe]
			c.Attempted++
			if !a.OK {
				c.Failed++
			}
			out[a.Probe] = c
		}
		if a.OK {
			gap(a.Probe, a.End)
		}
	}
	for probe := range out {
		gap(probe, to)
	}
	return out
}

// Quiet returns the attempts that started outside every window.
func Quiet(attempts []Attempt, windows []Window) []Attempt {
	var out []Attempt
	for _, a := range attempts {
		if !slices.ContainsFunc(windows, func(w Window) bool { return w.holds(a.Start) }) {
			out = append(out, a)
		}
	}
	return out
}

// Sum adds up the counts of every probe (the longest gap is the longest of any).
func Sum(c map[string]Count) Count {
	var s Count
	for _, x := range c {
		s.Attempted += x.Attempted
		s.Failed += x.Failed
		s.LongestGap = max(s.LongestGap, x.LongestGap)
	}
	return s
}

// FailStatic are the kinds of fault the design promises clients do not notice: the speakers
// keep announcing and the proxy keeps its rules without the apiserver or the controller
// (README: "A speaker that loses the apiserver keeps announcing what it has (fail-static)").
var FailStatic = map[Kind]bool{KillController: true, PauseAPIServer: true, RestartEtcd: true}

// Result is what happened around one fault.
type Result struct {
	Fault    Fault
	Injected time.Time // the fault began
	Undone   time.Time // the fault was undone (the link up, the process started, ...)
	// Converged is when every check of convergence passed after Undone; zero if it never did.
	Converged time.Time
	// Err is why the fault could not be injected or undone, or what still failed to converge.
	Err string
}

// Recovered says whether the lab came back after the fault.
func (r Result) Recovered() bool { return r.Err == "" && !r.Converged.IsZero() }

// Window is the time the fault's connections count for.
func (r Result) Window(end time.Time) Window {
	if r.Converged.IsZero() {
		return Window{r.Injected, end}
	}
	return Window{r.Injected, r.Converged}
}

// Event is one observation of something that must not happen: an address changed, held by
// two Services, or announced by two nodes (by the ServiceAnnouncements or by ARP replies from
// two MACs).
type Event struct {
	At   time.Time
	What string
}

// Memory is a component's resident memory at the run's start and end; Restarted says a fault
// replaced the process in between (its end is a new process's).
type Memory struct {
	Component  string
	Start, End int64
	Restarted  bool
}

// Report is a run's outcome.
type Report struct {
	Seed               int64
	Planned            time.Duration
	Start, End         time.Time
	Probes             []string // in the order the table shows them
	Attempts           []Attempt
	Results            []Result
	Changed, Duplicate []Event
	// Announced are the double announcements, by the ServiceAnnouncements (Source "svcann")
	// or by ARP (Source "arp").
	AnnouncedSvcann, AnnouncedARP []Event
	ServiceOps, ServiceOpsFailed  int
	Memory                        []Memory
	// Readiness are the changes of Nodes' Ready condition and of the demo Services' ready
	// endpoints the apiserver reported: what the cluster took away under Fairlead.
	Readiness []Event
}

func (r *Report) windows() []Window {
	var out []Window
	for _, x := range r.Results {
		out = append(out, x.Window(r.End))
	}
	return out
}

// outsideFaults splits events into those outside every fault's window and those inside one.
func (r *Report) outsideFaults(events []Event) (outside, during []Event) {
	ws := r.windows()
	for _, e := range events {
		if slices.ContainsFunc(ws, func(w Window) bool { return w.holds(e.At) }) {
			during = append(during, e)
		} else {
			outside = append(outside, e)
		}
	}
	return outside, during
}

// Failures lists what makes the run fail: any address changed or handed out twice, any
// double announcement outside a fault, a fault the lab did not recover from, a connection
// lost during a fault the design says clients do not notice, or a lost connection while
// nothing was wrong.
func (r *Report) Failures() []string {
	var out []string
	for _, e := range r.Changed {
		out = append(out, "address changed: "+e.What)
	}
	for _, e := range r.Duplicate {
		out = append(out, "address handed out twice: "+e.What)
	}
	for _, events := range [][]Event{r.AnnouncedSvcann, r.AnnouncedARP} {
		outside, _ := r.outsideFaults(events)
		for _, e := range outside {
			out = append(out, fmt.Sprintf("announced twice outside a fault, at %s: %s", e.At.Sub(r.Start).Round(time.Millisecond), e.What))
		}
	}
	for i, x := range r.Results {
		if !x.Recovered() {
			out = append(out, fmt.Sprintf("fault %d (%s) not recovered: %s", i+1, x.Fault, x.Err))
		}
		if FailStatic[x.Fault.Kind] {
			if s := Sum(Counts(r.Attempts, x.Window(r.End), r.Start, r.End)); s.Failed > 0 {
				out = append(out, fmt.Sprintf("fault %d (%s): %d of %d connections failed; clients must not notice it", i+1, x.Fault, s.Failed, s.Attempted))
			}
		}
	}
	quiet := Sum(Counts(Quiet(r.Attempts, r.windows()), Window{r.Start, r.End}, r.Start, r.End))
	if quiet.Failed > 0 {
		out = append(out, fmt.Sprintf("%d connections failed while no fault was on", quiet.Failed))
	}
	return out
}

// Write prints the report's tables (Markdown, as the README quotes them).
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "seed %d, planned %s, ran %s, %d faults\n\n", r.Seed, r.Planned, r.End.Sub(r.Start).Round(time.Second), len(r.Results))
	all := Counts(r.Attempts, Window{r.Start, r.End}, r.Start, r.End)
	fmt.Fprintf(w, "| probe | connections | failed | longest gap |\n|---|---:|---:|---:|\n")
	for _, p := range r.Probes {
		c := all[p]
		fmt.Fprintf(w, "| %s | %d | %d | %s |\n", p, c.Attempted, c.Failed, gapString(c.LongestGap))
	}

	fmt.Fprintf(w, "\n| # | fault | held | connections | failed | failed by probe | longest gap | converged after |\n|---:|---|---:|---:|---:|---|---:|---:|\n")
	for i, x := range r.Results {
		cs := Counts(r.Attempts, x.Window(r.End), r.Start, r.End)
		s := Sum(cs)
		conv := "**never**: " + x.Err
		if x.Recovered() {
			conv = x.Converged.Sub(x.Undone).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "| %d | %s | %s | %d | %d | %s | %s | %s |\n", i+1, x.Fault, x.Fault.Hold, s.Attempted, s.Failed,
			byProbe(r.Probes, cs), gapString(s.LongestGap), conv)
	}
	quiet := Counts(Quiet(r.Attempts, r.windows()), Window{r.Start, r.End}, r.Start, r.End)
	qs := Sum(quiet)
	fmt.Fprintf(w, "| | no fault on | | %d | %d | %s | | |\n", qs.Attempted, qs.Failed, byProbe(r.Probes, quiet))

	recovered := 0
	for _, x := range r.Results {
		if x.Recovered() {
			recovered++
		}
	}
	svcOut, svcDuring := r.outsideFaults(r.AnnouncedSvcann)
	arpOut, arpDuring := r.outsideFaults(r.AnnouncedARP)
	fmt.Fprintf(w, "\n| check | found | must be |\n|---|---:|---|\n")
	fmt.Fprintf(w, "| addresses changed | %d | 0 |\n", len(r.Changed))
	fmt.Fprintf(w, "| addresses handed out twice | %d | 0 |\n", len(r.Duplicate))
	fmt.Fprintf(w, "| addresses announced by two nodes, no fault on (ServiceAnnouncement / ARP from two MACs) | %d / %d | 0 |\n", len(svcOut), len(arpOut))
	fmt.Fprintf(w, "| ... during a fault's failover | %d / %d | reported |\n", len(svcDuring), len(arpDuring))
	fmt.Fprintf(w, "| faults recovered | %d of %d | all |\n", recovered, len(r.Results))
	fmt.Fprintf(w, "| Service operations (create, change, delete) failed | %d of %d | reported (they fail while the apiserver is away) |\n", r.ServiceOpsFailed, r.ServiceOps)

	fmt.Fprintf(w, "\n| component | RSS at start | RSS at end | |\n|---|---:|---:|---|\n")
	for _, m := range r.Memory {
		note := ""
		if m.Restarted {
			note = "restarted by a fault"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", m.Component, mib(m.Start), mib(m.End), note)
	}
	for i, x := range r.Results {
		if !FailStatic[x.Fault.Kind] {
			continue
		}
		win := x.Window(r.End)
		for _, a := range r.Attempts {
			if !a.OK && win.holds(a.Start) {
				fmt.Fprintf(w, "\nlost during fault %d (%s, at %s: %s after it began, %s after it was undone, failed after %s): %s %s: %s",
					i+1, x.Fault, a.Start.Sub(r.Start).Round(time.Millisecond), a.Start.Sub(x.Injected).Round(100*time.Millisecond),
					a.Start.Sub(x.Undone).Round(100*time.Millisecond), a.End.Sub(a.Start).Round(time.Millisecond), a.Probe, a.Target, a.Err)
			}
		}
	}
	for _, group := range []struct {
		name   string
		events []Event
		most   int
	}{{"changed", r.Changed, 20}, {"handed out twice", r.Duplicate, 20}, {"announced twice (ServiceAnnouncement)", r.AnnouncedSvcann, 20},
		{"announced twice (ARP)", r.AnnouncedARP, 20}, {"readiness", r.Readiness, 300}} {
		for _, e := range group.events[:min(len(group.events), group.most)] {
			fmt.Fprintf(w, "\n%s at %s: %s", group.name, e.At.Sub(r.Start).Round(time.Millisecond), e.What)
		}
	}
	fmt.Fprintln(w)
}

func byProbe(probes []string, cs map[string]Count) string {
	var parts []string
	for _, p := range probes {
		if c := cs[p]; c.Failed > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p, c.Failed))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func gapString(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func mib(b int64) string {
	if b <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}
