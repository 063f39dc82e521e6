package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/fairlead-lb/fairlead/test/images"
)

// NodeMode says what plays the lab's nodes.
type NodeMode string

const (
	// AgentNodes are lab agents (agent.go): Pods are processes, every container the echo
	// server; up in seconds. The zero NodeMode is this one: the e2e suite runs on it.
	AgentNodes NodeMode = "agent"
	// KubeletNodes are kubelet v1.37.2 with a containerd each, and kube-scheduler schedules.
	KubeletNodes NodeMode = "kubelet"
)

// ParseNodeMode parses a --nodes flag.
func ParseNodeMode(s string) (NodeMode, error) {
	switch m := NodeMode(s); m {
	case AgentNodes, KubeletNodes:
		return m, nil
	}
	return "", fmt.Errorf("node mode %q: want %q or %q", s, AgentNodes, KubeletNodes)
}

func (l *Lab) kubelets() bool { return l.NodeMode == KubeletNodes }

func (l *Lab) kubeletDir(n Node) string { return filepath.Join(l.nodeDir(n), "kubelet") }

// kubeletPKI names the node's certificates in the lab's pki directory.
func kubeletClientCert(n Node) string  { return n.Name + "-kubelet" }
func kubeletServingCert(n Node) string { return n.Name + "-serving" }

// apiserverKubeletClient is the apiserver's identity towards the kubelets (exec, logs,
// port-forward); kubelet asks the apiserver whether it may (webhook authorization).
const apiserverKubeletClient = "apiserver-kubelet-client"

// issueKubeletCerts issues, for every node, kubelet's client certificate (its Node identity,
// which the Node authorizer limits to the node's own objects) and its serving certificate (the
// apiserver checks it against the lab's CA), and the apiserver's client certificate for the
// kubelets.
func (l *Lab) issueKubeletCerts(ca *ca) error {
	if err := ca.issue(apiserverKubeletClient, "kube-apiserver-kubelet-client", []string{"system:masters"}); err != nil {
		return err
	}
	for _, n := range l.Nodes() {
		if err := ca.issue(kubeletClientCert(n), "system:node:"+n.Name, []string{"system:nodes"}); err != nil {
			return err
		}
		if _, err := ca.kubeconfigFor(kubeletClientCert(n), kubeletClientCert(n), "https://"+CPv4+":"+apiPort); err != nil {
			return err
		}
		if err := ca.issue(kubeletServingCert(n), "system:node:"+n.Name, nil, n.V4, n.V6, n.Name); err != nil {
			return err
		}
	}
	return nil
}

// kubeletConfig is node n's KubeletConfiguration. The host has cgroup v1 (failCgroupV1:
// false) and swap may be on; each node has its own cgroup root and log directory; only
// clients with a certificate of the lab's CA or a token the apiserver vouches for get in.
func (l *Lab) kubeletConfig(n Node) ([]byte, error) {
	pki := filepath.Join(l.State, "pki")
	cfg := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               l.cgroupRoot(n),
		"podLogsDir":               filepath.Join(l.nodeDir(n), "pod-logs"),
		"volumePluginDir":          filepath.Join(l.nodeDir(n), "volume-plugins"),
		"containerRuntimeEndpoint": l.containerdAddress(n),
		"address":                  "0.0.0.0",
		"port":                     10250,
		"readOnlyPort":             0,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              10248,
		"tlsCertFile":              filepath.Join(pki, kubeletServingCert(n)+".crt"),
		"tlsPrivateKeyFile":        filepath.Join(pki, kubeletServingCert(n)+".key"),
		"authentication": map[string]any{
			"anonymous": map[string]bool{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]string{"clientCAFile": filepath.Join(pki, "ca.crt")},
		},
		"authorization": map[string]any{"mode": "Webhook"},
		"clusterDomain": "cluster.local",
		"clusterDNS":    []string{ClusterDNS},
		// Pods with dnsPolicy Default must not get the host's resolvers: the lab has no way out.
		"resolvConf": filepath.Join(l.nodeDir(n), "resolv.conf"),
		// The state directory shares the host's disk: kubelet must not evict the lab's Pods
		// because the host's disk is busy with other things.
		"evictionHard": map[string]string{"memory.available": "100Mi", "nodefs.available": "1%",
			"imagefs.available": "1%", "nodefs.inodesFree": "1%"},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"protectKernelDefaults":       false,
		"rotateCertificates":          false,
		"serverTLSBootstrap":          false,
		"registerNode":                true,
		"maxPods":                     110,
		// A faster node status makes Ready and NotReady show sooner in a lab of a few nodes.
		"nodeStatusUpdateFrequency": "4s",
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// startKubelet starts node n's kubelet in the node's namespace.
func (l *Lab) startKubelet(n Node) error {
	dir := l.kubeletDir(n)
	for _, d := range []string{dir, filepath.Join(l.nodeDir(n), "pod-logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(l.nodeDir(n), "resolv.conf"), nil, 0o644); err != nil {
		return err
	}
	cfg, err := l.kubeletConfig(n)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(l.nodeDir(n), "kubelet.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	if err := makeCgroupRoot(l.cgroupRoot(n)); err != nil {
		return err
	}
	return l.babysatDaemon(n.NS, "kubelet-"+n.Name, filepath.Join(l.K8sBin, "kubelet"),
		"--config", cfgPath,
		"--kubeconfig", filepath.Join(l.State, "pki", kubeletClientCert(n)+".kubeconfig"),
		"--root-dir", dir,
		"--hostname-override", n.Name,
		"--node-ip", n.V4+","+n.V6,
		// Zones let topology-aware routing and trafficDistribution be tried in the lab.
		"--node-labels", fmt.Sprintf("topology.kubernetes.io/zone=zone-%d", n.Index),
		"--v", "2")
}

// setPodCIDRs gives node n's Node its pod CIDRs once kubelet has registered it: the node's CNI
// configuration allocates from them, and the lab's topology routes them (no controller
// allocates node CIDRs in the lab).
func setPodCIDRs(ctx context.Context, cs kubernetes.Interface, n Node, timeout time.Duration) error {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{
		"podCIDR": n.PodV4.String(), "podCIDRs": []string{n.PodV4.String(), n.PodV6.String()}}})
	return waitUntil(timeout, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node %s not registered: %w", n.Name, err)
		}
		if len(node.Spec.PodCIDRs) > 0 {
			return nil
		}
		_, err = cs.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		return err
	})
}

// startKubeletNodes records the host, then starts every node's containerd and kubelet, and
// gives each Node its pod CIDRs as it registers.
func (l *Lab) startKubeletNodes(ctx context.Context, cs kubernetes.Interface) error {
	if err := l.recordHost(); err != nil {
		return fmt.Errorf("recording the host's settings: %w", err)
	}
	tarballs, err := l.imageTarballs(ctx)
	if err != nil {
		return err
	}
	for _, n := range l.Nodes() {
		if err := l.startContainerd(ctx, n); err != nil {
			return err
		}
		for _, t := range tarballs {
			if err := images.Import(ctx, l.containerdSocket(n), t); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	for _, n := range l.Nodes() {
		l.say("• %s in %s: %s, kubelet + containerd, pods on %s and %s", n.Name, n.NS, n.V4, n.PodV4, n.PodV6)
		if err := l.startKubelet(n); err != nil {
			return err
		}
	}
	for _, n := range l.Nodes() {
		if err := setPodCIDRs(ctx, cs, n, 2*time.Minute); err != nil {
			return fmt.Errorf("%w (see %s)", err, l.logPath("kubelet-"+n.Name))
		}
	}
	return nil
}

// imageTarballs builds (or takes from the cache) the images the lab's kubelet nodes run: the
// sandbox (pause), the demo's echo server, Fairlead's, which the chart deploys, and the
// cluster DNS (CoreDNS).
func (l *Lab) imageTarballs(ctx context.Context) ([]string, error) {
	pause, err := images.Pause(ctx)
	if err != nil {
		return nil, fmt.Errorf("the pause image: %w", err)
	}
	echo, err := images.Echo(ctx, l.Bin)
	if err != nil {
		return nil, fmt.Errorf("the echo image: %w", err)
	}
	fairlead, err := images.Fairlead(ctx, l.Bin)
	if err != nil {
		return nil, fmt.Errorf("the fairlead image: %w", err)
	}
	coredns, err := images.CoreDNS(ctx, filepath.Join(l.K8sBin, "coredns"))
	if err != nil {
		return nil, fmt.Errorf("the coredns image: %w", err)
	}
	return []string{pause, echo, fairlead, coredns}, nil
}
