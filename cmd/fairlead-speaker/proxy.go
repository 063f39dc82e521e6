package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/knftables"

	"github.com/fairlead-lb/fairlead/speaker/proxy"
	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
)

var (
	proxyNodePortAddresses = flag.String("nodeport-addresses", "",
		"Comma-separated CIDRs: NodePorts answer only on node addresses inside them (default: all node addresses).")
	proxyClusterCIDRs = flag.String("cluster-cidr", "",
		"Comma-separated pod CIDRs. Traffic from elsewhere to ClusterIPs is masqueraded, and pods reaching an "+
			"externalTrafficPolicy Local Service's external address may use any endpoint.")
	proxyMinSyncInterval = flag.Duration("proxy-min-sync-interval", time.Second,
		"Least time between two nftables syncs; changes arriving meanwhile are batched.")
	proxySyncPeriod = flag.Duration("proxy-sync-period", 30*time.Minute,
		"How often the proxy rewrites all of its rules (repairing any drift).")
	proxyHealthzAddr = flag.String("healthz-bind-address", ":10256",
		"Address of the proxy's /healthz endpoint ('0' disables it).")
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
func setupProxy(s *speaker) (func(context.Context) error, error) {
	npc, err := parseCIDRs("nodeport-addresses", *proxyNodePortAddresses)
	if err != nil {
		return nil, err
	}
	cc, err := parseCIDRs("cluster-cidr", *proxyClusterCIDRs)
	if err != nil {
		return nil, err
	}
	if *proxyMinSyncInterval < 0 || *proxySyncPeriod <= 0 {
		return nil, errors.New("--proxy-min-sync-interval must be >= 0 and --proxy-sync-period > 0")
	}
	nft, err := knftables.New(knftables.InetFamily, proxy.TableName)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	p, err := proxy.New(s.client, s.informer, s.metrics, nft, proxy.Options{
		NodeName:        s.node,
		Rules:           rules.Config{NodePortCIDRs: npc, ClusterCIDRs: cc},
		MinSyncInterval: *proxyMinSyncInterval,
		SyncPeriod:      *proxySyncPeriod,
	})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return p.Run(ctx) })
		if *proxyHealthzAddr != "0" {
			srv := &http.Server{Addr: *proxyHealthzAddr, Handler: healthzHandler(p), ReadHeaderTimeout: 10 * time.Second}
			g.Go(func() error {
				go func() { <-ctx.Done(); _ = srv.Close() }()
				if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
					return fmt.Errorf("healthz: %w", err)
				}
				return nil
			})
		}
		return g.Wait()
	}, nil
}

// healthzHandler answers like kube-proxy's: 200 once the rules are programmed and kept
// current, 503 before the first sync or when syncs keep failing.
func healthzHandler(p *proxy.Proxier) http.Handler {
	h := func(w http.ResponseWriter, _ *http.Request) {
		ok, at := p.Healthy()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]string{
			"lastUpdated": at.UTC().Format(time.RFC3339Nano), "currentTime": time.Now().UTC().Format(time.RFC3339Nano),
		})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", h)
	mux.HandleFunc("/livez", h)
	return mux
}
