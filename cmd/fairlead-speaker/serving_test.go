package main

// The speaker's metrics port as a scraper meets it, against a real kube-apiserver that answers
// the speaker's TokenReviews and SubjectAccessReviews: no token 401, a token without the right
// 403, a granted token 200; its health port answers probes without a token.

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/fairlead-lb/fairlead/speaker/serving"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

func startEndpoints(t *testing.T, ep endpoints, env *controlplane.Env, ready func() bool) []server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "fairlead_test_total", Help: "A sample."})
	reg.MustRegister(c)
	servers, err := ep.listen(ctx, reg, env.Config, ready)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var g errgroup.Group
	for _, sv := range servers {
		g.Go(func() error { return serving.Serve(ctx, sv.l, sv.srv) })
	}
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Error(err)
		}
	})
	return servers
}

func TestMetricsNeedAGrantedToken(t *testing.T) {
	ctx := context.Background()
	env := controlplane.StartForTest(t, controlplane.Options{})
	cs := kubernetes.NewForConfigOrDie(env.Config)
	if err := scrape.Grant(ctx, cs, "metrics-reader", scrape.MetricsReader, "default", "prometheus"); err != nil {
		t.Fatal(err)
	}
	granted, err := scrape.Token(ctx, cs, "default", "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	denied, err := scrape.Token(ctx, cs, "default", "nosy")
	if err != nil {
		t.Fatal(err)
	}

	var ready bool
	servers := startEndpoints(t, endpoints{metricsAddr: "127.0.0.1:0", probeAddr: "127.0.0.1:0",
		metrics: serving.Options{Secure: true}}, env, func() bool { return ready })
	metrics, health := servers[0].l.Addr().String(), servers[1].l.Addr().String()

	body := scrape.CheckAuth(t, ctx, nil, metrics, granted, denied)
	if !strings.Contains(string(body), "fairlead_test_total 0") {
		t.Errorf("granted scrape lacks the registry's metric:\n%s", body)
	}
	if code, _, err := scrape.GetPlain(ctx, nil, metrics, "/metrics"); err == nil && code == http.StatusOK {
		t.Errorf("plain HTTP to the secure port answered 200")
	}

	for _, c := range []struct {
		path  string
		ready bool
		want  int
	}{{"/healthz", false, 200}, {"/readyz", false, 503}, {"/readyz", true, 200}} {
		ready = c.ready
		code, body, err := scrape.GetPlain(ctx, nil, health, c.path)
		if err != nil || code != c.want {
			t.Errorf("GET http://%s%s (ready %v): %d %q %v, want %d", health, c.path, c.ready, code, body, err, c.want)
		}
	}
}

// --metrics-secure=false: plain HTTP, no token asked, for those who scrape that way.
func TestMetricsPlainWhenNotSecure(t *testing.T) {
	ctx := context.Background()
	servers := startEndpoints(t, endpoints{metricsAddr: "127.0.0.1:0", probeAddr: "0"}, &controlplane.Env{}, nil)
	if len(servers) != 1 {
		t.Fatalf("%d servers, want the metrics one only (probes disabled by '0')", len(servers))
	}
	code, body, err := scrape.GetPlain(ctx, nil, servers[0].l.Addr().String(), "/metrics")
	if err != nil || code != http.StatusOK || !strings.Contains(string(body), "fairlead_test_total 0") {
		t.Fatalf("plain GET /metrics: %d %v\n%s", code, err, body)
	}
}
