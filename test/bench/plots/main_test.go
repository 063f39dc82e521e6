package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/bench/samples"
	"github.com/fairlead-lb/fairlead/test/controlplane"
)

// svgText checks that path is a whole SVG document and returns the text it draws.
func svgText(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	var text strings.Builder
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
		case xml.CharData:
			text.Write(tok)
			text.WriteByte('\n')
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", path, root)
	}
	return text.String()
}

func wantText(t *testing.T, path string, want ...string) {
	t.Helper()
	got := svgText(t, path)
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not show %q", filepath.Base(path), w)
		}
	}
}

func readme(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Without sample files (make plots on a fresh checkout), the proxy and controller figures come
// from the README's tables, every row of which must parse, and the two figures that need
// samples are skipped, not drawn empty.
func TestPlotsFromREADME(t *testing.T) {
	md := readme(t)
	proxy, err := proxyRows(md)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := controllerRows(md)
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
	out := t.TempDir()
	written, skipped, err := drawAll(md, t.TempDir(), out)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || len(skipped) != 2 {
		t.Fatalf("wrote %q, skipped %q; want the proxy and controller figures written and the two others skipped", written, skipped)
	}
	// The values written at the points are the README's.
	wantText(t, filepath.Join(out, "proxy-sync.svg"), "Fairlead", "kube-proxy", "288.6 s", "17.5 ms", "Partial sync")
	wantText(t, filepath.Join(out, "controller-allocation.svg"), "MetalLB", "53.2 s", "376 ms")
}

// The committed sample files (test/bench/plots/data) are whole, and every figure is drawn
// (the bars from the README, the rest from the samples) with the caption saying when and where.
func TestPlotsFromCommittedSamples(t *testing.T) {
	dir := filepath.Join(controlplane.RepoRoot(), "test", "bench", "plots", "data")
	ctrl, err := samples.Read(filepath.Join(dir, controllerFile+".json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, impl := range []string{"fairlead", "metallb"} {
		s := ctrl.Find("impl", impl, "services", "1000", "created", "while running", "measure", "latency")
		if len(s) != 1 || len(s[0].Values) != 1000 {
			t.Errorf("%s: want 1000 latencies of %s at 1000 Services, have %d series", ctrl.Benchmark, impl, len(s))
		}
	}
	l2, err := samples.Read(filepath.Join(dir, l2File+".json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{"garp", "connect"} {
		if s := l2.Find("event", ev); len(s) != 1 || len(s[0].Values) != 20 {
			t.Errorf("%s: want 20 %s samples", l2.Benchmark, ev)
		}
	}
	bgp, err := samples.Read(filepath.Join(dir, bgpFile+".json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"BFD 300ms x3", "hold timer 9s"} {
		if s := bgp.Find("detection", d); len(s) != 1 || len(s[0].Values) != 20 {
			t.Errorf("%s: want 20 samples with %s", bgp.Benchmark, d)
		}
	}
	out := t.TempDir()
	written, skipped, err := drawAll(readme(t), dir, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 4 {
		t.Fatalf("wrote %q, skipped %q; want all four figures", written, skipped)
	}
	wantText(t, filepath.Join(out, "controller-allocation.svg"), "53.2 s", "5k Services")
	wantText(t, filepath.Join(out, "allocation-latency-cdf.svg"), "MetalLB: p50", "Fairlead: p50", "1000 Services created while running",
		ctrl.Measured.Format("2006-01-02"), "load average")
	wantText(t, filepath.Join(out, "failover.svg"), "gratuitous ARP", "first connection", l2.Measured.Format("2006-01-02"),
		"BFD 300 ms × 3: p50", "hold timer 9 s only: p50", bgp.Measured.Format("2006-01-02"))
}

// Without a README (make bench), the bars are drawn from the sample files, summarised the way
// the benchmarks' tables do.
func TestBarsFromSamples(t *testing.T) {
	dir := t.TempDir()
	f := samples.Begin("test")
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	f.AddDurations(ms(1500), "proxy", "Fairlead", "services", "20000", "sync", "full")
	f.AddDurations(ms(10, 20, 30), "proxy", "Fairlead", "services", "20000", "sync", "partial")
	f.AddDurations(ms(90000), "proxy", "kube-proxy", "services", "20000", "sync", "full")
	f.AddDurations(ms(700, 900), "proxy", "kube-proxy", "services", "20000", "sync", "partial")
	if _, err := f.Write(dir, proxyFile); err != nil {
		t.Fatal(err)
	}
	c := samples.Begin("test")
	var lat []time.Duration
	for i := range 100 {
		lat = append(lat, time.Duration(i+1)*time.Millisecond)
	}
	for _, impl := range []string{"fairlead", "metallb"} {
		c.AddDurations(lat, "impl", impl, "services", "100", "created", "while running", "measure", "latency")
		c.AddDurations(ms(4200), "impl", impl, "services", "100", "created", "while running", "measure", "all allocated")
	}
	if _, err := c.Write(dir, controllerFile); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	written, skipped, err := drawAll("", dir, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 3 || len(skipped) != 1 {
		t.Fatalf("wrote %q, skipped %q; want proxy, controller and CDF written, failover skipped", written, skipped)
	}
	// p99 of 1..100 ms by the controller table's rule (element at 0.99·99 = 98) is 99 ms.
	wantText(t, filepath.Join(out, "proxy-sync.svg"), "1.5 s", "20 ms", "90 s", "800 ms", "10k")
	wantText(t, filepath.Join(out, "controller-allocation.svg"), "4.2 s", "99 ms", "100 Services")
	wantText(t, filepath.Join(out, "allocation-latency-cdf.svg"), "p50 50 ms, p99 99 ms")
	wantText(t, filepath.Join(out, "proxy-sync.svg"), "measured "+f.Measured.Format("2006-01-02"))

	// With the README, its tables win over the same samples.
	out = t.TempDir()
	if _, _, err := drawAll(readme(t), dir, out); err != nil {
		t.Fatal(err)
	}
	wantText(t, filepath.Join(out, "proxy-sync.svg"), "288.6 s")
	wantText(t, filepath.Join(out, "controller-allocation.svg"), "53.2 s")
	if got := svgText(t, filepath.Join(out, "proxy-sync.svg")); strings.Contains(got, "90 s") || strings.Contains(got, "measured") {
		t.Errorf("proxy figure from the README shows the samples' values or caption")
	}

	// No README and no samples: the bars are skipped, not drawn empty.
	written, skipped, err = drawAll("", t.TempDir(), t.TempDir())
	if err != nil || len(written) != 0 || len(skipped) != 4 {
		t.Errorf("drawAll with nothing: wrote %q, skipped %q, err %v; want all four skipped", written, skipped, err)
	}

	// A proxy file whose partial series is missing is an error, not a plot without it.
	bad := samples.Begin("test")
	bad.AddDurations(ms(1500), "proxy", "Fairlead", "services", "20000", "sync", "full")
	if _, err := bad.Write(dir, proxyFile); err != nil {
		t.Fatal(err)
	}
	if _, _, err := drawAll("", dir, t.TempDir()); err == nil || !strings.Contains(err.Error(), "partial") {
		t.Errorf("drawAll with a full sync but no partial series: err %v, want one naming the partial series", err)
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

func TestECDF(t *testing.T) {
	got := ecdf([]float64{3, 1, 2, 2})
	want := [][2]float64{{1, 0}, {1, 0.25}, {2, 0.5}, {2, 0.75}, {3, 1}}
	if len(got) != len(want) {
		t.Fatalf("ecdf = %v, want %v", got, want)
	}
	for i, w := range want {
		if got[i].X != w[0] || got[i].Y != w[1] {
			t.Errorf("ecdf point %d = %v, want %v", i, got[i], w)
		}
	}
}
