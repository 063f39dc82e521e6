package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/fairlead-lb/fairlead/test/promconfig"
)

// The lab runs Debian's Prometheus in the control-plane namespace. What it scrapes and the rules
// it evaluates are rendered from the chart, with the values a user sets to turn them on
// (metrics.serviceMonitor, metrics.alerts), so the lab's monitoring cannot drift from the chart's:
// the ServiceMonitors are translated as the Prometheus Operator translates them
// (test/promconfig) and the PrometheusRule's groups are the rules file. Only the intervals and
// the alerts' `for:` durations are the lab's own, through the same values: short, so an alert
// fires within seconds of its cause. Debian builds Prometheus without Kubernetes service
// discovery: `fairlead-lab prometheus-sd`, beside it, discovers the targets from the
// apiserver as it would and writes them for its file_sd.

// PrometheusBin is Debian's Prometheus (package prometheus, installed by `make packages`).
const PrometheusBin = "/usr/bin/prometheus"

// promAddr is where Prometheus listens, inside the control-plane namespace only.
const promAddr = "127.0.0.1:9090"

// DefaultPrometheusPort is the relay's port for Prometheus on the host's 127.0.0.1.
const DefaultPrometheusPort = 19090

// labMonitoringValues turn the chart's ServiceMonitors and alert rules on, with the lab's short
// intervals and `for:` durations.
var labMonitoringValues = map[string]any{
	"serviceMonitor": map[string]any{"enabled": true, "interval": "1s"},
	"alerts": map[string]any{
		"enabled":                  true,
		"poolUsageFor":             "10s",
		"servicesPendingFor":       "10s",
		"allocationFailuresWindow": "1m",
		"bgpSessionDownFor":        "5s",
		"bfdSessionDown":           map[string]any{"for": "5s"},
		"speakersMissingFor":       "2s",
		"l2AnnouncementFor":        "5s",
		"proxySyncErrorsWindow":    "1m",
		"proxySlowSyncWindow":      "1m",
		"proxyStaleFor":            "30s",
		"elasticIPFailuresWindow":  "1m",
	},
}

// Monitoring is what the chart renders for Prometheus: the scrape configs of its
// ServiceMonitors, its alert rules, and the metrics Services the ServiceMonitors select.
type Monitoring struct {
	Config   []byte // prometheus.yml
	Rules    []byte // the PrometheusRule's spec: a rules file
	Monitors []promconfig.ServiceMonitor
	Services []*corev1.Service
	// Reader is the chart's ClusterRole that lets a scraper GET /metrics.
	Reader *rbacv1.ClusterRole
}

// RenderMonitoring renders chartDir as the lab installs it, plus the lab's monitoring values,
// into a Prometheus configuration. sdDir is where the discovered targets will be, rulesFile
// where the rules will be, tokenFile the token Prometheus scrapes with: a Prometheus in a Pod
// reads its ServiceAccount's from the file the ServiceMonitors name; the lab's runs in no Pod.
func RenderMonitoring(chartDir string, values map[string]any, sdDir, rulesFile, tokenFile string) (*Monitoring, error) {
	vals := map[string]any{}
	for k, v := range values {
		vals[k] = v
	}
	vals["metrics"] = labMonitoringValues
	objs, err := renderChart(chartDir, vals)
	if err != nil {
		return nil, err
	}
	var mon Monitoring
	services := map[string]*corev1.Service{}
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceMonitor":
			m, err := promconfig.ParseServiceMonitor(o.GetName(), o.GetNamespace(), o.Object["spec"])
			if err != nil {
				return nil, err
			}
			mon.Monitors = append(mon.Monitors, m)
		case "ClusterRole":
			if strings.HasSuffix(o.GetName(), "-metrics-reader") {
				mon.Reader = &rbacv1.ClusterRole{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, mon.Reader); err != nil {
					return nil, fmt.Errorf("ClusterRole %s: %w", o.GetName(), err)
				}
			}
		case "PrometheusRule":
			if mon.Rules, err = yaml.Marshal(o.Object["spec"]); err != nil {
				return nil, err
			}
		case "Service":
			var s corev1.Service
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &s); err != nil {
				return nil, fmt.Errorf("Service %s: %w", o.GetName(), err)
			}
			services[s.Name] = &s
		}
	}
	if len(mon.Monitors) == 0 || mon.Rules == nil || mon.Reader == nil {
		return nil, fmt.Errorf("the chart rendered %d ServiceMonitors, no PrometheusRule or no metrics-reader ClusterRole with metrics.serviceMonitor and metrics.alerts enabled", len(mon.Monitors))
	}
	// The Services each monitor selects, in its namespace: in the lab they are the same objects
	// the chart installs.
	for _, m := range mon.Monitors {
		found := false
		for _, name := range sortedKeys(services) {
			s := services[name]
			if s.Namespace == m.Namespace && selects(m.Spec.Selector.MatchLabels, s.Labels) && hasPort(s, m.Spec.Endpoints[0].Port) {
				mon.Services = append(mon.Services, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("ServiceMonitor %s selects no Service the chart renders", m.Name)
		}
	}
	cfg := promconfig.Config{
		Global:        promconfig.Global{ScrapeInterval: "1s", ScrapeTimeout: "1s", EvaluationInterval: "1s"},
		RuleFiles:     []string{rulesFile},
		ScrapeConfigs: promconfig.ScrapeConfigs(mon.Monitors, sdDir),
	}
	for i, sc := range cfg.ScrapeConfigs {
		if sc.Authorization != nil && sc.Authorization.CredentialsFile == promconfig.ServiceAccountTokenFile {
			cfg.ScrapeConfigs[i].Authorization.CredentialsFile = tokenFile
		}
	}
	if mon.Config, err = yaml.Marshal(cfg); err != nil {
		return nil, err
	}
	return &mon, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

func hasPort(s *corev1.Service, name string) bool {
	for _, p := range s.Spec.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (l *Lab) promDir() string { return filepath.Join(l.State, "prometheus") }

func (l *Lab) sdDir() string { return filepath.Join(l.promDir(), "sd") }

// PrometheusURL is the lab's Prometheus as the host reaches it, through the relay.
func (l *Lab) PrometheusURL() string { return fmt.Sprintf("http://127.0.0.1:%d", l.PrometheusPort) }

// startPrometheus writes Prometheus' configuration and rules into the state directory, starts
// the target discovery and Prometheus in the control-plane namespace and waits until both
// work. With agent nodes, which run the controller and the speakers as processes, not Pods, it
// first publishes them as the endpoints of the chart's metrics Services, which the kubelet
// lab's chart install creates.
func (l *Lab) startPrometheus(ctx context.Context, cs kubernetes.Interface) error {
	dir := l.promDir()
	for _, d := range []string{"data", "sd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	rules, token := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "token")
	mon, err := RenderMonitoring(l.chartDir(), l.chartValues(), l.sdDir(), rules, token)
	if err != nil {
		return fmt.Errorf("rendering the chart's monitoring: %w", err)
	}
	if err := grantPrometheus(ctx, cs, mon.Reader, token); err != nil {
		return err
	}
	if !l.kubelets() {
		if err := l.publishMetricsEndpoints(ctx, cs, mon.Services); err != nil {
			return err
		}
	}
	monitors, err := json.Marshal(mon.Monitors)
	if err != nil {
		return err
	}
	config := filepath.Join(dir, "prometheus.yml")
	for f, b := range map[string][]byte{config: mon.Config, rules: mon.Rules, l.monitorsFile(): monitors} {
		if err := os.WriteFile(f, b, 0o644); err != nil {
			return err
		}
	}
	if err := l.daemon(l.CP(), "prometheus-sd", l.self(), "prometheus-sd", "--prefix", l.prefix(), "--state", l.State); err != nil {
		return err
	}
	err = waitUntil(30*time.Second, func() error {
		for _, m := range mon.Monitors {
			if _, err := os.Stat(m.SDFile(l.sdDir())); err != nil {
				if !l.daemonAlive("prometheus-sd") {
					return errors.New("prometheus-sd exited")
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("discovering Prometheus' targets (see %s): %w", filepath.Join(l.State, "logs", "prometheus-sd.log"), err)
	}
	if err := l.daemon(l.CP(), "prometheus", PrometheusBin, "--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--storage.tsdb.retention.time=1d",
		"--web.listen-address="+promAddr); err != nil {
		return err
	}
	err = waitUntil(30*time.Second, func() error {
		if !l.daemonAlive("prometheus") {
			return errors.New("it exited")
		}
		_, err := l.promGet(ctx, "/-/ready", true)
		return err
	})
	if err != nil {
		return fmt.Errorf("prometheus is not ready (see %s): %w", filepath.Join(l.State, "logs", "prometheus.log"), err)
	}
	return nil
}

// PrometheusServiceAccount is the lab Prometheus' identity: a user binds the chart's
// metrics-reader ClusterRole to their Prometheus' ServiceAccount, and so does the lab.
var PrometheusServiceAccount = types.NamespacedName{Namespace: "monitoring", Name: "prometheus"}

// grantPrometheus binds reader (the chart's ClusterRole, created here when the chart is not
// installed: agent nodes) to PrometheusServiceAccount and writes a token of it to tokenFile.
// The token outlives any lab (30 days): Prometheus reads the file at every scrape, but
// nothing renews it.
func grantPrometheus(ctx context.Context, cs kubernetes.Interface, reader *rbacv1.ClusterRole, tokenFile string) error {
	sa := PrometheusServiceAccount
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, reader, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ClusterRole %s: %w", reader.Name, err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sa.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, err := cs.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa.Name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lab-prometheus-" + reader.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: sa.Name}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding %s to %s: %w", reader.Name, sa, err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](30 * 24 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token of %s: %w", sa, err)
	}
	return os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600)
}

// publishMetricsEndpoints creates the chart's metrics Services without their selectors, and
// EndpointSlices that list the processes: the controller in the control-plane namespace, a
// speaker on each node. A speaker's endpoint points at its Node, as kubelet's endpoints do, so
// its targets get the node label as a speaker Pod's would.
func (l *Lab) publishMetricsEndpoints(ctx context.Context, cs kubernetes.Interface, services []*corev1.Service) error {
	for _, s := range services {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}}
		var ports []discoveryv1.EndpointPort
		for _, p := range s.Spec.Ports {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Port: p.Port})
			ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.Port), Protocol: ptr.To(corev1.ProtocolTCP)})
		}
		if _, err := cs.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Service %s/%s: %w", s.Namespace, s.Name, err)
		}
		var eps []discoveryv1.Endpoint
		switch s.Labels["app.kubernetes.io/component"] {
		case "controller":
			eps = append(eps, discoveryv1.Endpoint{Addresses: []string{CPv4}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		case "speaker":
			for _, n := range l.Nodes() {
				eps = append(eps, discoveryv1.Endpoint{Addresses: []string{n.V4}, NodeName: ptr.To(n.Name),
					TargetRef:  &corev1.ObjectReference{Kind: "Node", Name: n.Name},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
			}
		default:
			return fmt.Errorf("metrics Service %s: component %q is neither controller nor speaker", s.Name, s.Labels["app.kubernetes.io/component"])
		}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: s.Name + "-lab", Namespace: s.Namespace, Labels: map[string]string{
				discoveryv1.LabelServiceName: s.Name, discoveryv1.LabelManagedBy: "fairlead-lab"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   eps,
			Ports:       ports,
		}
		if _, err := cs.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating EndpointSlice %s/%s: %w", s.Namespace, slice.Name, err)
		}
	}
	return nil
}

func (l *Lab) monitorsFile() string { return filepath.Join(l.promDir(), "monitors.json") }

// DiscoverTargets is what `fairlead-lab prometheus-sd` runs in the control-plane namespace,
// until ctx ends: it watches the EndpointSlices, Services and Pods of the ServiceMonitors'
// namespaces and keeps each monitor's file of targets (promconfig.Discover) up to date for
// Prometheus' file_sd, which picks up a new file within a second.
func (l *Lab) DiscoverTargets(ctx context.Context) error {
	b, err := os.ReadFile(l.monitorsFile())
	if err != nil {
		return err
	}
	var monitors []promconfig.ServiceMonitor
	if err := json.Unmarshal(b, &monitors); err != nil {
		return fmt.Errorf("%s: %w", l.monitorsFile(), err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(l.State, "pki", "admin.kubeconfig"))
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	type listers struct {
		svcs   corelisters.ServiceLister
		slices discoverylisters.EndpointSliceLister
		pods   corelisters.PodLister
	}
	byNS := map[string]listers{}
	for _, m := range monitors {
		for _, ns := range m.Namespaces() {
			if _, ok := byNS[ns]; ok {
				continue
			}
			f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
			byNS[ns] = listers{f.Core().V1().Services().Lister(), f.Discovery().V1().EndpointSlices().Lister(), f.Core().V1().Pods().Lister()}
			f.Start(ctx.Done())
			f.WaitForCacheSync(ctx.Done())
		}
	}
	written := map[string][]byte{}
	for {
		for _, m := range monitors {
			groups := []promconfig.TargetGroup{}
			for _, ns := range m.Namespaces() {
				ls := byNS[ns]
				svcs, _ := ls.svcs.Services(ns).List(labels.Everything())
				slices, _ := ls.slices.EndpointSlices(ns).List(labels.Everything())
				pods, _ := ls.pods.Pods(ns).List(labels.Everything())
				groups = append(groups, promconfig.Discover(derefAll(svcs), derefAll(slices), derefAll(pods))...)
			}
			b, err := json.MarshalIndent(groups, "", "  ")
			if err != nil {
				return err
			}
			file := m.SDFile(l.sdDir())
			if bytes.Equal(b, written[file]) {
				continue
			}
			// Renamed into place: Prometheus never reads half a file.
			if err := os.WriteFile(file+".tmp", b, 0o644); err != nil {
				return err
			}
			if err := os.Rename(file+".tmp", file); err != nil {
				return err
			}
			written[file] = b
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func derefAll[T any](in []*T) []T {
	out := make([]T, 0, len(in))
	for _, p := range in {
		out = append(out, *p)
	}
	return out
}

// promGet GETs path from the lab's Prometheus: from inside the control-plane namespace when
// direct, else through the relay.
func (l *Lab) promGet(ctx context.Context, path string, direct bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := l.PrometheusURL() + path
	c := http.DefaultClient
	if direct {
		url = "http://" + promAddr + path
		c = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return DialIn(ctx, l.CP(), network, addr)
		}}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// promAPI GETs an API path through the relay and decodes its data into v.
func (l *Lab) promAPI(ctx context.Context, path string, v any) error {
	body, err := l.promGet(ctx, path, false)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("GET %s: %s", path, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// Alert is an active (pending or firing) alert of Prometheus' /api/v1/alerts.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

// PrometheusAlerts returns the lab Prometheus' active alerts, asked through the relay.
func (l *Lab) PrometheusAlerts(ctx context.Context) ([]Alert, error) {
	var d struct {
		Alerts []Alert `json:"alerts"`
	}
	err := l.promAPI(ctx, "/api/v1/alerts", &d)
	return d.Alerts, err
}

// Target is an active scrape target of Prometheus' /api/v1/targets.
type Target struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
	ScrapeURL string            `json:"scrapeUrl"`
}

// PrometheusTargets returns the lab Prometheus' active targets, asked through the relay.
func (l *Lab) PrometheusTargets(ctx context.Context) ([]Target, error) {
	var d struct {
		Active []Target `json:"activeTargets"`
	}
	err := l.promAPI(ctx, "/api/v1/targets?state=active", &d)
	return d.Active, err
}

// RuleGroup is a group of Prometheus' /api/v1/rules.
type RuleGroup struct {
	Name  string `json:"name"`
	Rules []struct {
		Name     string  `json:"name"`
		Duration float64 `json:"duration"` // the alert's for:, in seconds
		Health   string  `json:"health"`
		Type     string  `json:"type"`
	} `json:"rules"`
}

// PrometheusRules returns the rule groups the lab's Prometheus evaluates, asked through the relay.
func (l *Lab) PrometheusRules(ctx context.Context) ([]RuleGroup, error) {
	var d struct {
		Groups []RuleGroup `json:"groups"`
	}
	err := l.promAPI(ctx, "/api/v1/rules", &d)
	return d.Groups, err
}

// prometheusStatus is `lab status`'s line about Prometheus.
func (l *Lab) prometheusStatus(ctx context.Context) string {
	if l.PrometheusPort == 0 {
		return l.prometheusHint()
	}
	where := l.PrometheusURL() + " (through the relay)"
	targets, err := l.PrometheusTargets(ctx)
	if err != nil {
		return where + ": " + err.Error()
	}
	up := 0
	for _, t := range targets {
		if t.Health == "up" {
			up++
		}
	}
	alerts, err := l.PrometheusAlerts(ctx)
	if err != nil {
		return where + ": " + err.Error()
	}
	var firing []string
	for _, a := range alerts {
		if a.State == "firing" {
			firing = append(firing, a.Labels["alertname"])
		}
	}
	sort.Strings(firing)
	f := "none"
	if len(firing) > 0 {
		f = strings.Join(firing, " ")
	}
	return fmt.Sprintf("%s: %d of %d targets up; alerts firing: %s", where, up, len(targets), f)
}

// renderChart renders the chart's templates for vals (checked against its schema) as the
// lab's release, into objects.
func renderChart(chartDir string, vals map[string]any) ([]*unstructured.Unstructured, error) {
	files, err := renderChartFiles(chartDir, vals)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, name := range sortedKeys(files) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(files[name]), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if len(m) > 0 {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return objs, nil
}
