package promconfig

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"
)

func parse(t *testing.T, spec string) (ServiceMonitor, error) {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(spec), &v); err != nil {
		t.Fatal(err)
	}
	return ParseServiceMonitor("web", "shop", v)
}

// A ServiceMonitor becomes the Operator's scrape config: its Services by label, its port by
// name, the standard target labels, then its own relabelings with Prometheus' spelling.
func TestScrapeConfig(t *testing.T) {
	m, err := parse(t, `
selector: {matchLabels: {app.kubernetes.io/name: web, tier: front}}
endpoints:
  - port: metrics
    interval: 5s
    scheme: https
    bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
    tlsConfig: {insecureSkipVerify: true}
    relabelings:
      - {sourceLabels: [__meta_kubernetes_pod_node_name], targetLabel: node, regex: (.+), action: Replace}
`)
	if err != nil {
		t.Fatal(err)
	}
	scs := ScrapeConfigs([]ServiceMonitor{m}, "/sd")
	if len(scs) != 1 {
		t.Fatalf("%d scrape configs", len(scs))
	}
	b, err := yaml.Marshal(scs[0])
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"job_name: serviceMonitor/shop/web/0",
		"scrape_interval: 5s",
		"scheme: https",
		"authorization:\n  credentials_file: /var/run/secrets/kubernetes.io/serviceaccount/token\n  type: Bearer\n",
		"tls_config:\n  insecure_skip_verify: true\n",
		"file_sd_configs:\n- files:\n  - /sd/shop_web.json\n",
		"- action: keep\n  regex: (web);true\n  source_labels:\n  - __meta_kubernetes_service_label_app_kubernetes_io_name\n  - __meta_kubernetes_service_labelpresent_app_kubernetes_io_name\n",
		"- action: keep\n  regex: (front);true\n  source_labels:\n  - __meta_kubernetes_service_label_tier\n  - __meta_kubernetes_service_labelpresent_tier\n",
		"- action: keep\n  regex: metrics\n  source_labels:\n  - __meta_kubernetes_endpointslice_port_name\n",
		"regex: Node;(.*)\n  replacement: ${1}\n  separator: ;\n  source_labels:\n  - __meta_kubernetes_endpointslice_address_target_kind",
		"replacement: ${1}\n  source_labels:\n  - __meta_kubernetes_service_name\n  target_label: job",
		"- replacement: metrics\n  target_label: endpoint",
		"- action: replace\n  regex: (.+)\n  source_labels:\n  - __meta_kubernetes_pod_node_name\n  target_label: node",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("scrape config lacks\n%s\nin\n%s", want, got)
		}
	}
	// The monitor's relabelings come after the standard ones, which they may override.
	if strings.Index(got, "__meta_kubernetes_pod_node_name") < strings.Index(got, "target_label: endpoint") {
		t.Error("the monitor's relabelings come before the standard ones")
	}
}

// What the translation does not know is refused, by name, rather than dropped.
func TestRefused(t *testing.T) {
	for spec, want := range map[string]string{
		`{selector: {matchExpressions: [{key: a, operator: Exists}]}, endpoints: [{port: m}]}`: `unknown field "matchExpressions"`,
		`{selector: {matchLabels: {a: b}}, endpoints: [{port: m, basicAuth: {}}]}`:             `unknown field "basicAuth"`,
		`{selector: {matchLabels: {a: b}}, endpoints: [{port: m, tlsConfig: {ca: {}}}]}`:       `unknown field "ca"`,
		`{selector: {matchLabels: {a: b}}, endpoints: [{targetPort: 8080}]}`:                   `unknown field "targetPort"`,
		`{selector: {matchLabels: {a: b}}, endpoints: [{interval: 5s}]}`:                       `endpoint 0 names no port`,
		`{selector: {matchLabels: {a: b}}}`:                                                    `has no endpoints`,
	} {
		_, err := parse(t, spec)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "shop/web") {
			t.Errorf("%s: error %v, want one naming shop/web and saying %q", spec, err, want)
		}
	}
}

// Discovery gives every address and port of the namespace's EndpointSlices that belong to a
// Service, with the meta labels Prometheus' own discovery would: the Pod's for an endpoint that
// points at a Pod (and the container with that port), the Node's name for one that points at
// a Node.
func TestDiscover(t *testing.T) {
	var in struct {
		Services []corev1.Service            `json:"services"`
		Slices   []discoveryv1.EndpointSlice `json:"slices"`
		Pods     []corev1.Pod                `json:"pods"`
	}
	if err := yaml.Unmarshal([]byte(`
services:
  - metadata: {name: speaker-metrics, namespace: sys, labels: {app.kubernetes.io/component: speaker}}
pods:
  - metadata: {name: speaker-abc, namespace: sys, labels: {app: speaker}}
    spec:
      nodeName: node1
      containers: [{name: speaker, image: fl:dev, ports: [{name: metrics, containerPort: 7474, protocol: TCP}]}]
    status: {phase: Running, podIP: 192.0.2.11, conditions: [{type: Ready, status: "True"}]}
slices:
  - metadata: {name: speaker-metrics-x, namespace: sys, labels: {kubernetes.io/service-name: speaker-metrics}}
    addressType: IPv4
    ports: [{name: metrics, port: 7474, protocol: TCP}]
    endpoints:
      - addresses: [192.0.2.11]
        targetRef: {kind: Pod, name: speaker-abc, namespace: sys}
      - addresses: [192.0.2.12]
        nodeName: node2
        targetRef: {kind: Node, name: node2}
        conditions: {ready: false}
  - metadata: {name: orphan, namespace: sys, labels: {kubernetes.io/service-name: gone}}
    addressType: IPv4
    ports: [{name: metrics, port: 1}]
    endpoints: [{addresses: [192.0.2.99]}]
`), &in); err != nil {
		t.Fatal(err)
	}
	got := Discover(in.Services, in.Slices, in.Pods)
	if len(got) != 2 {
		t.Fatalf("%d targets, want 2 (the orphan slice's Service does not exist): %+v", len(got), got)
	}
	want := []map[string]string{{
		"__meta_kubernetes_namespace":                                        "sys",
		"__meta_kubernetes_service_name":                                     "speaker-metrics",
		"__meta_kubernetes_service_label_app_kubernetes_io_component":        "speaker",
		"__meta_kubernetes_service_labelpresent_app_kubernetes_io_component": "true",
		"__meta_kubernetes_endpointslice_port_name":                          "metrics",
		"__meta_kubernetes_endpointslice_address_target_kind":                "Pod",
		"__meta_kubernetes_endpointslice_address_target_name":                "speaker-abc",
		"__meta_kubernetes_endpointslice_endpoint_conditions_ready":          "true",
		"__meta_kubernetes_pod_name":                                         "speaker-abc",
		"__meta_kubernetes_pod_node_name":                                    "node1",
		"__meta_kubernetes_pod_phase":                                        "Running",
		"__meta_kubernetes_pod_ready":                                        "true",
		"__meta_kubernetes_pod_label_app":                                    "speaker",
		"__meta_kubernetes_pod_container_name":                               "speaker",
		"__meta_kubernetes_pod_container_port_name":                          "metrics",
	}, {
		"__meta_kubernetes_service_name":                            "speaker-metrics",
		"__meta_kubernetes_endpointslice_address_target_kind":       "Node",
		"__meta_kubernetes_endpointslice_address_target_name":       "node2",
		"__meta_kubernetes_endpointslice_endpoint_node_name":        "node2",
		"__meta_kubernetes_endpointslice_endpoint_conditions_ready": "false",
	}}
	for i, addr := range []string{"192.0.2.11:7474", "192.0.2.12:7474"} {
		if len(got[i].Targets) != 1 || got[i].Targets[0] != addr {
			t.Errorf("target %d is %v, want %s", i, got[i].Targets, addr)
		}
		for k, v := range want[i] {
			if got[i].Labels[k] != v {
				t.Errorf("%s: %s=%q, want %q", addr, k, got[i].Labels[k], v)
			}
		}
	}
	if _, ok := got[1].Labels["__meta_kubernetes_pod_name"]; ok {
		t.Errorf("the Node's endpoint has Pod labels: %v", got[1].Labels)
	}
}
