package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/knftables"

	"github.com/fairlead-lb/fairlead/speaker/proxy/conntrack"
	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
)

// Proxy is the proxy as fairlead-speaker runs it: the Proxier on the kernel's nftables, and
// kube-proxy's HTTP endpoints.
type Proxy struct {
	o Options
	p *Proxier
}

// New reads the configuration file, checks the options, sets the conntrack sysctls as
// kube-proxy does at start, and wires the Proxier to the speaker's informers (which the caller
// starts) and metrics.
func New(o Options) (_ *Proxy, err error) {
	if err := o.readConfigFile(); err != nil {
		return nil, err
	}
	var npc []netip.Prefix
	primary := strings.TrimSpace(o.NodePortAddresses) == "primary"
	if !primary {
		if npc, err = parseCIDRs("nodeport-addresses", o.NodePortAddresses); err != nil {
			return nil, err
		}
		if len(npc) == 0 {
			return nil, fmt.Errorf("--nodeport-addresses %q: want 'primary' or CIDRs", o.NodePortAddresses)
		}
	}
	cc, err := parseCIDRs("cluster-cidr", o.ClusterCIDR)
	if err != nil {
		return nil, err
	}
	sc, err := parseCIDRs("service-cidr", o.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	if o.MinSyncInterval < 0 || o.SyncPeriod <= 0 {
		return nil, errors.New("--proxy-min-sync-interval must be >= 0 and --proxy-sync-period > 0")
	}
	local, err := o.localDetection(cc)
	if err != nil {
		return nil, err
	}
	if local.fromNode || local.iface != "" {
		cc = nil // the pods' networks are told apart otherwise
	}
	if err := o.Conntrack.apply(); err != nil {
		return nil, err
	}
	nft, err := knftables.New(knftables.InetFamily, TableName)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	p, err := NewProxier(o.Client, o.Informers, o.Metrics, nft, ProxierOptions{
		NodeName:         o.Node,
		NodePortsPrimary: primary,
		Rules: rules.Config{NodePortCIDRs: npc, ClusterCIDRs: cc, ServiceCIDRs: sc,
			MasqueradeAll: o.MasqueradeAll, LocalInterface: local.iface},
		PodCIDRsFromNode: local.fromNode,
		MinSyncInterval:  o.MinSyncInterval,
		SyncPeriod:       o.SyncPeriod,
		HealthTimeout:    o.HealthTimeout,
	})
	if err != nil {
		return nil, err
	}
	return &Proxy{o: o, p: p}, nil
}

// Run syncs the rules and serves kube-proxy's endpoints until ctx ends.
func (x *Proxy) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return x.p.Run(ctx) })
	serve := func(what, addr string, h http.Handler) {
		if addr == "0" {
			return
		}
		srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			go func() { <-ctx.Done(); _ = srv.Close() }()
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		})
	}
	serve("healthz", x.o.HealthzBindAddress, healthzHandler(x.p))
	serve("proxy metrics", x.o.MetricsBindAddress, statusHandler(x.o.Metrics))
	return g.Wait()
}

func parseCIDRs(flagName, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("--%s: %q is not a CIDR", flagName, f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// healthzHandler answers like kube-proxy's: /livez 200 once the rules are programmed and
// kept current, 503 before the first sync or while a change waits too long for a successful
// one; /healthz the same, and also 503 while the Node is being deleted or carries the
// cluster autoscaler's to-be-deleted taint (KEP-3836), so that load balancers probing it
// drain the node before it goes.
func healthzHandler(p *Proxier) http.Handler {
	h := func(checkNode bool) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			ok, at := p.Healthy()
			eligible := p.NodeEligible()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			code := http.StatusOK
			if !ok || (checkNode && !eligible) {
				code = http.StatusServiceUnavailable
			}
			p.CountHealthCheck(!checkNode, code)
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"lastUpdated": at.UTC().Format(time.RFC3339Nano), "currentTime": time.Now().UTC().Format(time.RFC3339Nano),
				"nodeEligible": eligible,
			})
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", h(true))
	mux.HandleFunc("/livez", h(false))
	return mux
}

// statusHandler answers as kube-proxy's metrics server: /proxyMode names the backend, which
// is nftables; /healthz says the server is up.
func statusHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/proxyMode", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = fmt.Fprint(w, "nftables")
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "ok") })
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

type localMode struct {
	iface    string // an nft interface name pattern: "cbr0" or "veth*"
	fromNode bool
}

// localDetection checks --detect-local-mode and its companion flags.
func (o *Options) localDetection(clusterCIDRs []netip.Prefix) (localMode, error) {
	name := regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,15}$`)
	switch o.DetectLocalMode {
	case "":
		return localMode{}, nil
	case "ClusterCIDR":
		if len(clusterCIDRs) == 0 {
			return localMode{}, errors.New("--detect-local-mode ClusterCIDR needs --cluster-cidr")
		}
		return localMode{}, nil
	case "NodeCIDR":
		return localMode{fromNode: true}, nil
	case "BridgeInterface":
		if !name.MatchString(o.PodBridgeInterface) {
			return localMode{}, fmt.Errorf("--detect-local-mode BridgeInterface: --pod-bridge-interface %q is not an interface name", o.PodBridgeInterface)
		}
		return localMode{iface: o.PodBridgeInterface}, nil
	case "InterfaceNamePrefix":
		if !name.MatchString(o.PodInterfaceNamePrefix) {
			return localMode{}, fmt.Errorf("--detect-local-mode InterfaceNamePrefix: --pod-interface-name-prefix %q is not an interface name prefix", o.PodInterfaceNamePrefix)
		}
		return localMode{iface: o.PodInterfaceNamePrefix + "*"}, nil
	}
	return localMode{}, fmt.Errorf("--detect-local-mode %q: want ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix", o.DetectLocalMode)
}

// apply sets the conntrack sysctls as kube-proxy does at start.
func (c ConntrackOptions) apply() error {
	if c.MaxPerCore < 0 || c.Min < 0 {
		return fmt.Errorf("--conntrack-max-per-core %d and --conntrack-min %d must be >= 0", c.MaxPerCore, c.Min)
	}
	set := conntrack.Settings{
		Max:            max(c.MaxPerCore*runtime.NumCPU(), c.Min),
		TCPEstablished: c.TCPEstablished, TCPCloseWait: c.TCPCloseWait, TCPBeLiberal: c.TCPBeLiberal,
		UDPTimeout: c.UDPTimeout, UDPStreamTimeout: c.UDPStream,
	}
	if c.MaxPerCore == 0 && c.Min == 0 {
		set.Max = 0
	}
	// The sysctls exist once the module is loaded; on a node that never tracked a
	// connection it is not yet (our rules would load it, but only later).
	if _, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_max"); err != nil {
		_ = exec.Command("modprobe", "nf_conntrack").Run()
	}
	if err := conntrack.Apply(set); err != nil {
		return fmt.Errorf("conntrack: %w", err)
	}
	return nil
}

// Cleanup removes the proxy's nftables table (fairlead-speaker --cleanup), like kube-proxy
// --cleanup.
func Cleanup(ctx context.Context) error {
	nft, err := knftables.New(knftables.InetFamily, TableName)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tx := nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := nft.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
		return fmt.Errorf("deleting table inet %s: %w", TableName, err)
	}
	return nil
}
