package serving_test

// The speaker's metrics port as a scraper meets it, against a real kube-apiserver that answers
// the speaker's TokenReviews and SubjectAccessReviews: no token 401, a token without the right
// 403, a granted token 200; its health port answers probes without a token.

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/fairlead-lb/fairlead/speaker/serving"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

func startEndpoints(t *testing.T, ep serving.Endpoints, cfg *rest.Config, ready func() bool) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "fairlead_test_total", Help: "A sample."})
	reg.MustRegister(c)
	servers, err := ep.Listen(ctx, reg, cfg, ready)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- servers.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	var addrs []string
	for _, a := range servers.Addrs() {
		addrs = append(addrs, a.String())
	}
	return addrs
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
	addrs := startEndpoints(t, serving.Endpoints{MetricsAddr: "127.0.0.1:0", ProbeAddr: "127.0.0.1:0",
		Metrics: serving.Options{Secure: true}}, env.Config, func() bool { return ready })
	metrics, health := addrs[0], addrs[1]

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
	addrs := startEndpoints(t, serving.Endpoints{MetricsAddr: "127.0.0.1:0", ProbeAddr: "0"}, nil, nil)
	if len(addrs) != 1 {
		t.Fatalf("%d servers, want the metrics one only (probes disabled by '0')", len(addrs))
	}
	code, body, err := scrape.GetPlain(ctx, nil, addrs[0], "/metrics")
	if err != nil || code != http.StatusOK || !strings.Contains(string(body), "fairlead_test_total 0") {
		t.Fatalf("plain GET /metrics: %d %v\n%s", code, err, body)
	}
}
