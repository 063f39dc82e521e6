package scalebench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Result is one size's measurements.
type Result struct {
	Services, Nodes int
	// Creation is how long the parallel creators took to create the Services (the backlog),
	// or, when Seeded, to write them into etcd.
	Creation   time.Duration
	Seeded     bool
	Controller ControllerResult
	Speaker    SpeakerResult
}

// ControllerResult is the controller draining the backlog, from its start to the last Service
// seen with an address.
type ControllerResult struct {
	Wall time.Duration
	CPU  float64 // seconds, user+system
	Peak int64   // VmHWM, bytes
	// Writes are the apiserver's write requests while the controller ran: nothing else wrote
	// then, save the apiserver's own upkeep (its lease renewals), which Breakdown leaves out.
	Writes     Writes
	Duplicates int
	// APIServer and Etcd are the CPU seconds the apiserver and etcd spent over the same time:
	// on 2 cores shared with them, what bounds the controller once its client limit is raised.
	APIServer, Etcd float64
}

// SpeakerResult is the speaker started on the full cluster.
type SpeakerResult struct {
	Owned    int           // addresses this node answers for
	Sync     time.Duration // start → first plan covering every Service
	SyncCPU  float64       // CPU seconds until then
	Idle     time.Duration // how long idle was measured
	IdleCPU  float64       // CPU seconds over Idle
	Steady   int64         // VmRSS at the end of the idle period, bytes
	Peak     int64         // VmHWM at the end, bytes
	Reported time.Duration // start → every owned address in a ServiceAnnouncement
	Writes   Writes        // the apiserver's writes from the speaker's start to the end of idle
}

// GrowthPer10x is how much v grows for 10× more work, from (n1, v1) to (n2, v2), assuming a
// power law between the two points: (v2/v1)^(1/log10(n2/n1)). 10 means linear, 1 constant.
func GrowthPer10x(n1, v1, n2, v2 float64) float64 {
	if n1 <= 0 || n2 <= n1 || v1 <= 0 || v2 <= 0 {
		return math.NaN()
	}
	return math.Pow(v2/v1, 1/math.Log10(n2/n1))
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

func secs(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// PrintTables writes the controller, writes, speaker and growth tables in the README's form.
func PrintTables(w io.Writer, rs []Result, machine string) {
	fmt.Fprintf(w, "\nScale benchmark, %s, %s\n\n", time.Now().UTC().Format("2006-01-02"), machine)
	fmt.Fprintln(w, "| Services | created at | all allocated | Services/s | controller CPU | apiserver CPU | etcd CPU | peak RSS | writes/Service | status patches/Service | Events/Service | duplicates |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		c, n := r.Controller, float64(r.Services)
		created := fmt.Sprintf("%.0f/s", n/r.Creation.Seconds())
		if r.Seeded {
			created = "(etcd)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.1f s | %.1f s | %.1f s | %s | %.2f | %.2f | %.2f | %d |\n",
			thousands(r.Services), created, secs(c.Wall), n/c.Wall.Seconds(), c.CPU, c.APIServer, c.Etcd, mib(c.Peak),
			c.Writes.Total()/n, c.Writes.Of("PATCH", "services/status")/n, eventWrites(c.Writes)/n, c.Duplicates)
	}
	fmt.Fprintln(w, "\n| Services | controller's writes per Service | speaker's writes per owned address |")
	fmt.Fprintln(w, "|---:|---|---|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %s | %s |\n", thousands(r.Services), r.Controller.Writes.Breakdown(r.Services),
			r.Speaker.Writes.Breakdown(max(r.Speaker.Owned, 1)))
	}
	fmt.Fprintln(w, "\n| Services | Nodes | owned | start → synced | CPU to sync | reported | idle CPU | steady RSS | peak RSS |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		s := r.Speaker
		fmt.Fprintf(w, "| %s | %d | %d | %s | %.2f s | %s | %.1f%% | %s | %s |\n", thousands(r.Services), r.Nodes, s.Owned,
			secs(s.Sync), s.SyncCPU, secs(s.Reported), 100*s.IdleCPU/s.Idle.Seconds(), mib(s.Steady), mib(s.Peak))
	}
	if len(rs) < 2 {
		return
	}
	fmt.Fprintln(w, "\nGrowth per 10× more Services (10× is linear, 1× constant):")
	fmt.Fprintln(w)
	head := "| measure |"
	rule := "|---|"
	for i := 1; i < len(rs); i++ {
		head += fmt.Sprintf(" %s → %s |", thousands(rs[i-1].Services), thousands(rs[i].Services))
		rule += "---:|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, m := range growthMeasures {
		row := "| " + m.name + " |"
		for i := 1; i < len(rs); i++ {
			a, b := rs[i-1], rs[i]
			row += " " + times(GrowthPer10x(float64(a.Services), m.value(a), float64(b.Services), m.value(b))) + " |"
		}
		fmt.Fprintln(w, row)
	}
}

func times(g float64) string {
	if math.IsNaN(g) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", g)
}

// eventWrites counts Events written through either API group.
func eventWrites(w Writes) float64 {
	return w.Of("POST", "events") + w.Of("PATCH", "events")
}

var growthMeasures = []struct {
	name  string
	value func(Result) float64
}{
	{"controller: all allocated", func(r Result) float64 { return r.Controller.Wall.Seconds() }},
	{"controller: CPU", func(r Result) float64 { return r.Controller.CPU }},
	{"controller: peak RSS", func(r Result) float64 { return float64(r.Controller.Peak) }},
	{"controller: writes", func(r Result) float64 { return r.Controller.Writes.Total() }},
	{"speaker: CPU to sync", func(r Result) float64 { return r.Speaker.SyncCPU }},
	{"speaker: idle CPU", func(r Result) float64 { return r.Speaker.IdleCPU / r.Speaker.Idle.Seconds() }},
	{"speaker: steady RSS", func(r Result) float64 { return float64(r.Speaker.Steady) }},
	{"speaker: peak RSS", func(r Result) float64 { return float64(r.Speaker.Peak) }},
}
