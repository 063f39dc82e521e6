// Package promconfig turns the chart's ServiceMonitors into what a plain Prometheus reads, as
// the Prometheus Operator does with EndpointSlice discovery: the same target selection, the
// same target labels (namespace, service, pod, node, job, endpoint), then the monitor's own
// relabelings. The lab's Prometheus runs with them, so what it scrapes and how it labels it is
// what a cluster's Operator-run Prometheus would do with the chart.
//
// Debian's Prometheus is built without Kubernetes service discovery, so the discovery is done
// here (Discover): the targets of a namespace's EndpointSlices, with the meta labels Prometheus'
// kubernetes_sd_configs (role endpointslice) gives them, handed to Prometheus as file_sd target
// groups. The Operator's relabelings then work on them unchanged.
//
// Only the fields the translation understands are accepted: a ServiceMonitor using any other
// is refused with its name, rather than translated into something it does not say.
package promconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// ServiceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the translation knows.
type ServiceMonitor struct {
	Name, Namespace string
	Spec            ServiceMonitorSpec
}

type ServiceMonitorSpec struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	NamespaceSelector struct {
		MatchNames []string `json:"matchNames"`
	} `json:"namespaceSelector"`
	JobLabel  string     `json:"jobLabel"`
	Endpoints []Endpoint `json:"endpoints"`
}

type Endpoint struct {
	Port              string    `json:"port"`
	Interval          string    `json:"interval"`
	ScrapeTimeout     string    `json:"scrapeTimeout"`
	Path              string    `json:"path"`
	Scheme            string    `json:"scheme"`
	HonorLabels       bool      `json:"honorLabels"`
	Relabelings       []Relabel `json:"relabelings"`
	MetricRelabelings []Relabel `json:"metricRelabelings"`
	// BearerTokenFile is read by Prometheus; in a Pod, ServiceAccountTokenFile is its
	// ServiceAccount's token (a Prometheus outside one swaps in a file of its own).
	BearerTokenFile string     `json:"bearerTokenFile"`
	TLSConfig       *TLSConfig `json:"tlsConfig"`
}

// ServiceAccountTokenFile is where a Pod finds its ServiceAccount's token.
const ServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// TLSConfig is the part of the Operator's TLSConfig that names no Secret or ConfigMap (those
// would need the Operator to copy them out of the cluster).
type TLSConfig struct {
	InsecureSkipVerify bool   `json:"insecureSkipVerify"`
	ServerName         string `json:"serverName"`
	CAFile             string `json:"caFile"`
}

// Relabel is a ServiceMonitor's RelabelConfig (camelCase).
type Relabel struct {
	SourceLabels []string `json:"sourceLabels"`
	Separator    *string  `json:"separator"`
	TargetLabel  string   `json:"targetLabel"`
	Regex        string   `json:"regex"`
	Modulus      uint64   `json:"modulus"`
	Replacement  *string  `json:"replacement"`
	Action       string   `json:"action"`
}

// ParseServiceMonitor reads a ServiceMonitor's metadata and spec (as decoded from YAML or JSON).
func ParseServiceMonitor(name, namespace string, spec any) (ServiceMonitor, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return ServiceMonitor{}, err
	}
	m := ServiceMonitor{Name: name, Namespace: namespace}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m.Spec); err != nil {
		return ServiceMonitor{}, fmt.Errorf("ServiceMonitor %s/%s: %w (the lab's translation does not know it)", namespace, name, err)
	}
	if len(m.Spec.Endpoints) == 0 {
		return ServiceMonitor{}, fmt.Errorf("ServiceMonitor %s/%s has no endpoints", namespace, name)
	}
	for i, ep := range m.Spec.Endpoints {
		if ep.Port == "" {
			return ServiceMonitor{}, fmt.Errorf("ServiceMonitor %s/%s: endpoint %d names no port (only named ports are translated)", namespace, name, i)
		}
	}
	return m, nil
}

// Config is a Prometheus configuration file.
type Config struct {
	Global        Global         `json:"global"`
	RuleFiles     []string       `json:"rule_files,omitempty"`
	ScrapeConfigs []ScrapeConfig `json:"scrape_configs"`
}

type Global struct {
	ScrapeInterval     string `json:"scrape_interval,omitempty"`
	ScrapeTimeout      string `json:"scrape_timeout,omitempty"`
	EvaluationInterval string `json:"evaluation_interval,omitempty"`
}

type ScrapeConfig struct {
	JobName              string          `json:"job_name"`
	HonorLabels          bool            `json:"honor_labels"`
	ScrapeInterval       string          `json:"scrape_interval,omitempty"`
	ScrapeTimeout        string          `json:"scrape_timeout,omitempty"`
	MetricsPath          string          `json:"metrics_path,omitempty"`
	Scheme               string          `json:"scheme,omitempty"`
	Authorization        *Authorization  `json:"authorization,omitempty"`
	TLSConfig            *PromTLSConfig  `json:"tls_config,omitempty"`
	FileSDConfigs        []FileSD        `json:"file_sd_configs"`
	RelabelConfigs       []RelabelConfig `json:"relabel_configs"`
	MetricRelabelConfigs []RelabelConfig `json:"metric_relabel_configs,omitempty"`
}

// Authorization is Prometheus' authorization block: the Operator's translation of a bearer
// token file.
type Authorization struct {
	Type            string `json:"type"`
	CredentialsFile string `json:"credentials_file"`
}

// PromTLSConfig is Prometheus' tls_config.
type PromTLSConfig struct {
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
	ServerName         string `json:"server_name,omitempty"`
	CAFile             string `json:"ca_file,omitempty"`
}

type FileSD struct {
	Files []string `json:"files"`
	// Prometheus also watches the file; this is the fallback if a change is missed.
	RefreshInterval string `json:"refresh_interval,omitempty"`
}

// RelabelConfig is Prometheus' relabel_config (snake_case).
type RelabelConfig struct {
	SourceLabels []string `json:"source_labels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	TargetLabel  string   `json:"target_label,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Modulus      uint64   `json:"modulus,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

var invalidLabelChars = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// sanitize makes a Kubernetes label name a Prometheus one, as service discovery does in its meta
// labels (app.kubernetes.io/name: app_kubernetes_io_name).
func sanitize(name string) string { return invalidLabelChars.ReplaceAllString(name, "_") }

func str(s string) *string { return &s }

// Namespaces are the namespaces whose EndpointSlices m's targets come from.
func (m ServiceMonitor) Namespaces() []string {
	if len(m.Spec.NamespaceSelector.MatchNames) > 0 {
		return m.Spec.NamespaceSelector.MatchNames
	}
	return []string{m.Namespace}
}

// SDFile names the file of m's discovered targets (Discover's output) in dir.
func (m ServiceMonitor) SDFile(dir string) string {
	return filepath.Join(dir, m.Namespace+"_"+m.Name+".json")
}

// ScrapeConfigs translates monitors, in order, one scrape config per endpoint, each reading its
// monitor's targets from its SDFile in sdDir.
func ScrapeConfigs(monitors []ServiceMonitor, sdDir string) []ScrapeConfig {
	var out []ScrapeConfig
	for _, m := range monitors {
		for i, ep := range m.Spec.Endpoints {
			out = append(out, scrapeConfig(m, i, ep, m.SDFile(sdDir)))
		}
	}
	return out
}

func scrapeConfig(m ServiceMonitor, i int, ep Endpoint, sdFile string) ScrapeConfig {
	sc := ScrapeConfig{
		JobName:        fmt.Sprintf("serviceMonitor/%s/%s/%d", m.Namespace, m.Name, i),
		HonorLabels:    ep.HonorLabels,
		ScrapeInterval: ep.Interval,
		ScrapeTimeout:  ep.ScrapeTimeout,
		MetricsPath:    ep.Path,
		Scheme:         ep.Scheme,
		FileSDConfigs:  []FileSD{{Files: []string{sdFile}, RefreshInterval: "5s"}},
	}
	if ep.BearerTokenFile != "" {
		sc.Authorization = &Authorization{Type: "Bearer", CredentialsFile: ep.BearerTokenFile}
	}
	if t := ep.TLSConfig; t != nil {
		sc.TLSConfig = &PromTLSConfig{InsecureSkipVerify: t.InsecureSkipVerify, ServerName: t.ServerName, CAFile: t.CAFile}
	}

	r := []RelabelConfig{{SourceLabels: []string{"job"}, TargetLabel: "__tmp_prometheus_job_name"}}
	// Only the Services the selector picks, only the endpoint's port.
	keys := make([]string, 0, len(m.Spec.Selector.MatchLabels))
	for k := range m.Spec.Selector.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r = append(r, RelabelConfig{Action: "keep",
			SourceLabels: []string{"__meta_kubernetes_service_label_" + sanitize(k), "__meta_kubernetes_service_labelpresent_" + sanitize(k)},
			Regex:        fmt.Sprintf("(%s);true", m.Spec.Selector.MatchLabels[k])})
	}
	r = append(r, RelabelConfig{Action: "keep", SourceLabels: []string{"__meta_kubernetes_endpointslice_port_name"}, Regex: ep.Port})
	// An endpoint that points at a Node (a host process, such as kubelet's) is labelled with it;
	// one that points at a Pod, with the Pod.
	target := []string{"__meta_kubernetes_endpointslice_address_target_kind", "__meta_kubernetes_endpointslice_address_target_name"}
	r = append(r,
		RelabelConfig{SourceLabels: target, Separator: str(";"), Regex: "Node;(.*)", Replacement: str("${1}"), TargetLabel: "node"},
		RelabelConfig{SourceLabels: target, Separator: str(";"), Regex: "Pod;(.*)", Replacement: str("${1}"), TargetLabel: "pod"},
		RelabelConfig{SourceLabels: []string{"__meta_kubernetes_namespace"}, TargetLabel: "namespace"},
		RelabelConfig{SourceLabels: []string{"__meta_kubernetes_service_name"}, TargetLabel: "service"},
		RelabelConfig{SourceLabels: []string{"__meta_kubernetes_pod_name"}, TargetLabel: "pod"},
		RelabelConfig{SourceLabels: []string{"__meta_kubernetes_pod_container_name"}, TargetLabel: "container"},
		RelabelConfig{Action: "drop", SourceLabels: []string{"__meta_kubernetes_pod_phase"}, Regex: "(Failed|Succeeded)"},
		// The job is the Service's name (what the chart's speakerJob defaults to).
		RelabelConfig{SourceLabels: []string{"__meta_kubernetes_service_name"}, TargetLabel: "job", Replacement: str("${1}")},
	)
	if m.Spec.JobLabel != "" {
		r = append(r, RelabelConfig{SourceLabels: []string{"__meta_kubernetes_service_label_" + sanitize(m.Spec.JobLabel)},
			TargetLabel: "job", Regex: "(.+)", Replacement: str("${1}")})
	}
	r = append(r, RelabelConfig{TargetLabel: "endpoint", Replacement: str(ep.Port)})
	r = append(r, translate(ep.Relabelings)...)
	sc.RelabelConfigs = r
	sc.MetricRelabelConfigs = translate(ep.MetricRelabelings)
	return sc
}

func translate(in []Relabel) []RelabelConfig {
	var out []RelabelConfig
	for _, c := range in {
		out = append(out, RelabelConfig{SourceLabels: c.SourceLabels, Separator: c.Separator, TargetLabel: c.TargetLabel,
			// The Operator takes Replace and LabelMap as well as Prometheus' replace and labelmap.
			Regex: c.Regex, Modulus: c.Modulus, Replacement: c.Replacement, Action: strings.ToLower(c.Action)})
	}
	return out
}
