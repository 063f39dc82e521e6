package main

import (
	"context"
	"flag"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"github.com/fairlead-lb/fairlead/speaker/bgp"
)

var bgpSecretNamespace = flag.String("bgp-secret-namespace", envOr("POD_NAMESPACE", "fairlead-system"),
	"Namespace of the Secrets that BGPPeers' passwordSecret name (default $POD_NAMESPACE, else fairlead-system).")

var bgpExtraSecretNamespaces = flag.String("bgp-extra-secret-namespaces", "",
	"Comma-separated further namespaces a passwordSecret may name (the chart grants read access there: speaker.bgpSecretNamespaces).")

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// setupBGP wires speaker/bgp: sessions from BGPPeers, paths from BGPAdvertisements.
func setupBGP(s *speaker) (func(context.Context) error, error) {
	ml, err := s.memberList()
	if err != nil {
		return nil, err
	}
	src, err := s.snapshots()
	if err != nil {
		return nil, err
	}
	w, err := s.announcements()
	if err != nil {
		return nil, err
	}
	c, err := bgp.New(bgp.Options{
		Node:                  s.node,
		Client:                s.client,
		Dynamic:               s.dynamic,
		Snapshots:             src,
		Announcements:         w,
		SecretNamespace:       *bgpSecretNamespace,
		ExtraSecretNamespaces: splitList(*bgpExtraSecretNamespaces),
		Members: func(ctx context.Context) (bgp.Members, error) {
			m, err := ml.Get(ctx)
			return m, err
		},
		Metrics: s.metrics,
		Log:     klog.Background().WithName("bgp"),
	})
	if err != nil {
		return nil, err
	}
	return c.Run, nil
}
