package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

// The ccm serves its metrics as the chart's ServiceMonitor scrapes them: HTTPS on the secure
// port, a token the apiserver authenticates and authorizes for GET /metrics (the chart's
// metrics-reader role), nothing for anyone else; /healthz stays open for the kubelet's probe.
func TestMetricsNeedAGrantedToken(t *testing.T) {
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(env.Config)
	if err := scrape.Grant(ctx, cs, "ccm-metrics-reader", scrape.MetricsReader, "default", "ccm-prometheus"); err != nil {
		t.Fatal(err)
	}
	granted, err := scrape.Token(ctx, cs, "default", "ccm-prometheus")
	if err != nil {
		t.Fatal(err)
	}
	denied, err := scrape.Token(ctx, cs, "default", "ccm-nosy")
	if err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	// In a cluster the ccm finds the apiserver that authenticates for it in its Pod; here it
	// is told, as the chart's out-of-cluster users do.
	startCCM(t, "provider: pools\n", "--leader-elect=false", fmt.Sprintf("--secure-port=%d", port), "--bind-address=127.0.0.1",
		"--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	// Like kube-controller-manager, it lets anonymous requests reach the authorizer, which
	// refuses them: 403 where Fairlead's own components say 401.
	for _, c := range []struct {
		who, token string
		want       int
	}{{"no token", "", 403}, {"a token without the right", denied, 403}, {"the granted token", granted, 200}} {
		var body []byte
		kit.Eventually(t, 30*time.Second, fmt.Sprintf("GET /metrics with %s to answer %d", c.who, c.want), func(ctx context.Context) error {
			code, b, err := scrape.Get(ctx, nil, addr, "/metrics", c.token)
			if err != nil {
				return err
			}
			if code != c.want {
				return fmt.Errorf("GET /metrics with %s: %d, want %d", c.who, code, c.want)
			}
			body = b
			return nil
		})
		if c.want == 200 && !strings.Contains(string(body), "fairlead_fenced_writes_total") {
			t.Errorf("the granted scrape lacks the ccm's own metric:\n%.400s", body)
		}
	}
	if code, b, err := scrape.Get(ctx, nil, addr, "/healthz", ""); err != nil || code != 200 {
		t.Errorf("GET /healthz without a token: %d %q %v, want 200 (the kubelet's probe has none)", code, b, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
