// Package samples keeps the raw measurements of a benchmark run (every latency, not only the
// percentiles its table prints) in a small JSON file, so that plots can show whole
// distributions and say when, on what machine and under what load they were taken.
package samples

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// File is one benchmark run.
type File struct {
	Benchmark string    `json:"benchmark"`
	Measured  time.Time `json:"measured"`
	// Machine: CPUs, architecture, memory and kernel.
	Machine string `json:"machine"`
	// LoadStart and LoadEnd are the 1-minute load averages when the run began and ended: the
	// machine may be shared, and a plot should say so.
	LoadStart float64  `json:"loadStart"`
	LoadEnd   float64  `json:"loadEnd"`
	Series    []Series `json:"series"`
}

// Series is a set of measurements of one kind, told apart from the others by its labels
// (for example impl=fairlead, services=1000).
type Series struct {
	Labels map[string]string `json:"labels"`
	// Unit of Values: "s" for every duration; others as Add was told.
	Unit   string    `json:"unit"`
	Values []float64 `json:"values"`
}

// Begin starts a run's file: the date, the machine and its load now.
func Begin(benchmark string) *File {
	return &File{Benchmark: benchmark, Measured: time.Now().UTC(), Machine: machine(), LoadStart: loadAverage()}
}

// AddDurations adds a series of durations, in seconds.
func (f *File) AddDurations(ds []time.Duration, labels ...string) {
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = d.Seconds()
	}
	f.Series = append(f.Series, Series{Labels: labelMap(labels), Unit: "s", Values: v})
}

// Add adds a series of values in unit ("MiB", "CPU s", "writes/Service"...), for
// measurements that are not durations.
func (f *File) Add(unit string, values []float64, labels ...string) {
	f.Series = append(f.Series, Series{Labels: labelMap(labels), Unit: unit, Values: values})
}

// labelMap turns "k1", "v1", "k2", "v2" into a map; an odd count is a programming error.
func labelMap(kv []string) map[string]string {
	if len(kv)%2 != 0 {
		panic(fmt.Sprintf("samples: labels %q are not key/value pairs", kv))
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Find returns the series whose labels include all of kv.
func (f *File) Find(kv ...string) []Series {
	want := labelMap(kv)
	var out []Series
	for _, s := range f.Series {
		match := true
		for k, v := range want {
			match = match && s.Labels[k] == v
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// Dir is where benchmarks write their files: $FAIRLEAD_BENCH_OUT, else bin/bench under the
// repository root (next to the binaries make builds, not committed).
func Dir(repoRoot string) string {
	if d := os.Getenv("FAIRLEAD_BENCH_OUT"); d != "" {
		return d
	}
	return filepath.Join(repoRoot, "bin", "bench")
}

// Write records the load at the end of the run and writes the file as dir/<name>.json.
func (f *File) Write(dir, name string) (string, error) {
	f.LoadEnd = loadAverage()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".json")
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read reads a file written by Write and checks that it holds something to plot.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Benchmark == "" || f.Measured.IsZero() || len(f.Series) == 0 {
		return nil, fmt.Errorf("%s: no benchmark name, date or series", path)
	}
	for i, s := range f.Series {
		if len(s.Values) == 0 || len(s.Labels) == 0 {
			return nil, fmt.Errorf("%s: series %d (%v) has no values or no labels", path, i, s.Labels)
		}
	}
	return &f, nil
}

// Sorted returns the values in increasing order.
func (s Series) Sorted() []float64 {
	v := slices.Clone(s.Values)
	slices.Sort(v)
	return v
}

func machine() string {
	var u unix.Utsname
	kernel := "unknown kernel"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				mem = fmt.Sprintf(", %.0f GiB", kb/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s", runtime.NumCPU(), runtime.GOARCH, mem, kernel)
}

func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}
