package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"
)

func percentiles(d []time.Duration) (p50, p99, max time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[int(q*float64(len(s)-1))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func printTable(w io.Writer, rs []result, creators int) {
	fmt.Fprintf(w, "\nController allocation benchmark, %s, %d CPUs, %s, %d parallel creators\n\n",
		time.Now().Format("2006-01-02"), runtime.NumCPU(), runtime.GOARCH, creators)
	fmt.Fprintln(w, "| controller | Services | created | created at | all allocated | Services/s | latency p50 | p99 | max | CPU | peak RSS | duplicates |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %d | %s | %.0f/s | %.1f s | %.0f | %s | %s | %s | %.1f s | %d MiB | %d |\n",
			r.impl, r.n, mode(r.backlog), float64(r.n)/r.creation.Seconds(), r.wall.Seconds(), float64(r.n)/r.wall.Seconds(), ms(r.p50), ms(r.p99), ms(r.max),
			r.cpu, r.peak>>20, r.duplicates)
	}
	type key struct {
		n       int
		backlog bool
	}
	metal := map[key]result{}
	for _, r := range rs {
		if r.impl == "metallb" {
			metal[key{r.n, r.backlog}] = r
		}
	}
	if len(metal) == 0 {
		return
	}
	fmt.Fprintln(w, "\n| Services | created | throughput fairlead/metallb | p99 metallb/fairlead | CPU metallb/fairlead |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|")
	for _, r := range rs {
		m, ok := metal[key{r.n, r.backlog}]
		if r.impl != "fairlead" || !ok {
			continue
		}
		fmt.Fprintf(w, "| %d | %s | %.1f× | %.1f× | %.1f× |\n", r.n, mode(r.backlog), m.wall.Seconds()/r.wall.Seconds(),
			m.p99.Seconds()/r.p99.Seconds(), m.cpu/max(r.cpu, 0.01))
	}
}

// mode names how the Services came: while the controller ran, or all before it started.
func mode(backlog bool) string {
	if backlog {
		return "before start"
	}
	return "while running"
}
