// Package serving serves the speaker's metrics the way controller-runtime serves the
// controller's: over HTTPS, each request's bearer token checked by the apiserver (TokenReview)
// and its right to GET the path too (SubjectAccessReview). The speaker runs on the host network,
// so its metrics port is reachable from anything that reaches the node; the check keeps what it
// reveals (addresses, peers, nodes) to whom the cluster admin granted it.
package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
)

// The speaker reviews every scraper's token and its right to the path.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Options say how the metrics endpoint is served; the flags of the same names set them.
type Options struct {
	// Secure serves HTTPS and lets through only requests whose token the apiserver
	// authenticates and authorizes for GET on the path. Off, it serves plain HTTP to anyone.
	Secure bool
	// CertDir holds CertName and KeyName (a Secret mounted there, say); when they are absent
	// a self-signed certificate is made at start, as controller-runtime does.
	CertDir, CertName, KeyName string
}

// Listen opens addr and returns the server for h on it: behind the authentication and
// authorization filter and TLS when o.Secure. cfg is how the speaker reaches the apiserver.
func Listen(ctx context.Context, addr string, h http.Handler, o Options, cfg *rest.Config, log logr.Logger) (net.Listener, *http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if !o.Secure {
		return l, srv, nil
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err == nil {
		var f func(logr.Logger, http.Handler) (http.Handler, error)
		if f, err = filters.WithAuthenticationAndAuthorization(cfg, hc); err == nil {
			srv.Handler, err = f(log, h)
		}
	}
	var tc *tls.Config
	if err == nil {
		tc, err = tlsConfig(ctx, o, log)
	}
	if err != nil {
		_ = l.Close()
		return nil, nil, fmt.Errorf("metrics on %s: %w", addr, err)
	}
	return tls.NewListener(l, tc), srv, nil
}

func tlsConfig(ctx context.Context, o Options, log logr.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CertDir != "" {
		certPath, keyPath := filepath.Join(o.CertDir, or(o.CertName, "tls.crt")), filepath.Join(o.CertDir, or(o.KeyName, "tls.key"))
		_, cerr := os.Stat(certPath)
		_, kerr := os.Stat(keyPath)
		if cerr == nil && kerr == nil {
			// Watched, so that a renewed Secret is served without a restart.
			w, err := certwatcher.New(certPath, keyPath)
			if err != nil {
				return nil, err
			}
			go func() {
				if err := w.Start(ctx); err != nil {
					log.Error(err, "metrics certificate watcher stopped")
				}
			}()
			cfg.GetCertificate = w.GetCertificate
			return cfg, nil
		}
		if !errors.Is(cerr, os.ErrNotExist) || !errors.Is(kerr, os.ErrNotExist) {
			return nil, fmt.Errorf("certificate %s and key %s: %v, %v", certPath, keyPath, cerr, kerr)
		}
		log.Info("no metrics certificate in the directory, serving a self-signed one", "dir", o.CertDir)
	}
	// Self-signed: what matters is that the token travels encrypted (kube-controller-manager
	// does the same); scrapers skip verification or pin this certificate.
	cert, key, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{{127, 0, 0, 1}}, nil)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Serve runs srv on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, srv *http.Server) error {
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Health is the speaker's probe endpoint: /healthz answers while the process serves, /readyz
// once ready says so (the informers have synced). Probes carry no token, so it is a port of its
// own, bound to loopback by default: kubelet probes a host-network Pod there.
func Health(ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}

// Endpoints are the speaker's HTTP ports: metrics (served as Metrics says) and health probes.
// AddFlags's flags set them.
type Endpoints struct {
	// MetricsAddr and ProbeAddr are where the ports listen; "0" disables one.
	MetricsAddr, ProbeAddr string
	Metrics                Options
}

// AddFlags registers the speaker's --metrics-* and --health-probe-bind-address flags.
func (e *Endpoints) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.MetricsAddr, "metrics-bind-address", ":7474", "Address of the Prometheus metrics endpoint ('0' disables it).")
	fs.BoolVar(&e.Metrics.Secure, "metrics-secure", true, "Serve metrics over HTTPS to clients whose bearer token the apiserver authenticates and authorizes for GET /metrics (false: plain HTTP to anyone).")
	fs.StringVar(&e.Metrics.CertDir, "metrics-cert-dir", "", "Directory of the metrics server's certificate and key (default: a self-signed certificate made at start).")
	fs.StringVar(&e.Metrics.CertName, "metrics-cert-name", "tls.crt", "Certificate file in --metrics-cert-dir.")
	fs.StringVar(&e.Metrics.KeyName, "metrics-key-name", "tls.key", "Key file in --metrics-cert-dir.")
	fs.StringVar(&e.ProbeAddr, "health-probe-bind-address", "127.0.0.1:7475", "Address of the /healthz and /readyz endpoints ('0' disables them).")
}

// Servers are the endpoints' open ports.
type Servers struct {
	list []server
}

type server struct {
	l   net.Listener
	srv *http.Server
}

// Listen opens the ports that are not disabled: metrics from reg, and the probes, which say
// ready once ready does. cfg is how the speaker reaches the apiserver.
func (e Endpoints) Listen(ctx context.Context, reg prometheus.Gatherer, cfg *rest.Config, ready func() bool) (*Servers, error) {
	s := &Servers{}
	if e.MetricsAddr != "0" {
		l, srv, err := Listen(ctx, e.MetricsAddr, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), e.Metrics, cfg, klog.Background().WithName("metrics"))
		if err != nil {
			return nil, err
		}
		klog.InfoS("serving metrics", "address", l.Addr().String(), "secure", e.Metrics.Secure)
		s.list = append(s.list, server{l, srv})
	}
	if e.ProbeAddr != "0" {
		l, err := net.Listen("tcp", e.ProbeAddr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("health probes: %w", err)
		}
		klog.InfoS("serving health probes", "address", l.Addr().String())
		s.list = append(s.list, server{l, &http.Server{Handler: Health(ready), ReadHeaderTimeout: 10 * time.Second}})
	}
	return s, nil
}

// Addrs are the open ports' addresses: metrics first.
func (s *Servers) Addrs() []net.Addr {
	var out []net.Addr
	for _, sv := range s.list {
		out = append(out, sv.l.Addr())
	}
	return out
}

// Serve serves every open port until ctx ends, or until one fails, which closes the others.
func (s *Servers) Serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, sv := range s.list {
		g.Go(func() error { return Serve(ctx, sv.l, sv.srv) })
	}
	return g.Wait()
}

// Close closes the ports, for a start that fails before Serve.
func (s *Servers) Close() {
	for _, sv := range s.list {
		_ = sv.l.Close()
	}
}
