package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	kubeletLabPrefix = "flk-%d-"            // with the test process's pid
	kubeletLabState  = "/run/fairlead-k-%d" // likewise
)

// A lab whose nodes are kubelets with a containerd each: the Nodes register and are Ready with
// containerd as their runtime; kube-scheduler spreads the demo's Pods, containerd runs them
// (pause sandbox, the echo image) on the nodes' pod CIDRs, and they answer over the pod network
// from another node, by IPv4 and IPv6; `kubectl exec` and `kubectl logs` reach them through the
// apiserver and the kubelets. Then `lab down` leaves no namespace, process, mount, cgroup, file
// or changed sysctl.
func TestKubeletLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the lab creates network namespaces: run as root") // not a skip: make test runs as root
	}
	removeStaleKubeletLabs(t)
	sysctlsBefore, err := HostSysctls()
	if err != nil {
		t.Fatal(err)
	}
	hostBefore := hostDirsPresent()
	root := repoRoot()
	l := &Lab{Prefix: fmt.Sprintf(kubeletLabPrefix, os.Getpid()), State: fmt.Sprintf(kubeletLabState, os.Getpid()),
		Bin: t.TempDir(), CRDs: filepath.Join(root, "charts/fairlead/crds"), NodeMode: KubeletNodes, HostPort: freePort(t)}
	l.K8sBin = buildK8s(t, root, "kube-apiserver etcd kube-controller-manager kubectl kubelet kube-scheduler")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", l.Bin+"/", "./cmd/fairlead-controller",
		"./cmd/fairlead-speaker", "./cmd/fairleadctl", "./test/echo")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the binaries: %v\n%s", err, out)
	}

	var out strings.Builder
	l.Out = &out
	downDone := false
	t.Cleanup(func() {
		if t.Failed() {
			dumpLabLogs(t, l)
		}
		if !downDone {
			if err := l.Down(); err != nil {
				t.Error(err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := l.Up(ctx); err != nil {
		t.Fatalf("lab up: %v\n%s", err, out.String())
	}
	t.Logf("lab up (kubelet nodes) in %s", time.Since(start).Round(time.Second))

	cfg, err := l.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != Nodes {
		t.Fatalf("%d Nodes, want %d", len(nodes.Items), Nodes)
	}
	for _, n := range nodes.Items {
		info := n.Status.NodeInfo
		if !schedulable(&n) || info.KubeletVersion != "v1.37.2" || !strings.HasPrefix(info.ContainerRuntimeVersion, "containerd://") {
			t.Errorf("node %s: schedulable %v, kubelet %q, runtime %q", n.Name, schedulable(&n), info.KubeletVersion, info.ContainerRuntimeVersion)
		}
	}

	pods, err := cs.CoreV1().Pods(DemoNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	on := map[string]bool{}
	for _, p := range pods.Items {
		on[p.Spec.NodeName] = true
		if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != 1 ||
			!strings.HasPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://") {
			t.Errorf("pod %s: phase %s, containers %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
			continue
		}
		node, _ := l.NodeNamed(p.Spec.NodeName)
		if len(p.Status.PodIPs) != 2 {
			t.Errorf("pod %s has addresses %v, want one per family", p.Name, p.Status.PodIPs)
		}
		for _, ip := range p.Status.PodIPs {
			// From another node, so the answer crosses the LAN and the nodes' pod routes.
			from := l.Nodes()[node.Index%Nodes].NS
			got, err := Request(ctx, from, net.JoinHostPort(ip.IP, "8080"))
			if err != nil || !strings.HasPrefix(got, p.Name+" ") {
				t.Errorf("%s → pod %s at %s: %q, %v", from, p.Name, ip.IP, got, err)
			}
		}
	}
	if len(on) < 2 {
		t.Errorf("the scheduler put every demo Pod on %v", on)
	}

	kubectl := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, filepath.Join(l.K8sBin, "kubectl"),
			append([]string{"--kubeconfig", l.Kubeconfig()}, args...)...).CombinedOutput()
		return string(out), err
	}
	pod := pods.Items[0].Name
	// The echo image holds nothing but /echo: its -help (exit 0) is what exec can run.
	if got, err := kubectl("exec", "-n", DemoNamespace, pod, "--", "/echo", "-help"); err != nil || !strings.Contains(got, "-tcp") {
		t.Errorf("kubectl exec %s -- /echo -help: %v\n%s", pod, err, got)
	}
	if got, err := kubectl("logs", "-n", DemoNamespace, pod); err != nil || !strings.Contains(got, "ready") {
		t.Errorf("kubectl logs %s: %v\n%s", pod, err, got)
	}

	start = time.Now()
	downDone = true
	if err := l.Down(); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	t.Logf("lab down in %s", time.Since(start).Round(100*time.Millisecond))
	if left := l.Namespaces(); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if left := processesMentioning(l.State); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
	if left := MountsUnder(l.State); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		for _, n := range l.Nodes() {
			if _, err := os.Stat(filepath.Join(m, l.cgroupRoot(n))); err == nil {
				t.Errorf("cgroup %s left", filepath.Join(m, l.cgroupRoot(n)))
			}
		}
	}
	if _, err := os.Stat(l.State); err == nil {
		t.Errorf("state directory %s left", l.State)
	}
	if after, err := HostSysctls(); err != nil || !mapsEqual(after, sysctlsBefore) {
		t.Errorf("sysctls after lab down %v (%v), before %v", after, err, sysctlsBefore)
	}
	if after := hostDirsPresent(); !slices.Equal(after, hostBefore) {
		t.Errorf("host directories after lab down %v, before %v", after, hostBefore)
	}
	for _, d := range []string{"/var/log/containers", "/var/lib/cni/results"} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), l.Prefix) || strings.Contains(e.Name(), "_"+DemoNamespace+"_") {
				t.Errorf("%s left", filepath.Join(d, e.Name()))
			}
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// hostDirsPresent lists which of the directories kubelet nodes may create exist.
func hostDirsPresent() []string {
	var out []string
	for _, d := range hostDirs {
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// processesMentioning lists the processes whose command line names a path under dir.
func processesMentioning(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir+"/") {
			out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(b), "\x00", " ")))
		}
	}
	return out
}

// removeStaleKubeletLabs takes down the labs of earlier runs of this test that were killed.
func removeStaleKubeletLabs(t *testing.T) {
	dirs, _ := filepath.Glob(strings.Replace(kubeletLabState, "%d", "*", 1))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d, kubeletLabState, &pid); err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("removing the lab of an earlier run (pid %d)", pid)
		if err := (&Lab{Prefix: fmt.Sprintf(kubeletLabPrefix, pid), State: d}).Down(); err != nil {
			t.Log(err)
		}
	}
}

func dumpLabLogs(t *testing.T, l *Lab) {
	files, _ := filepath.Glob(filepath.Join(l.State, "logs", "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		t.Logf("--- %s (last %d lines)\n%s", filepath.Base(f), min(len(lines), 20), strings.Join(lines[max(0, len(lines)-20):], "\n"))
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// buildK8s returns the directory of the Kubernetes binaries, building the missing ones.
func buildK8s(t *testing.T, root, want string) string {
	args := []string{filepath.Join(root, "test/tools/build-control-plane.sh")}
	if d := os.Getenv("FAIRLEAD_K8S_BIN"); d != "" {
		args = append(args, d)
	}
	cmd := exec.Command("bash", args...)
	cmd.Env = append(os.Environ(), "WANT="+want)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("building the Kubernetes binaries: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
