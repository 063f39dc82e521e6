package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/fairlead-lb/fairlead/test/controlplane"
)

// The plots are drawn from the README's tables: every row must parse, and both files must be
// real images.
func TestPlotsFromREADME(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := proxyRows(string(b))
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := controllerRows(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(proxy) < 4 || len(ctrl) < 4 {
		t.Fatalf("%d proxy rows, %d controller rows; the README's tables were not found whole", len(proxy), len(ctrl))
	}
	for _, r := range proxy {
		if r.Services <= 0 || r.Full <= 0 || r.Partial <= 0 || r.Partial > r.PartialM {
			t.Errorf("proxy row %+v: implausible (partial mean above its max?)", r)
		}
	}
	for _, r := range ctrl {
		if r.P50 > r.P99 || r.AllAllocated <= 0 {
			t.Errorf("controller row %+v: implausible", r)
		}
	}
	dir := t.TempDir()
	if err := drawProxy(proxy, filepath.Join(dir, "p.png")); err != nil {
		t.Fatal(err)
	}
	if err := drawController(ctrl, filepath.Join(dir, "c.png")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"p.png", "c.png"} {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 300 {
			t.Errorf("%s is %v, too small to read", f, b)
		}
	}
}

func TestSeconds(t *testing.T) {
	for in, want := range map[string]float64{"41.5 ms": 0.0415, "2.09 s": 2.09, "288.6 s": 288.6} {
		if got, err := seconds(in); err != nil || got != want {
			t.Errorf("seconds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"2.09", "3 min", "fast s"} {
		if _, err := seconds(bad); err == nil {
			t.Errorf("seconds(%q) succeeded", bad)
		}
	}
}
