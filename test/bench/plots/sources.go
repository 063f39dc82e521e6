package main

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/fairlead-lb/fairlead/test/bench/samples"
)

// proxyData is the proxy table: from the README when there is one, else from the benchmark's
// samples. The caption is empty for the README's numbers (the README says when they were
// taken, next to the figure).
func proxyData(md string, f *samples.File) ([]proxyRow, string, error) {
	if md != "" {
		rows, err := proxyRows(md)
		return rows, "", err
	}
	var rows []proxyRow
	for _, full := range f.Find("sync", "full") {
		r := proxyRow{Proxy: full.Labels["proxy"], Full: full.Values[0]}
		var err error
		if r.Services, err = count(full.Labels["services"]); err != nil {
			return nil, "", fmt.Errorf("%s: series %v: %w", f.Benchmark, full.Labels, err)
		}
		partial := f.Find("proxy", r.Proxy, "services", full.Labels["services"], "sync", "partial")
		if len(partial) != 1 {
			return nil, "", fmt.Errorf("%s: %d partial series for %s at %s Services, want 1", f.Benchmark, len(partial), r.Proxy, full.Labels["services"])
		}
		r.Partial, r.PartialM = mean(partial[0].Values), slices.Max(partial[0].Values)
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, "", fmt.Errorf("%s: no full sync series", f.Benchmark)
	}
	return rows, caption(f), nil
}

// controllerData is the controller table: from the README when there is one, else from the
// benchmark's samples.
func controllerData(md string, f *samples.File) ([]controllerRow, string, error) {
	if md != "" {
		rows, err := controllerRows(md)
		return rows, "", err
	}
	var rows []controllerRow
	for _, lat := range f.Find("measure", "latency") {
		l := lat.Labels
		r := controllerRow{Controller: controllerName(l["impl"]), Created: l["created"]}
		var err error
		if r.Services, err = count(l["services"]); err != nil {
			return nil, "", fmt.Errorf("%s: series %v: %w", f.Benchmark, l, err)
		}
		all := f.Find("impl", l["impl"], "services", l["services"], "created", l["created"], "measure", "all allocated")
		if len(all) != 1 {
			return nil, "", fmt.Errorf("%s: %d 'all allocated' series for %v, want 1", f.Benchmark, len(all), l)
		}
		r.AllAllocated = all[0].Values[0]
		r.P50, r.P99 = quantile(lat.Sorted(), 0.50), quantile(lat.Sorted(), 0.99)
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, "", fmt.Errorf("%s: no latency series", f.Benchmark)
	}
	return rows, caption(f), nil
}

// controllerName is how the README names an implementation the benchmark calls by its flag.
func controllerName(impl string) string {
	switch impl {
	case "fairlead":
		return "Fairlead"
	case "metallb":
		return "MetalLB"
	}
	return impl
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// quantile of sorted values, the way the benchmarks' tables take theirs (the element at
// q·(n−1), no interpolation), so that a plot and its table agree.
func quantile(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1))]
}

// sig rounds to 4 significant digits: values computed from samples print as "214 ms", not
// "213.99999 ms".
func sig(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 4, 64), 64)
	return r
}
