package proxy

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

// Options configure the proxy as fairlead-speaker runs it (New): what the speaker shares with
// it, and the settings of its flags (AddFlags), which are kube-proxy's wherever kube-proxy has
// the same, and of kube-proxy's own configuration file (ConfigFile).
type Options struct {
	Node   string
	Client kubernetes.Interface
	// Informers is the speaker's shared factory; the caller starts it.
	Informers informers.SharedInformerFactory
	// Metrics receives the proxy's metrics, and is what MetricsBindAddress serves.
	Metrics *prometheus.Registry

	// NodePortAddresses is "primary" or comma-separated CIDRs; ClusterCIDR and ServiceCIDR
	// are comma-separated CIDRs.
	NodePortAddresses, ClusterCIDR, ServiceCIDR string
	// MinSyncInterval, SyncPeriod and HealthTimeout are the Proxier's (ProxierOptions).
	MinSyncInterval, SyncPeriod, HealthTimeout time.Duration

	MasqueradeAll bool
	// DetectLocalMode is kube-proxy's ("" or ClusterCIDR, NodeCIDR, BridgeInterface,
	// InterfaceNamePrefix), with the bridge or the prefix the last two need.
	DetectLocalMode, PodBridgeInterface, PodInterfaceNamePrefix string

	Conntrack ConntrackOptions
	// HealthzBindAddress and MetricsBindAddress are kube-proxy's ports: /healthz and /livez,
	// and /proxyMode, /metrics, /healthz. "0" disables one.
	HealthzBindAddress, MetricsBindAddress string
	// ConfigFile is kube-proxy's configuration file (KubeProxyConfiguration): New sets the
	// settings of the flags that were not given on the command line from its fields that mean
	// something here.
	ConfigFile string

	// flags is the FlagSet AddFlags registered on: its command line's flags win over
	// ConfigFile.
	flags *flag.FlagSet
}

// ConntrackOptions are the conntrack sysctls set at start; zero leaves the kernel's value.
type ConntrackOptions struct {
	// MaxPerCore × CPUs, or Min if more, is nf_conntrack_max.
	MaxPerCore, Min int

	TCPEstablished, TCPCloseWait, UDPTimeout, UDPStream time.Duration
	TCPBeLiberal                                        bool
}

// AddFlags registers the proxy's flags, kube-proxy's --config among them.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	o.flags = fs
	fs.StringVar(&o.NodePortAddresses, "nodeport-addresses", "primary",
		"'primary' (NodePorts answer on the node's primary IPs, from its Node object, as kube-proxy's nftables "+
			"mode), or comma-separated CIDRs: NodePorts answer only on node addresses inside them "+
			"('0.0.0.0/0,::/0': every address).")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", "",
		"Comma-separated pod CIDRs. Traffic from elsewhere to ClusterIPs is masqueraded, and pods reaching an "+
			"externalTrafficPolicy Local Service's external address may use any endpoint.")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", "",
		"Comma-separated ClusterIP ranges, besides those of the cluster's ServiceCIDR objects (which clusters "+
			"before Kubernetes 1.33 do not have): traffic to a free address in them is dropped.")
	fs.DurationVar(&o.MinSyncInterval, "proxy-min-sync-interval", time.Second,
		"Least time between two nftables syncs; changes arriving meanwhile are batched.")
	fs.DurationVar(&o.SyncPeriod, "proxy-sync-period", 30*time.Minute,
		"How often the proxy rewrites all of its rules (repairing any drift).")
	fs.DurationVar(&o.HealthTimeout, "proxy-health-timeout", time.Minute,
		"The proxy reports itself unhealthy (/healthz and every healthCheckNodePort) while a change has waited "+
			"this long for a successful sync.")
	fs.BoolVar(&o.MasqueradeAll, "masquerade-all", false,
		"Masquerade all traffic to ClusterIPs, not only traffic from outside the pods' networks.")
	fs.StringVar(&o.DetectLocalMode, "detect-local-mode", "",
		"How to tell pods' traffic from the rest: ClusterCIDR (--cluster-cidr; the default when it is set), "+
			"NodeCIDR (the Node's spec.podCIDRs), BridgeInterface (--pod-bridge-interface) or InterfaceNamePrefix "+
			"(--pod-interface-name-prefix).")
	fs.StringVar(&o.PodBridgeInterface, "pod-bridge-interface", "", "With --detect-local-mode BridgeInterface: the pods' bridge.")
	fs.StringVar(&o.PodInterfaceNamePrefix, "pod-interface-name-prefix", "",
		"With --detect-local-mode InterfaceNamePrefix: the prefix of the pods' interfaces on the node.")
	// Unlike kube-proxy's, the conntrack defaults leave the kernel's values: writing /proc/sys
	// needs a privileged container, which the chart's speaker is not.
	fs.IntVar(&o.Conntrack.MaxPerCore, "conntrack-max-per-core", 0,
		"Raise nf_conntrack_max to this per CPU, or to --conntrack-min if more (kube-proxy: 32768; 0 with "+
			"--conntrack-min 0 leaves it). Host-wide: only from the host's network namespace.")
	fs.IntVar(&o.Conntrack.Min, "conntrack-min", 0, "Least nf_conntrack_max (kube-proxy: 131072; see --conntrack-max-per-core).")
	fs.DurationVar(&o.Conntrack.TCPEstablished, "conntrack-tcp-timeout-established", 0,
		"Timeout of established TCP conntrack entries (kube-proxy: 24h; 0 leaves it).")
	fs.DurationVar(&o.Conntrack.TCPCloseWait, "conntrack-tcp-timeout-close-wait", 0,
		"Timeout of TCP conntrack entries in CLOSE_WAIT (kube-proxy: 1h; 0 leaves it).")
	fs.BoolVar(&o.Conntrack.TCPBeLiberal, "conntrack-tcp-be-liberal", false,
		"Set nf_conntrack_tcp_be_liberal: accept out-of-window TCP packets rather than marking them invalid.")
	fs.DurationVar(&o.Conntrack.UDPTimeout, "conntrack-udp-timeout", 0, "Timeout of one-way UDP conntrack entries (0: leave it).")
	fs.DurationVar(&o.Conntrack.UDPStream, "conntrack-udp-timeout-stream", 0,
		"Timeout of two-way UDP conntrack entries (0: leave it).")
	fs.StringVar(&o.HealthzBindAddress, "healthz-bind-address", ":10256",
		"Address of the proxy's /healthz endpoint ('0' disables it).")
	// Tools and kube-proxy's own e2e tests ask a node's proxy what it is on kube-proxy's
	// metrics port; the speaker's own metrics stay on --metrics-bind-address.
	fs.StringVar(&o.MetricsBindAddress, "proxy-metrics-bind-address", "127.0.0.1:10249",
		"Address where the proxy answers as kube-proxy's --metrics-bind-address does: /proxyMode (nftables), "+
			"/metrics (the speaker's), /healthz ('0' disables it).")
	// --config takes kube-proxy's own configuration file (KubeProxyConfiguration,
	// kubeproxy.config.k8s.io/v1alpha1) rather than a format of ours: a cluster replacing
	// kube-proxy already has one (kubeadm's kube-proxy ConfigMap), and can mount it as is. Its
	// fields that mean something here become the matching flags; flags given on the command
	// line win; the rest is named in a log line and ignored.
	fs.StringVar(&o.ConfigFile, "config", "",
		"kube-proxy's configuration file (KubeProxyConfiguration): the fields the proxy shares with kube-proxy "+
			"set the matching flags; flags on the command line win.")
}

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

// readConfigFile reads ConfigFile into the settings whose flags were not given on the
// command line.
func (o *Options) readConfigFile() error {
	if o.ConfigFile == "" {
		return nil
	}
	b, err := os.ReadFile(o.ConfigFile)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var c kubeProxyConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("--config %s: %w", o.ConfigFile, err)
	}
	if c.Kind != "KubeProxyConfiguration" || c.APIVersion != "kubeproxy.config.k8s.io/v1alpha1" {
		return fmt.Errorf("--config %s: apiVersion %q kind %q: want kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration",
			o.ConfigFile, c.APIVersion, c.Kind)
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
	if o.flags != nil {
		o.flags.Visit(func(f *flag.Flag) { given[f.Name] = true })
	}
	// The file's values are parsed as the flags parse them, by the flags bound to this copy
	// of the Options (AddFlags's are bound to the one it was called on): AddFlags resets the
	// fields to the defaults, so their values are put back.
	parsed := *o
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	o.AddFlags(fs)
	*o = parsed
	set := func(name, value string) error {
		if value == "" || given[name] {
			return nil
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("--config %s: %s %q: %w", o.ConfigFile, name, value, err)
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
