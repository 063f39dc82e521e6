package lab

import (
	"fmt"
	"path/filepath"
)

// ProxyMode says what proxies Services on the kubelet lab's nodes.
type ProxyMode string

const (
	// FairleadProxy is the speaker's proxy (the chart's speaker.proxy): no kube-proxy runs.
	// The zero ProxyMode is this one.
	FairleadProxy ProxyMode = "fairlead"
	// KubeProxy is kube-proxy v1.37.2 in nftables mode on every node (the speakers run without
	// their proxy): the reference the conformance table compares Fairlead with.
	KubeProxy ProxyMode = "kube-proxy"
)

// ParseProxyMode parses a --proxy flag.
func ParseProxyMode(s string) (ProxyMode, error) {
	switch m := ProxyMode(s); m {
	case FairleadProxy, KubeProxy:
		return m, nil
	}
	return "", fmt.Errorf("proxy %q: want %q or %q", s, FairleadProxy, KubeProxy)
}

func (l *Lab) kubeProxy() bool { return l.Proxy == KubeProxy }

// startKubeProxy runs kube-proxy on node n as a kube-proxy DaemonSet Pod would (host network),
// configured like the speaker's proxy: the lab's cluster CIDRs, NodePorts on the Node's
// InternalIPs (nftables mode's default), health and metrics on every address (e2e.test checks
// them). It leaves the conntrack sysctls alone: nf_conntrack_max is host-wide.
func (l *Lab) startKubeProxy(n Node) error {
	return l.daemon(n.NS, "kube-proxy-"+n.Name, filepath.Join(l.K8sBin, "kube-proxy"),
		"--proxy-mode=nftables", "--kubeconfig", l.LANKubeconfig(), "--hostname-override", n.Name,
		"--cluster-cidr", podCIDRs, "--metrics-bind-address", "0.0.0.0:10249", "--healthz-bind-address", "0.0.0.0:10256",
		"--conntrack-max-per-core=0", "--oom-score-adj=0", "--v=2")
}
