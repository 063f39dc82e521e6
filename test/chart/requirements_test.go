package chart

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func renderValues(t *testing.T, vals string) ([]*unstructured.Unstructured, map[string]string) {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(vals), &v); err != nil {
		t.Fatal(err)
	}
	ch := load(t)
	objs, err := render(ch, v)
	if err != nil {
		t.Fatal(err)
	}
	files, err := renderFiles(ch, v)
	if err != nil {
		t.Fatal(err)
	}
	return objs, files
}

func kinds(objs []*unstructured.Unstructured, kind string) []string {
	var out []string
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o.GetName())
		}
	}
	slices.Sort(out)
	return out
}

// The defaults give what the issue lists: a PDB for the two controllers, memory limits,
// headless metrics Services for both components, no ServiceMonitor (it needs the Prometheus
// Operator), no control-plane toleration, NOTES that tell how to get a pool.
func TestDefaultsHaveWhatTheIssueAsks(t *testing.T) {
	objs, files := renderValues(t, "")
	var pdb policyv1.PodDisruptionBudget
	find(t, objs, "PodDisruptionBudget", release+"-controller", &pdb)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v, want 1", pdb.Spec.MinAvailable)
	}
	var dep appsv1.Deployment
	var ds appsv1.DaemonSet
	find(t, objs, "Deployment", release+"-controller", &dep)
	find(t, objs, "DaemonSet", release+"-speaker", &ds)
	for name, c := range map[string]corev1.Container{"controller": dep.Spec.Template.Spec.Containers[0], "speaker": ds.Spec.Template.Spec.Containers[0]} {
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("%s resources %+v: want CPU and memory requests and a memory limit", name, c.Resources)
		}
	}
	if got := fmt.Sprint(kinds(objs, "Service")); got != "[fairlead-controller-metrics fairlead-speaker-metrics]" {
		t.Errorf("Services %s, want the two metrics Services", got)
	}
	if got := kinds(objs, "ServiceMonitor"); len(got) != 0 {
		t.Errorf("ServiceMonitors %v by default", got)
	}
	for _, tol := range ds.Spec.Template.Spec.Tolerations {
		if strings.Contains(tol.Key, "control-plane") {
			t.Errorf("the speaker tolerates control-plane nodes by default: %+v", tol)
		}
	}
	if sc := ds.Spec.Template.Spec.Containers[0].SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation {
		t.Errorf("speaker security context %+v: want a read-only root filesystem and no privilege escalation", sc)
	}
	notes := files["fairlead/templates/NOTES.txt"]
	if !strings.Contains(notes, "No IPPool was created") || strings.Contains(notes, "kube-proxy") {
		t.Errorf("NOTES for the defaults:\n%s", notes)
	}
}

// Each option turns on what it promises.
func TestOptions(t *testing.T) {
	objs, files := renderValues(t, `
speaker: {proxy: true, tolerateControlPlane: true}
metrics: {serviceMonitor: {enabled: true, labels: {release: prometheus}}}
controller: {replicas: 1}
ipPools: [{name: lan, spec: {addresses: ["192.0.2.0/28"]}}]
`)
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", release+"-speaker", &ds)
	if !slices.ContainsFunc(ds.Spec.Template.Spec.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Key == "node-role.kubernetes.io/control-plane" && tol.Operator == corev1.TolerationOpExists
	}) {
		t.Errorf("tolerateControlPlane: tolerations %+v", ds.Spec.Template.Spec.Tolerations)
	}
	if !slices.Contains(ds.Spec.Template.Spec.Containers[0].Args, "--proxy=true") {
		t.Errorf("proxy: args %v", ds.Spec.Template.Spec.Containers[0].Args)
	}
	if got := fmt.Sprint(kinds(objs, "ServiceMonitor")); got != "[fairlead-controller fairlead-speaker]" {
		t.Errorf("ServiceMonitors %s", got)
	}
	// One replica: no leader election, and no PDB that would block every node drain.
	var dep appsv1.Deployment
	find(t, objs, "Deployment", release+"-controller", &dep)
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--leader-elect=false") || len(kinds(objs, "PodDisruptionBudget")) != 0 {
		t.Errorf("one replica: args %v, PDBs %v", dep.Spec.Template.Spec.Containers[0].Args, kinds(objs, "PodDisruptionBudget"))
	}
	notes := files["fairlead/templates/NOTES.txt"]
	if !strings.Contains(notes, "remove kube-proxy") || !strings.Contains(notes, "speaker.kubeAPIServer.host") ||
		strings.Contains(notes, "No IPPool was created") {
		t.Errorf("NOTES with the proxy on, no apiserver address and a pool:\n%s", notes)
	}
	// With the proxy replacing kube-proxy, the speaker must reach the apiserver directly.
	objs, files = renderValues(t, `speaker: {proxy: true, kubeAPIServer: {host: 192.0.2.10, port: 6443}}`)
	find(t, objs, "DaemonSet", release+"-speaker", &ds)
	env := map[string]string{}
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["KUBERNETES_SERVICE_HOST"] != "192.0.2.10" || env["KUBERNETES_SERVICE_PORT"] != "6443" {
		t.Errorf("kubeAPIServer: speaker env %v", env)
	}
	if strings.Contains(files["fairlead/templates/NOTES.txt"], "speaker.kubeAPIServer.host") {
		t.Errorf("NOTES warn about the apiserver address although it is set")
	}
	// Pools from values survive uninstall unless asked otherwise.
	for _, o := range objs {
		if o.GetKind() == "IPPool" && o.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("IPPool %s annotations %v, want helm.sh/resource-policy: keep", o.GetName(), o.GetAnnotations())
		}
	}
	objs, _ = renderValues(t, `{keepConfigOnUninstall: false, ipPools: [{name: lan, spec: {addresses: ["192.0.2.0/28"]}}]}`)
	for _, o := range objs {
		if o.GetKind() == "IPPool" && o.GetAnnotations()["helm.sh/resource-policy"] != "" {
			t.Errorf("keepConfigOnUninstall false: IPPool annotations %v", o.GetAnnotations())
		}
	}
}

// The optional ccm runs locked down like the controller, with leader election when replicated.
func TestCCMOption(t *testing.T) {
	objs, _ := renderValues(t, `ccm: {enabled: true, replicas: 2}`)
	var dep appsv1.Deployment
	find(t, objs, "Deployment", release+"-ccm", &dep)
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		c.SecurityContext == nil || !*c.SecurityContext.ReadOnlyRootFilesystem || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("ccm security contexts %+v %+v", pod.SecurityContext, c.SecurityContext)
	}
	if !slices.Contains(c.Args, "--leader-elect=true") || c.LivenessProbe == nil || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("ccm: args %v, liveness %v, resources %+v", c.Args, c.LivenessProbe, c.Resources)
	}
	if pod.ServiceAccountName != release+"-ccm" {
		t.Errorf("ccm runs as %q, want its own ServiceAccount", pod.ServiceAccountName)
	}

	// Its metrics are scraped like the others', over HTTPS with a token even when the other
	// components serve plain HTTP (every cloud-controller-manager serves only HTTPS).
	objs, _ = renderValues(t, `{ccm: {enabled: true}, metrics: {secure: false, serviceMonitor: {enabled: true}}}`)
	var svc corev1.Service
	find(t, objs, "Service", release+"-ccm-metrics", &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 10258 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("ccm metrics Service ports %+v", svc.Spec.Ports)
	}
	var sm unstructured.Unstructured
	find(t, objs, "ServiceMonitor", release+"-ccm", &sm)
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["scheme"] != "https" || eps[0].(map[string]any)["bearerTokenFile"] == nil {
		t.Errorf("ccm ServiceMonitor endpoints %v, want https with the token", eps)
	}
	for _, c := range []string{"controller", "speaker"} {
		find(t, objs, "ServiceMonitor", release+"-"+c, &sm)
		if eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints"); eps[0].(map[string]any)["scheme"] == "https" {
			t.Errorf("%s ServiceMonitor scrapes https with metrics.secure=false", c)
		}
	}
}

// The AWS modes reach both binaries as flags, and the IAM role annotation both ServiceAccounts.
func TestAWSOption(t *testing.T) {
	objs, _ := renderValues(t, `aws: {nlb: true, elasticIPs: true, clusterName: prod, vpcID: vpc-1, subnets: [subnet-a, subnet-b],
  serviceAccountAnnotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/fairlead"}}`)
	var dep appsv1.Deployment
	var ds appsv1.DaemonSet
	find(t, objs, "Deployment", release+"-controller", &dep)
	find(t, objs, "DaemonSet", release+"-speaker", &ds)
	for _, want := range []string{"--aws-nlb=true", "--aws-eip=true", "--aws-cluster-name=prod", "--aws-vpc-id=vpc-1", "--aws-subnets=subnet-a,subnet-b"} {
		if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, want) {
			t.Errorf("controller args %v lack %s", dep.Spec.Template.Spec.Containers[0].Args, want)
		}
	}
	for _, want := range []string{"--aws-eip=true", "--aws-cluster-name=prod"} {
		if !slices.Contains(ds.Spec.Template.Spec.Containers[0].Args, want) {
			t.Errorf("speaker args %v lack %s", ds.Spec.Template.Spec.Containers[0].Args, want)
		}
	}
	for _, name := range []string{release + "-controller", release + "-speaker"} {
		var sa corev1.ServiceAccount
		find(t, objs, "ServiceAccount", name, &sa)
		if sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
			t.Errorf("ServiceAccount %s annotations %v", name, sa.Annotations)
		}
	}
	// fairlead-ccm's aws-eip backend: the speakers move its Elastic IPs, with its settings.
	objs, _ = renderValues(t, `ccm: {enabled: true, cloudConfig: {provider: aws-eip, aws: {clusterName: prod, region: eu-west-1, allocateOnDemand: true}}}`)
	find(t, objs, "DaemonSet", release+"-speaker", &ds)
	for _, want := range []string{"--aws-eip=true", "--aws-cluster-name=prod", "--aws-region=eu-west-1", "--default-class=true"} {
		if !slices.Contains(ds.Spec.Template.Spec.Containers[0].Args, want) {
			t.Errorf("ccm aws-eip: speaker args %v lack %s", ds.Spec.Template.Spec.Containers[0].Args, want)
		}
	}
	// Off by default: no AWS flag at all.
	objs, _ = renderValues(t, "")
	find(t, objs, "Deployment", release+"-controller", &dep)
	if args := fmt.Sprint(dep.Spec.Template.Spec.Containers[0].Args); strings.Contains(args, "aws") {
		t.Errorf("default controller args mention AWS: %s", args)
	}
}
