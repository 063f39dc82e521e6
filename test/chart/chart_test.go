// Package chart verifies the Helm chart with Helm's own Go library: it lints, renders with the
// defaults and with every example the README gives, creates what it renders on a real
// kube-apiserver, and runs the controller as the chart's ServiceAccount with exactly the chart's
// RBAC.
package chart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
)

const (
	release   = "fairlead"
	namespace = "fairlead-system"
)

var chartDir = filepath.Join(controlplane.RepoRoot(), "charts", "fairlead")

func load(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// renderFiles renders the chart's templates for the given values, validated against the
// schema, by file name.
func renderFiles(ch *chart.Chart, vals map[string]any) (map[string]string, error) {
	rv, err := util.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1},
		common.DefaultCapabilities, false)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// render returns the chart's objects for the given values, validated against the schema.
func render(ch *chart.Chart, vals map[string]any) ([]*unstructured.Unstructured, error) {
	files, err := renderFiles(ch, vals)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []*unstructured.Unstructured
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") {
			continue // NOTES.txt, helpers
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(files[n]), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			if len(m) == 0 {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs, nil
}

func TestLint(t *testing.T) {
	for name, vals := range examples(t) {
		l := lint.RunAll(chartDir, vals, namespace)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %s", name, m)
			}
		}
	}
}

// examples are the values files the README shows, by the name of their section, plus the
// defaults and the optional ccm: each must lint, render and install.
func examples(t *testing.T) map[string]map[string]any {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{
		"defaults":    {},
		"ccm enabled": {"ccm": map[string]any{"enabled": true, "replicas": 2}},
	}
	// A values example is a ```yaml block whose first line is a "# values: <name>" comment.
	re := regexp.MustCompile("(?s)```yaml\n# values: ([^\n]+)\n(.*?)```")
	for _, m := range re.FindAllSubmatch(readme, -1) {
		var v map[string]any
		if err := yaml.Unmarshal(m[2], &v); err != nil {
			t.Fatalf("README values example %q: %v", m[1], err)
		}
		out[string(m[1])] = v
	}
	if len(out) < 4 {
		t.Fatalf("found %d README values examples, want at least 2", len(out)-2)
	}
	return out
}

func TestSchemaRejectsWrongValues(t *testing.T) {
	ch := load(t)
	for _, bad := range []string{
		`controller: {replicas: two}`,
		`speaker: {proxy: "yes"}`,
		`controler: {replicas: 2}`, // misspelt key
		`ipPools: [{name: Bad_Name, spec: {}}]`,
		`metrics: {serviceMonitor: {interval: soon}}`,
		`metrics: {secure: "no"}`,
		`metrics: {reader: {serviceAccount: {name: prometheus, namspace: monitoring}}}`, // misspelt key
		`aws: {nlb: true, vpcID: vpc-1}`,                                                // no cluster name to tag with
		`aws: {elasticIPs: true, clusterName: ""}`,                                      // the same
		// the ccm's Elastic IPs go to unclassed Services, which the speakers would then ignore
		`{defaultClass: false, ccm: {enabled: true, cloudConfig: {provider: aws-eip, aws: {clusterName: prod, allocateOnDemand: true}}}}`,
	} {
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(bad), &vals); err != nil {
			t.Fatal(err)
		}
		if _, err := render(ch, vals); err == nil {
			t.Errorf("values %q rendered without error", bad)
		}
	}
}

func TestRendersSecureDefaults(t *testing.T) {
	objs, err := render(load(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	var ds appsv1.DaemonSet
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment":
			mustConvert(t, o, &dep)
		case "DaemonSet":
			mustConvert(t, o, &ds)
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if *dep.Spec.Replicas != 2 || !slicesContain(c.Args, "--leader-elect=true") {
		t.Errorf("controller: %d replicas, args %v; want 2 with leader election", *dep.Spec.Replicas, c.Args)
	}
	if sc := c.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		dep.Spec.Template.Spec.SecurityContext.RunAsNonRoot == nil || !*dep.Spec.Template.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("controller security context is not locked down: %+v", c.SecurityContext)
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.Resources.Requests.Cpu().IsZero() {
		t.Error("controller lacks probes or requests")
	}
	s := ds.Spec.Template.Spec.Containers[0]
	if !ds.Spec.Template.Spec.HostNetwork || s.SecurityContext == nil || (s.SecurityContext.Privileged != nil && *s.SecurityContext.Privileged) {
		t.Fatalf("speaker must use the host network without being privileged: %+v", s.SecurityContext)
	}
	caps := fmt.Sprint(s.SecurityContext.Capabilities.Add)
	if caps != "[NET_ADMIN NET_RAW]" || fmt.Sprint(s.SecurityContext.Capabilities.Drop) != "[ALL]" {
		t.Errorf("speaker capabilities add %s drop %v; want exactly NET_ADMIN, NET_RAW on top of none", caps, s.SecurityContext.Capabilities.Drop)
	}
	if !slicesContain(s.Args, "--proxy=false") {
		t.Errorf("the proxy must be off by default: %v", s.Args)
	}
	// Metrics for authorized scrapers only; probes on a port of their own, the speaker's on
	// loopback (it shares the node's network).
	if !slicesContain(c.Args, "--metrics-secure=true") || !slicesContain(s.Args, "--metrics-secure=true") {
		t.Errorf("metrics are not secure by default: controller %v, speaker %v", c.Args, s.Args)
	}
	if !slicesContain(s.Args, "--health-probe-bind-address=127.0.0.1:7475") || s.LivenessProbe == nil || s.ReadinessProbe == nil ||
		s.LivenessProbe.HTTPGet.Host != "127.0.0.1" || s.ReadinessProbe.HTTPGet.Port.IntValue() != 7475 {
		t.Errorf("speaker probes: args %v, liveness %+v, readiness %+v; want both on 127.0.0.1:7475", s.Args, s.LivenessProbe, s.ReadinessProbe)
	}
	var reader *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" && strings.HasSuffix(o.GetName(), "-metrics-reader") {
			reader = o
		}
		if o.GetKind() == "ClusterRoleBinding" && strings.HasSuffix(o.GetName(), "-metrics-reader") {
			t.Errorf("metrics-reader bound to %v without metrics.reader.serviceAccount", o.Object["subjects"])
		}
	}
	if reader == nil || fmt.Sprint(reader.Object["rules"]) != "[map[nonResourceURLs:[/metrics] verbs:[get]]]" {
		t.Errorf("no ClusterRole granting get /metrics and nothing else: %v", reader)
	}
}

func mustConvert(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
		t.Fatal(err)
	}
}

func slicesContain(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// TestInstallsAndRunsWithItsRBAC creates every object of every example on a real apiserver, then
// runs the controller as the chart's ServiceAccount (nothing else grants it anything) with the
// args the chart gives it, and checks it does its job and no more.
func TestInstallsAndRunsWithItsRBAC(t *testing.T) {
	env := controlplane.StartForTest(t, controlplane.Options{})
	ctx := context.Background()
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	ch := load(t)
	var dep appsv1.Deployment
	for name, vals := range examples(t) {
		objs, err := render(ch, vals)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Examples repeat the same objects: create or update, never only dry-run.
		applyObjects(t, c, objs)
		if name == "defaults" {
			find(t, objs, "Deployment", release+"-controller", &dep)
		}
	}

	sa := func(name string) *rest.Config {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: saUser(release + "-" + name)}
		return cfg
	}
	startController(t, env, &dep)

	// The controller, with only the chart's RBAC, allocates and reports.
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "chart-test"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.64/28"}}}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false),
			LoadBalancerClass: ptr.To(v1alpha1.LoadBalancerClass),
			Ports:             []corev1.ServicePort{{Port: 80}}}}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 60*time.Second, "the controller, running as the chart's ServiceAccount, to allocate an address", func(context.Context) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			t.Fatal(err)
		}
		if len(svc.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no address in web's status: %+v", svc.Status.Conditions)
		}
		return nil
	})
	if err := c.Get(ctx, client.ObjectKeyFromObject(pool), pool); err != nil {
		t.Fatal(err)
	}
	if pool.Status.IPv4 == nil || pool.Status.IPv4.Used != 1 {
		// Status is written at most once per second.
		time.Sleep(1500 * time.Millisecond)
		_ = c.Get(ctx, client.ObjectKeyFromObject(pool), pool)
		if pool.Status.IPv4 == nil || pool.Status.IPv4.Used != 1 {
			t.Errorf("pool status not written with the chart's RBAC: %+v", pool.Status)
		}
	}
	// It reads Communities and writes advertisements' status: an alias nobody defines is
	// refused in the status.
	ad := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "chart-test"},
		Spec: v1alpha1.BGPAdvertisementSpec{Communities: []string{"chart-test-alias"}}}
	if err := c.Create(ctx, ad); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 30*time.Second, "the BGPAdvertisement to be marked not Accepted", func(context.Context) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ad), ad); err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(ad.Status.Conditions, v1alpha1.ConditionAccepted); cond == nil || cond.Status != metav1.ConditionFalse {
			return fmt.Errorf("conditions %+v", ad.Status.Conditions)
		}
		return nil
	})

	// And no more than it needs.
	for _, tc := range []struct {
		who  string
		what string
		try  func(client.Client) error
	}{
		{"controller", "read Secrets", func(c client.Client) error {
			return c.List(ctx, &corev1.SecretList{}, client.InNamespace(namespace))
		}},
		{"controller", "delete Services", func(c client.Client) error { return c.Delete(ctx, svc.DeepCopy()) }},
		{"controller", "write Leases outside its namespace", func(c client.Client) error {
			return c.Create(ctx, leaseIn("default"))
		}},
		{"speaker", "write Service status", func(c client.Client) error {
			s := svc.DeepCopy()
			s.Status.LoadBalancer.Ingress = nil
			return c.Status().Update(ctx, s)
		}},
		{"speaker", "read Secrets cluster-wide", func(c client.Client) error { return c.List(ctx, &corev1.SecretList{}) }},
		{"speaker", "write IPPools", func(c client.Client) error {
			p := pool.DeepCopy()
			p.Spec.Addresses = append(p.Spec.Addresses, "192.0.2.128/28")
			return c.Update(ctx, p)
		}},
	} {
		cl, err := client.New(sa(tc.who), client.Options{Scheme: env.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.try(cl); !apierrors.IsForbidden(err) {
			t.Errorf("the %s can %s (err %v), want Forbidden", tc.who, tc.what, err)
		}
	}
}

func writeImpersonating(t *testing.T, env *controlplane.Env, path, user string) {
	t.Helper()
	if err := env.Kubeconfig(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

func leaseIn(ns string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-yours"}}
}

// controller.metallbPoolAnnotation turns on the controller flag, and only it does.
func TestRendersMetalLBPoolAnnotation(t *testing.T) {
	for _, on := range []bool{false, true} {
		objs, err := render(load(t), map[string]any{"controller": map[string]any{"metallbPoolAnnotation": on}})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GetKind() != "Deployment" {
				continue
			}
			var dep appsv1.Deployment
			mustConvert(t, o, &dep)
			if got := slicesContain(dep.Spec.Template.Spec.Containers[0].Args, "--metallb-pool-annotation"); got != on {
				t.Errorf("metallbPoolAnnotation %v: args %v", on, dep.Spec.Template.Spec.Containers[0].Args)
			}
		}
	}
}
