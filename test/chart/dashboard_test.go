package chart

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metricsql"
	"sigs.k8s.io/yaml"

	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

// Grafana's dashboard linter (github.com/grafana/dashboard-linter) cannot be built here: the
// Go module proxy serves none of its versions. TestDashboardLint applies the rules of that
// linter that fit a Prometheus dashboard instead, with every query parsed by a PromQL parser
// (metricsql, for the metric names) and by promtool (Prometheus' own parser).

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Editable   bool   `json:"editable"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// renderedDashboard renders the chart with the dashboard on and returns its ConfigMap's JSON,
// checking the sidecar's label on the way.
func renderedDashboard(t *testing.T) (dashboard, []byte) {
	t.Helper()
	objs, err := render(load(t), map[string]any{"metrics": map[string]any{"dashboard": map[string]any{"enabled": true}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "ConfigMap" || o.GetName() != release+"-dashboard" {
			continue
		}
		if o.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("the dashboard ConfigMap's labels %v lack grafana_dashboard: \"1\"", o.GetLabels())
		}
		data, _ := o.Object["data"].(map[string]any)
		raw, _ := data["fairlead.json"].(string)
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(raw))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("the dashboard is not JSON: %v", err)
		}
		return d, []byte(raw)
	}
	t.Fatal("the chart rendered no dashboard ConfigMap")
	return dashboard{}, nil
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// queries returns every query of the dashboard's panels, by panel title.
func queries(d dashboard) map[string][]string {
	out := map[string][]string{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	return out
}

var windowRE = regexp.MustCompile(`\[([^\]]*)\]`)

// parseable replaces Grafana's variables with values a PromQL parser takes.
func parseable(expr string) string {
	return strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*").Replace(expr)
}

// metricNames returns the metrics a PromQL expression selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := metricsql.Parse(parseable(expr))
	if err != nil {
		t.Errorf("query %q does not parse: %v", expr, err)
		return nil
	}
	var names []string
	metricsql.VisitAll(e, func(e metricsql.Expr) {
		if me, ok := e.(*metricsql.MetricExpr); ok {
			for _, lfs := range me.LabelFilterss {
				for _, lf := range lfs {
					if lf.Label == "__name__" && !slices.Contains(names, lf.Value) {
						names = append(names, lf.Value)
					}
				}
			}
		}
	})
	return names
}

func isCounter(name string) bool {
	for _, s := range []string{"_total", "_bucket", "_count", "_sum"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// uncountedCounters returns the counters expr uses other than inside rate, irate or increase.
func uncountedCounters(e metricsql.Expr, inRate bool) []string {
	switch x := e.(type) {
	case *metricsql.MetricExpr:
		if inRate {
			return nil
		}
		var out []string
		for _, lfs := range x.LabelFilterss {
			for _, lf := range lfs {
				if lf.Label == "__name__" && isCounter(lf.Value) {
					out = append(out, lf.Value)
				}
			}
		}
		return out
	case *metricsql.RollupExpr:
		return uncountedCounters(x.Expr, inRate)
	case *metricsql.FuncExpr:
		var out []string
		for _, a := range x.Args {
			out = append(out, uncountedCounters(a, slices.Contains([]string{"rate", "irate", "increase"}, x.Name))...)
		}
		return out
	case *metricsql.AggrFuncExpr:
		var out []string
		for _, a := range x.Args {
			out = append(out, uncountedCounters(a, false)...)
		}
		return out
	case *metricsql.BinaryOpExpr:
		return append(uncountedCounters(x.Left, false), uncountedCounters(x.Right, false)...)
	}
	return nil
}

// TestDashboardLint checks the dashboard by the rules of Grafana's dashboard linter that apply:
// a Prometheus datasource variable used by every panel and target, valid PromQL, counters only
// through rate/increase over $__rate_interval, every selector scoped by the namespace
// variable, titles, descriptions and units on every panel, unique ids and a layout.
func TestDashboardLint(t *testing.T) {
	d, _ := renderedDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: both are needed to import it", d.UID, d.Title)
	}
	if d.Editable {
		t.Error("a provisioned dashboard should not be editable (changes are lost on the next sync)")
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || string(v.Query) != `"prometheus"` {
				t.Errorf("variable datasource: type %q query %s, want a prometheus datasource variable", v.Type, v.Query)
			}
		default:
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s queries %+v, not ${datasource}", v.Name, v.Datasource)
			}
		}
	}
	if !vars["datasource"] || !vars["namespace"] {
		t.Errorf("variables %v; want datasource and namespace", vars)
	}
	ids := map[int]string{}
	var exprs []string
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Type == "row" {
			continue
		}
		if p.Description == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("panel %q has no unit", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q uses datasource %+v, not ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s uses datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
			exprs = append(exprs, tg.Expr)
			for _, w := range windowRE.FindAllStringSubmatch(tg.Expr, -1) {
				if w[1] != "$__rate_interval" {
					t.Errorf("panel %q: range [%s] in %q; use [$__rate_interval]", p.Title, w[1], tg.Expr)
				}
			}
			e, err := metricsql.Parse(parseable(tg.Expr))
			if err != nil {
				t.Errorf("panel %q: %q does not parse: %v", p.Title, tg.Expr, err)
				continue
			}
			if c := uncountedCounters(e, false); len(c) > 0 {
				t.Errorf("panel %q: counters %v used without rate/increase in %q", p.Title, c, tg.Expr)
			}
			metricsql.VisitAll(e, func(e metricsql.Expr) {
				me, ok := e.(*metricsql.MetricExpr)
				if !ok {
					return
				}
				for _, lfs := range me.LabelFilterss {
					if !slices.ContainsFunc(lfs, func(lf metricsql.LabelFilter) bool {
						return lf.Label == "namespace" && lf.IsRegexp && lf.Value == ".*"
					}) {
						t.Errorf("panel %q: a selector in %q is not scoped by namespace=~\"$namespace\"", p.Title, tg.Expr)
					}
				}
			})
		}
	}

	// Prometheus' own parser, through promtool: every query as a recording rule.
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for i, e := range exprs {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query%d", i), Expr: parseable(e)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "queries.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool(t), "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool rejects the dashboard's queries: %v\n%s", err, out)
	}
}

// Metrics the alert rules use that no scenario of this package makes a component serve:
// Elastic IPs need AWS (moto: speaker/eip and cmd/fairlead-speaker test them), and BFD does
// not exist yet (the rule is written to stay silent without it). Each name is checked
// against the source that registers it, where there is one.
var notServedHere = map[string]string{
	"fairlead_eip_associations_total": "speaker/eip/loop.go",
	"fairlead_bfd_session_up":         "",
	"up":                              "", // Prometheus' own, per target
}

// checkServedMetrics is called by TestSpeakerRunsWithItsRBAC once its controller and speaker
// run with every component on: every metric that a dashboard panel or an alert rule queries
// must be among what they serve on /metrics.
func checkServedMetrics(t *testing.T, served map[string]bool) {
	t.Helper()
	d, _ := renderedDashboard(t)
	for title, qs := range queries(d) {
		for _, q := range qs {
			for _, m := range metricNames(t, q) {
				if !served[m] {
					t.Errorf("dashboard panel %q queries %s, which neither the controller nor the speaker serves", title, m)
				}
			}
		}
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(renderRules(t, alertsValues), &file); err != nil {
		t.Fatal(err)
	}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			for _, m := range metricNames(t, r.Expr) {
				if served[m] {
					continue
				}
				src, known := notServedHere[m]
				if !known {
					t.Errorf("alert %s queries %s, which neither the controller nor the speaker serves", r.Alert, m)
					continue
				}
				if src != "" {
					b, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), src))
					if err != nil || !strings.Contains(string(b), `"`+m+`"`) {
						t.Errorf("alert %s queries %s, which %s does not register (%v)", r.Alert, m, src, err)
					}
				}
			}
		}
	}
}

// scrapeMetrics reads a plain-HTTP /metrics page over conn (already connected, possibly from
// inside a network namespace) and returns its series (name{labels} as served) and their values.
func scrapeMetrics(conn net.Conn) (map[string]float64, error) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// scrapeSecure fetches https://addr/metrics from ns (nil: the test's own) as the chart's
// ServiceMonitors do, with token, and returns its series and its text.
func scrapeSecure(ns *netns.NS, addr, token string) (map[string]float64, string, error) {
	code, body, err := scrape.Get(context.Background(), scrape.InNetNS(ns), addr, "/metrics", token)
	if err != nil {
		return nil, "", err
	}
	if code != http.StatusOK {
		return nil, "", fmt.Errorf("GET https://%s/metrics: %d %s", addr, code, body)
	}
	series, err := parseMetrics(bytes.NewReader(body))
	return series, string(body), err
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	series := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndex(line, " ")
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i <= 0 || err != nil {
			return nil, fmt.Errorf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series, sc.Err()
}

// metricNamesOf returns the metric names of scraped series.
func metricNamesOf(series map[string]float64) map[string]bool {
	names := map[string]bool{}
	for s := range series {
		name, _, _ := strings.Cut(s, "{")
		names[name] = true
	}
	return names
}

// freeLocalAddr returns a loopback address with a port nothing listens on now.
func freeLocalAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// dial connects from inside ns (the host's namespace when nil); the connection stays in the
// namespace it was made in, so it can be used from any goroutine afterwards.
func dial(t *testing.T, ns *netns.NS, network, addr string) net.Conn {
	t.Helper()
	var conn net.Conn
	do := func() (err error) { conn, err = net.DialTimeout(network, addr, 5*time.Second); return err }
	var err error
	if ns == nil {
		err = do()
	} else {
		err = ns.Do(do)
	}
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	return conn
}
