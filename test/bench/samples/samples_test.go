package samples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	f := Begin("bench")
	f.AddDurations([]time.Duration{1500 * time.Millisecond, 20 * time.Millisecond}, "impl", "a", "services", "10")
	f.AddDurations([]time.Duration{time.Second}, "impl", "b", "services", "10")
	f.Add("MiB", []float64{48}, "impl", "b", "services", "10", "measure", "peak RSS")
	path, err := f.Write(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "x.json") {
		t.Errorf("written to %s", path)
	}
	g, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if g.Benchmark != "bench" || !g.Measured.Equal(f.Measured) || !strings.Contains(g.Machine, "CPUs") {
		t.Errorf("read back %+v", g)
	}
	if s := g.Find("services", "10"); len(s) != 3 {
		t.Errorf("Find(services=10) = %d series, want 3", len(s))
	}
	if s := g.Find("measure", "peak RSS"); len(s) != 1 || s[0].Unit != "MiB" || s[0].Values[0] != 48 {
		t.Errorf("Find(measure=peak RSS) = %+v", s)
	}
	s := g.Find("impl", "a")
	if len(s) != 1 || s[0].Unit != "s" || s[0].Values[0] != 1.5 {
		t.Fatalf("Find(impl=a) = %+v", s)
	}
	if v := s[0].Sorted(); v[0] != 0.02 || v[1] != 1.5 {
		t.Errorf("Sorted = %v", v)
	}
	if s := g.Find("impl", "c"); len(s) != 0 {
		t.Errorf("Find(impl=c) = %+v, want none", s)
	}
}

func TestReadRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"not json":  "{",
		"no series": `{"benchmark":"b","measured":"2026-12-06T00:00:00Z","series":[]}`,
		"empty":     `{"benchmark":"b","measured":"2026-12-06T00:00:00Z","series":[{"labels":{"a":"b"},"unit":"s","values":[]}]}`,
		"no labels": `{"benchmark":"b","measured":"2026-12-06T00:00:00Z","series":[{"unit":"s","values":[1]}]}`,
		"no date":   `{"benchmark":"b","series":[{"labels":{"a":"b"},"unit":"s","values":[1]}]}`,
		"nameless":  `{"measured":"2026-12-06T00:00:00Z","series":[{"labels":{"a":"b"},"unit":"s","values":[1]}]}`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(path); err == nil {
			t.Errorf("%s: Read succeeded", name)
		}
	}
}

func TestDir(t *testing.T) {
	t.Setenv("FAIRLEAD_BENCH_OUT", "")
	if d := Dir("/repo"); d != "/repo/bin/bench" {
		t.Errorf("Dir = %s", d)
	}
	t.Setenv("FAIRLEAD_BENCH_OUT", "/elsewhere")
	if d := Dir("/repo"); d != "/elsewhere" {
		t.Errorf("Dir with FAIRLEAD_BENCH_OUT = %s", d)
	}
}
