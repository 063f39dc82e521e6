package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
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

	"github.com/fairlead-lb/fairlead/speaker/proxy"
	"github.com/fairlead-lb/fairlead/speaker/proxy/conntrack"
	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
)

var (
	proxyNodePortAddresses = flag.String("nodeport-addresses", "primary",
		"'primary' (NodePorts answer on the node's primary IPs, from its Node object, as kube-proxy's nftables "+
			"mode), or comma-separated CIDRs: NodePorts answer only on node addresses inside them "+
			"('0.0.0.0/0,::/0': every address).")
	proxyClusterCIDRs = flag.String("cluster-cidr", "",
		"Comma-separated pod CIDRs. Traffic from elsewhere to ClusterIPs is masqueraded, and pods reaching an "+
			"externalTrafficPolicy Local Service's external address may use any endpoint.")
	proxyServiceCIDRs = flag.String("service-cidr", "",
		"Comma-separated ClusterIP ranges, besides those of the cluster's ServiceCIDR objects (which clusters "+
			"before Kubernetes 1.33 do not have): traffic to a free address in them is dropped.")
	proxyMinSyncInterval = flag.Duration("proxy-min-sync-interval", time.Second,
		"Least time between two nftables syncs; changes arriving meanwhile are batched.")
	proxySyncPeriod = flag.Duration("proxy-sync-period", 30*time.Minute,
		"How often the proxy rewrites all of its rules (repairing any drift).")
	proxyHealthTimeout = flag.Duration("proxy-health-timeout", time.Minute,
		"The proxy reports itself unhealthy (/healthz and every healthCheckNodePort) while a change has waited "+
			"this long for a successful sync.")
	proxyMasqueradeAll = flag.Bool("masquerade-all", false,
		"Masquerade all traffic to ClusterIPs, not only traffic from outside the pods' networks.")
	proxyDetectLocal = flag.String("detect-local-mode", "",
		"How to tell pods' traffic from the rest: ClusterCIDR (--cluster-cidr; the default when it is set), "+
			"NodeCIDR (the Node's spec.podCIDRs), BridgeInterface (--pod-bridge-interface) or InterfaceNamePrefix "+
			"(--pod-interface-name-prefix).")
	proxyPodBridge   = flag.String("pod-bridge-interface", "", "With --detect-local-mode BridgeInterface: the pods' bridge.")
	proxyPodIfPrefix = flag.String("pod-interface-name-prefix", "",
		"With --detect-local-mode InterfaceNamePrefix: the prefix of the pods' interfaces on the node.")
	// Unlike kube-proxy's, the conntrack defaults leave the kernel's values: writing /proc/sys
	// needs a privileged container, which the chart's speaker is not.
	ctMaxPerCore = flag.Int("conntrack-max-per-core", 0,
		"Raise nf_conntrack_max to this per CPU, or to --conntrack-min if more (kube-proxy: 32768; 0 with "+
			"--conntrack-min 0 leaves it). Host-wide: only from the host's network namespace.")
	ctMin         = flag.Int("conntrack-min", 0, "Least nf_conntrack_max (kube-proxy: 131072; see --conntrack-max-per-core).")
	ctEstablished = flag.Duration("conntrack-tcp-timeout-established", 0,
		"Timeout of established TCP conntrack entries (kube-proxy: 24h; 0 leaves it).")
	ctCloseWait = flag.Duration("conntrack-tcp-timeout-close-wait", 0,
		"Timeout of TCP conntrack entries in CLOSE_WAIT (kube-proxy: 1h; 0 leaves it).")
	ctBeLiberal = flag.Bool("conntrack-tcp-be-liberal", false,
		"Set nf_conntrack_tcp_be_liberal: accept out-of-window TCP packets rather than marking them invalid.")
	ctUDP       = flag.Duration("conntrack-udp-timeout", 0, "Timeout of one-way UDP conntrack entries (0: leave it).")
	ctUDPStream = flag.Duration("conntrack-udp-timeout-stream", 0,
		"Timeout of two-way UDP conntrack entries (0: leave it).")
	proxyHealthzAddr = flag.String("healthz-bind-address", ":10256",
		"Address of the proxy's /healthz endpoint ('0' disables it).")
	// Tools and kube-proxy's own e2e tests ask a node's proxy what it is on kube-proxy's
	// metrics port; the speaker's own metrics stay on --metrics-bind-address.
	proxyStatusAddr = flag.String("proxy-metrics-bind-address", "127.0.0.1:10249",
		"Address where the proxy answers as kube-proxy's --metrics-bind-address does: /proxyMode (nftables), "+
			"/metrics (the speaker's), /healthz ('0' disables it).")
)

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

// setupProxy wires speaker/proxy to the speaker's informers and metrics.
func setupProxy(s *speaker) (_ func(context.Context) error, err error) {
	if err := applyProxyConfig(); err != nil {
		return nil, err
	}
	var npc []netip.Prefix
	primary := strings.TrimSpace(*proxyNodePortAddresses) == "primary"
	if !primary {
		if npc, err = parseCIDRs("nodeport-addresses", *proxyNodePortAddresses); err != nil {
			return nil, err
		}
		if len(npc) == 0 {
			return nil, fmt.Errorf("--nodeport-addresses %q: want 'primary' or CIDRs", *proxyNodePortAddresses)
		}
	}
	cc, err := parseCIDRs("cluster-cidr", *proxyClusterCIDRs)
	if err != nil {
		return nil, err
	}
	sc, err := parseCIDRs("service-cidr", *proxyServiceCIDRs)
	if err != nil {
		return nil, err
	}
	if *proxyMinSyncInterval < 0 || *proxySyncPeriod <= 0 {
		return nil, errors.New("--proxy-min-sync-interval must be >= 0 and --proxy-sync-period > 0")
	}
	local, err := localDetection(cc)
	if err != nil {
		return nil, err
	}
	if local.fromNode || local.iface != "" {
		cc = nil // the pods' networks are told apart otherwise
	}
	if err := applyConntrack(); err != nil {
		return nil, err
	}
	nft, err := knftables.New(knftables.InetFamily, proxy.TableName)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	p, err := proxy.New(s.client, s.informer, s.metrics, nft, proxy.Options{
		NodeName:         s.node,
		NodePortsPrimary: primary,
		Rules: rules.Config{NodePortCIDRs: npc, ClusterCIDRs: cc, ServiceCIDRs: sc,
			MasqueradeAll: *proxyMasqueradeAll, LocalInterface: local.iface},
		PodCIDRsFromNode: local.fromNode,
		MinSyncInterval:  *proxyMinSyncInterval,
		SyncPeriod:       *proxySyncPeriod,
		HealthTimeout:    *proxyHealthTimeout,
	})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return p.Run(ctx) })
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
		serve("healthz", *proxyHealthzAddr, healthzHandler(p))
		serve("proxy metrics", *proxyStatusAddr, statusHandler(s.metrics))
		return g.Wait()
	}, nil
}

// healthzHandler answers like kube-proxy's: /livez 200 once the rules are programmed and
// kept current, 503 before the first sync or while a change waits too long for a successful
// one; /healthz the same, and also 503 while the Node is being deleted or carries the
// cluster autoscaler's to-be-deleted taint (KEP-3836), so that load balancers probing it
// drain the node before it goes.
func healthzHandler(p *proxy.Proxier) http.Handler {
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
func localDetection(clusterCIDRs []netip.Prefix) (localMode, error) {
	name := regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,15}$`)
	switch *proxyDetectLocal {
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
		if !name.MatchString(*proxyPodBridge) {
			return localMode{}, fmt.Errorf("--detect-local-mode BridgeInterface: --pod-bridge-interface %q is not an interface name", *proxyPodBridge)
		}
		return localMode{iface: *proxyPodBridge}, nil
	case "InterfaceNamePrefix":
		if !name.MatchString(*proxyPodIfPrefix) {
			return localMode{}, fmt.Errorf("--detect-local-mode InterfaceNamePrefix: --pod-interface-name-prefix %q is not an interface name prefix", *proxyPodIfPrefix)
		}
		return localMode{iface: *proxyPodIfPrefix + "*"}, nil
	}
	return localMode{}, fmt.Errorf("--detect-local-mode %q: want ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix", *proxyDetectLocal)
}

// applyConntrack sets the conntrack sysctls as kube-proxy does at start.
func applyConntrack() error {
	if *ctMaxPerCore < 0 || *ctMin < 0 {
		return fmt.Errorf("--conntrack-max-per-core %d and --conntrack-min %d must be >= 0", *ctMaxPerCore, *ctMin)
	}
	set := conntrack.Settings{
		Max:            max(*ctMaxPerCore*runtime.NumCPU(), *ctMin),
		TCPEstablished: *ctEstablished, TCPCloseWait: *ctCloseWait, TCPBeLiberal: *ctBeLiberal,
		UDPTimeout: *ctUDP, UDPStreamTimeout: *ctUDPStream,
	}
	if *ctMaxPerCore == 0 && *ctMin == 0 {
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

// cleanupProxy removes the proxy's nftables table (--cleanup), like kube-proxy --cleanup.
func cleanupProxy() error {
	nft, err := knftables.New(knftables.InetFamily, proxy.TableName)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tx := nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := nft.Run(context.Background(), tx); err != nil && !knftables.IsNotFound(err) {
		return fmt.Errorf("deleting table inet %s: %w", proxy.TableName, err)
	}
	return nil
}
