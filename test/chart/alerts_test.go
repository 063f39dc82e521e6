package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// alertsValues turns the rules on, with the release name the rule tests expect (the speakers'
// job is derived from it).
var alertsValues = map[string]any{"metrics": map[string]any{"alerts": map[string]any{"enabled": true}}}

// renderRules renders the chart with the given values and returns the PrometheusRule's spec
// (a Prometheus rules file: {groups: [...]}) as YAML.
func renderRules(t *testing.T, vals map[string]any) []byte {
	t.Helper()
	objs, err := render(load(t), vals)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "PrometheusRule" {
			b, err := yaml.Marshal(o.Object["spec"])
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("the chart rendered no PrometheusRule")
	return nil
}

func promtool(t *testing.T) string {
	t.Helper()
	kit.Heavy(t, "promtool")
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: `make packages` installs Debian's prometheus package, which ships it")
	}
	return p
}

// TestAlertRules renders the chart's PrometheusRule and runs promtool's unit tests on it
// (testdata/alerts_test.yaml): for every alert, input series that make it fire, with the
// labels and annotations it must carry, and series that must leave it silent.
func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	dir := t.TempDir()
	rendered := renderRules(t, alertsValues)
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, rendered, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	cmd := exec.Command(pt, "test", "rules", "alerts_test.yaml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	} else {
		t.Logf("%s", out)
	}

	// Every alert the chart defines is tested both ways.
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(rendered, &file); err != nil {
		t.Fatal(err)
	}
	var suite struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &suite); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range suite.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	var names []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !slices.Contains(names, r.Alert) {
				names = append(names, r.Alert)
			}
		}
	}
	if len(names) < 12 {
		t.Errorf("the chart defines %d alerts (%v), want at least 12", len(names), names)
	}
	for _, n := range names {
		if !fires[n] {
			t.Errorf("no promtool test makes %s fire", n)
		}
		if !silent[n] {
			t.Errorf("no promtool test checks that %s stays silent", n)
		}
	}
}

// TestAlertValues: the thresholds and windows come from values, and the BFD rule can be left
// out entirely.
func TestAlertValues(t *testing.T) {
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(`
metrics:
  alerts:
    enabled: true
    speakerJob: my-speakers
    ruleLabels: {team: network}
    poolUsagePercent: {info: 50, warning: 60, critical: 70}
    servicesPendingFor: 3m
    bfdSessionDown: {enabled: false}
    proxySlowSyncSeconds: {full: 4, partial: 0.25}
    proxyStaleFor: 7m
`), &vals); err != nil {
		t.Fatal(err)
	}
	rules := string(renderRules(t, vals))
	for _, want := range []string{`>= 50 < 60`, `>= 60 < 70`, `>= 70 < 101`, `for: 3m`, `up{job="my-speakers"}`,
		`team: network`, `> 4`, `> 0.25`, `for: 7m`} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `json:"alert"`
				Labels map[string]string `json:"labels"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal([]byte(rules), &file); err != nil {
		t.Fatal(err)
	}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Labels["team"] != "network" || r.Labels["severity"] == "" {
				t.Errorf("alert %s has labels %v, want severity and team: network", r.Alert, r.Labels)
			}
		}
	}
	if strings.Contains(rules, "FairleadBFDSessionDown") {
		t.Error("bfdSessionDown.enabled=false still renders FairleadBFDSessionDown")
	}
	// Off by default.
	objs, err := render(load(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "PrometheusRule" {
			t.Error("a PrometheusRule is rendered with the default values")
		}
	}
	// Thresholds out of order are refused.
	if err := yaml.Unmarshal([]byte(`{metrics: {alerts: {enabled: true, poolUsagePercent: {info: 90, warning: 85, critical: 95}}}}`), &vals); err != nil {
		t.Fatal(err)
	}
	if _, err := render(load(t), vals); err == nil || !strings.Contains(err.Error(), "must increase") {
		t.Errorf("pool thresholds 90/85/95 rendered (err %v), want an error", err)
	}
}
