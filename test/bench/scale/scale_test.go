package scalebench

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// A piece of a real kube-apiserver 1.37 /metrics page.
const apiserverMetrics = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="status",verb="PATCH",version="v1"} 4990
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="status",verb="PATCH",version="v1"} 10
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="",verb="POST",version="v1"} 5000
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 5000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="services",scope="cluster",subresource="",verb="LIST",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="services",scope="cluster",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 7
apiserver_storage_objects{resource="services"} 5001
weird_metric{a="x \"quoted\" \\ back\nslash",b=""} 1.5e+03 1700000000000
`

func TestParseTextAndWrites(t *testing.T) {
	s, err := ParseText(apiserverMetrics)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 9 {
		t.Fatalf("%d samples, want 9", len(s))
	}
	if v, ok := Find(s, "weird_metric", "b", ""); !ok || v != 1500 {
		t.Errorf("weird_metric = %v, %v", v, ok)
	}
	if s[8].Labels["a"] != "x \"quoted\" \\ back\nslash" {
		t.Errorf("escaped label read as %q", s[8].Labels["a"])
	}
	w := RequestWrites(s)
	want := Writes{
		{"PATCH", "services/status"}: 5000, // 200 and 409 alike: both cost a request
		{"POST", "services"}:         5000,
		{"POST", "events"}:           5000,
		{"PUT", "leases"}:            7,
	}
	if len(w) != len(want) {
		t.Errorf("writes %v, want %v (reads are not writes)", w, want)
	}
	for k, v := range want {
		if w[k] != v {
			t.Errorf("%s = %v, want %v", k, w[k], v)
		}
	}
	if w.Total() != 15007 {
		t.Errorf("Total = %v", w.Total())
	}
}

func TestParseTextErrors(t *testing.T) {
	for _, bad := range []string{
		`m{a="x} 1`,
		`m{a=x} 1`,
		`m{a="x"}`,
		`m 1 2 3`,
		`m{a="x"} one`,
		`m{a="x\`,
	} {
		if _, err := ParseText("ok 1\n" + bad + "\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: err = %v, want one naming line 2", bad, err)
		}
	}
}

func TestWritesSub(t *testing.T) {
	before := Writes{{"PATCH", "services/status"}: 10, {"PUT", "leases"}: 5}
	after := Writes{{"PATCH", "services/status"}: 5010, {"PUT", "leases"}: 5, {"POST", "events"}: 5000}
	d, err := after.Sub(before)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 2 || d.Of("PATCH", "services/status") != 5000 || d.Of("POST", "events") != 5000 {
		t.Errorf("delta = %v", d)
	}
	if got := d.Breakdown(5000); got != "PATCH services/status 1.00, POST events 1.00" {
		t.Errorf("Breakdown = %q", got)
	}
	// Rare writes stay out of the breakdown, not out of the total.
	d[WriteKey{"PUT", "leases"}] = 2
	if got := d.Breakdown(5000); strings.Contains(got, "leases") || d.Total() != 10002 {
		t.Errorf("Breakdown = %q, Total = %v", got, d.Total())
	}
	if _, err := before.Sub(after); err == nil {
		t.Error("counters that fell (an apiserver restart) gave no error")
	}
	if _, err := (Writes{}).Sub(before); err == nil {
		t.Error("counters that vanished gave no error")
	}
}

func TestGrowthPer10x(t *testing.T) {
	for _, c := range []struct {
		n1, v1, n2, v2, want float64
	}{
		{500, 2, 5000, 20, 10},     // linear
		{500, 2, 5000, 2, 1},       // constant
		{500, 2, 5000, 200, 100},   // quadratic
		{1000, 1, 100000, 100, 10}, // linear over 100×
		{1000, 1, 4000, 4, 10},     // linear over 4×
		{500, 1, 5000, 0, math.NaN()},
		{5000, 1, 500, 2, math.NaN()},
	} {
		g := GrowthPer10x(c.n1, c.v1, c.n2, c.v2)
		if math.IsNaN(c.want) != math.IsNaN(g) || (!math.IsNaN(g) && math.Abs(g-c.want) > 1e-9) {
			t.Errorf("GrowthPer10x(%v, %v, %v, %v) = %v, want %v", c.n1, c.v1, c.n2, c.v2, g, c.want)
		}
	}
}

func TestPrintTables(t *testing.T) {
	r := func(n int, wall time.Duration, rss int64) Result {
		return Result{Services: n, Nodes: n / 100, Creation: time.Duration(n) * time.Millisecond,
			Controller: ControllerResult{Wall: wall, CPU: float64(n) / 1000, Peak: rss, APIServer: float64(n) / 500, Etcd: float64(n) / 2000,
				Writes: Writes{{"PATCH", "services/status"}: float64(n), {"POST", "events"}: float64(n)}},
			Speaker: SpeakerResult{Owned: 300, Sync: wall, SyncCPU: 1, Idle: time.Minute, IdleCPU: 6, Steady: rss, Peak: 2 * rss,
				Writes: Writes{{"POST", "serviceannouncements"}: 300}}}
	}
	var buf bytes.Buffer
	PrintTables(&buf, []Result{r(500, 2*time.Second, 40<<20), r(5000, 20*time.Second, 80<<20)}, "2 CPUs")
	out := buf.String()
	for _, want := range []string{
		"| 5,000 | 1000/s | 20.0 s | 250 | 5.0 s | 10.0 s | 2.5 s | 80 MiB | 2.00 | 1.00 | 1.00 | 0 |",
		"| 500 | PATCH services/status 1.00, POST events 1.00 | POST serviceannouncements 1.00 |",
		"| 5,000 | 50 | 300 | 20.0 s | 1.00 s | 0.00 s | 10.0% | 80 MiB | 160 MiB |",
		"| measure | 500 → 5,000 |",
		"| controller: all allocated | 10.00× |",
		"| controller: peak RSS | 2.00× |",
		"| speaker: idle CPU | 1.00× |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tables lack %q:\n%s", want, out)
		}
	}
}
