package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

// --config takes kube-proxy's own configuration file (KubeProxyConfiguration,
// kubeproxy.config.k8s.io/v1alpha1) rather than a format of ours: a cluster replacing
// kube-proxy already has one (kubeadm's kube-proxy ConfigMap), and can mount it as is. Its
// fields that mean something here become the matching flags; flags given on the command line
// win; the rest is named in a log line and ignored.
var proxyConfigFile = flag.String("config", "",
	"kube-proxy's configuration file (KubeProxyConfiguration): the fields the proxy shares with kube-proxy "+
		"set the matching flags; flags on the command line win.")

// kubeProxyConfig holds the KubeProxyConfiguration fields that map to our flags.
type kubeProxyConfig struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Mode               string   `json:"mode"`
	ClusterCIDR        string   `json:"clusterCIDR"`
	NodePortAddresses  []string `json:"nodePortAddresses"`
	MasqueradeAll      *bool    `json:"masqueradeAll"`
	HealthzBindAddress string   `json:"healthzBindAddress"`
	MetricsBindAddress string   `json:"metricsBindAddress"`
	DetectLocalMode    string   `json:"detectLocalMode"`
	DetectLocal        struct {
		BridgeInterface     string `json:"bridgeInterface"`
		InterfaceNamePrefix string `json:"interfaceNamePrefix"`
	} `json:"detectLocal"`
	Conntrack struct {
		MaxPerCore            *int32 `json:"maxPerCore"`
		Min                   *int32 `json:"min"`
		TCPEstablishedTimeout string `json:"tcpEstablishedTimeout"`
		TCPCloseWaitTimeout   string `json:"tcpCloseWaitTimeout"`
		TCPBeLiberal          *bool  `json:"tcpBeLiberal"`
		UDPTimeout            string `json:"udpTimeout"`
		UDPStreamTimeout      string `json:"udpStreamTimeout"`
	} `json:"conntrack"`
	NFTables struct {
		MinSyncPeriod string `json:"minSyncPeriod"`
	} `json:"nftables"`
}

// the top-level fields used above; any other is reported as ignored.
var usedConfigFields = []string{"apiVersion", "kind", "mode", "clusterCIDR", "nodePortAddresses", "masqueradeAll",
	"healthzBindAddress", "metricsBindAddress", "detectLocalMode", "detectLocal", "conntrack", "nftables"}

// applyProxyConfig reads --config into the flags not given on the command line.
func applyProxyConfig() error {
	if *proxyConfigFile == "" {
		return nil
	}
	b, err := os.ReadFile(*proxyConfigFile)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var c kubeProxyConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("--config %s: %w", *proxyConfigFile, err)
	}
	if c.Kind != "KubeProxyConfiguration" || c.APIVersion != "kubeproxy.config.k8s.io/v1alpha1" {
		return fmt.Errorf("--config %s: apiVersion %q kind %q: want kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration",
			*proxyConfigFile, c.APIVersion, c.Kind)
	}
	if c.Mode != "" && c.Mode != "nftables" {
		klog.InfoS("--config: mode is ignored: this proxy always programs nftables", "mode", c.Mode)
	}
	var all map[string]any
	_ = yaml.Unmarshal(b, &all)
	var ignored []string
	for k, v := range all {
		if !slices.Contains(usedConfigFields, k) && v != nil {
			ignored = append(ignored, k)
		}
	}
	if len(ignored) > 0 {
		slices.Sort(ignored)
		klog.InfoS("--config: fields without a counterpart here are ignored", "fields", ignored)
	}

	given := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
	set := func(name, value string) error {
		if value == "" || given[name] {
			return nil
		}
		if err := flag.Set(name, value); err != nil {
			return fmt.Errorf("--config %s: %s %q: %w", *proxyConfigFile, name, value, err)
		}
		return nil
	}
	str := func(p any) string {
		switch v := p.(type) {
		case *bool:
			if v != nil {
				return fmt.Sprint(*v)
			}
		case *int32:
			if v != nil {
				return fmt.Sprint(*v)
			}
		}
		return ""
	}
	for _, kv := range [][2]string{
		{"cluster-cidr", c.ClusterCIDR},
		{"nodeport-addresses", strings.Join(c.NodePortAddresses, ",")},
		{"masquerade-all", str(c.MasqueradeAll)},
		{"healthz-bind-address", c.HealthzBindAddress},
		{"proxy-metrics-bind-address", c.MetricsBindAddress},
		{"detect-local-mode", c.DetectLocalMode},
		{"pod-bridge-interface", c.DetectLocal.BridgeInterface},
		{"pod-interface-name-prefix", c.DetectLocal.InterfaceNamePrefix},
		{"conntrack-max-per-core", str(c.Conntrack.MaxPerCore)},
		{"conntrack-min", str(c.Conntrack.Min)},
		{"conntrack-tcp-timeout-established", c.Conntrack.TCPEstablishedTimeout},
		{"conntrack-tcp-timeout-close-wait", c.Conntrack.TCPCloseWaitTimeout},
		{"conntrack-tcp-be-liberal", str(c.Conntrack.TCPBeLiberal)},
		{"conntrack-udp-timeout", c.Conntrack.UDPTimeout},
		{"conntrack-udp-timeout-stream", c.Conntrack.UDPStreamTimeout},
		{"proxy-min-sync-interval", c.NFTables.MinSyncPeriod},
	} {
		if err := set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}
