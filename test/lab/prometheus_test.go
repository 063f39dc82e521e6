package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// The lab's Prometheus configuration is rendered from the chart with the lab's values: it
// passes promtool, scrapes both metrics Services the chart's ServiceMonitors select, keeps the
// chart's node relabeling, and carries the chart's rules with the lab's short for: durations.
func TestPrometheusConfig(t *testing.T) {
	kit.Heavy(t, "promtool")
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: `make packages` installs Debian's prometheus package, which ships it")
	}
	l := &Lab{CRDs: filepath.Join(RepoRoot(), "charts/fairlead/crds")}
	for _, kubelets := range []bool{false, true} {
		l.NodeMode = AgentNodes
		if kubelets {
			l.NodeMode = KubeletNodes
		}
		dir := t.TempDir()
		rules, token := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "token")
		mon, err := RenderMonitoring(l.chartDir(), l.chartValues(), dir, rules, token)
		if err != nil {
			t.Fatal(err)
		}
		config := filepath.Join(dir, "prometheus.yml")
		for f, b := range map[string][]byte{config: mon.Config, rules: mon.Rules, token: []byte("a-token")} {
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// check config also loads and checks the rules file.
		if out, err := exec.Command(promtool, "check", "config", config).CombinedOutput(); err != nil {
			t.Fatalf("%s: promtool check config: %v\n%s\n%s", l.NodeMode, err, out, mon.Config)
		}

		var cfg struct {
			Global        map[string]string `json:"global"`
			ScrapeConfigs []struct {
				JobName        string `json:"job_name"`
				ScrapeInterval string `json:"scrape_interval"`
				Scheme         string `json:"scheme"`
				Authorization  struct {
					Type            string `json:"type"`
					CredentialsFile string `json:"credentials_file"`
				} `json:"authorization"`
				TLSConfig struct {
					InsecureSkipVerify bool `json:"insecure_skip_verify"`
				} `json:"tls_config"`
				RelabelConfigs []struct {
					SourceLabels []string `json:"source_labels"`
					TargetLabel  string   `json:"target_label"`
					Regex        string   `json:"regex"`
				} `json:"relabel_configs"`
			} `json:"scrape_configs"`
		}
		if err := yaml.Unmarshal(mon.Config, &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Global["evaluation_interval"] != "1s" {
			t.Errorf("%s: evaluation_interval %q, want 1s", l.NodeMode, cfg.Global["evaluation_interval"])
		}
		var jobs []string
		for _, sc := range cfg.ScrapeConfigs {
			jobs = append(jobs, sc.JobName)
			// The chart's secure metrics: HTTPS, the lab's token file, the self-signed certificates.
			if sc.Scheme != "https" || sc.Authorization.Type != "Bearer" || sc.Authorization.CredentialsFile != token || !sc.TLSConfig.InsecureSkipVerify {
				t.Errorf("%s: job %s scrapes %s with authorization %+v, tls %+v; want https with Bearer %s, insecure_skip_verify", l.NodeMode, sc.JobName, sc.Scheme, sc.Authorization, sc.TLSConfig, token)
			}
			if sc.ScrapeInterval != "1s" {
				t.Errorf("%s: job %s scrapes every %q, want the lab's 1s", l.NodeMode, sc.JobName, sc.ScrapeInterval)
			}
			last := sc.RelabelConfigs[len(sc.RelabelConfigs)-1]
			if strings.Join(last.SourceLabels, ",") != "__meta_kubernetes_pod_node_name" || last.TargetLabel != "node" || last.Regex != "(.+)" {
				t.Errorf("%s: job %s ends with relabeling %+v, not the chart's node label", l.NodeMode, sc.JobName, last)
			}
		}
		if got := strings.Join(jobs, " "); got != "serviceMonitor/fairlead-system/fairlead-controller/0 serviceMonitor/fairlead-system/fairlead-speaker/0" {
			t.Errorf("%s: jobs %s", l.NodeMode, got)
		}
		var svcs []string
		for _, s := range mon.Services {
			svcs = append(svcs, s.Namespace+"/"+s.Name)
		}
		if got := strings.Join(svcs, " "); got != "fairlead-system/fairlead-controller-metrics fairlead-system/fairlead-speaker-metrics" {
			t.Errorf("%s: metrics Services %s", l.NodeMode, got)
		}
		r := string(mon.Rules)
		for _, want := range []string{"alert: FairleadSpeakersMissing", `up{job="fairlead-speaker-metrics"}`, "for: 2s", "for: 30s"} {
			if !strings.Contains(r, want) {
				t.Errorf("%s: rules lack %q", l.NodeMode, want)
			}
		}
	}
}
