// Package healthcheck serves the healthCheckNodePort of externalTrafficPolicy Local Services
// the way kube-proxy does: an external load balancer probes every node and only sends traffic
// to nodes answering 200, that is, nodes with at least one local endpoint and a proxy whose
// rules are current.
package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// Service is the health check state of one Service.
type Service struct {
	Port           uint16
	LocalEndpoints int
}

// Server runs one HTTP listener per health check port and node address.
type Server struct {
	healthy func() bool
	mu      sync.Mutex
	// listeners are per Service; addrs are the addresses they are bound to.
	listeners map[types.NamespacedName]*listener
	addrs     []netip.Addr
	// listen is net.Listen; tests may bind elsewhere.
	listen func(network, addr string) (net.Listener, error)
}

type listener struct {
	port  uint16
	srvs  []*http.Server
	count int
}

func (l *listener) close() {
	for _, srv := range l.srvs {
		_ = srv.Close()
	}
}

// New returns a Server with no listeners. healthy says whether the proxy's rules are
// current: when they are not, every health check fails.
func New(healthy func() bool) *Server {
	return &Server{healthy: healthy, listeners: map[types.NamespacedName]*listener{}, listen: net.Listen}
}

// Sync opens, updates and closes listeners to match want, bound to addrs (every address when
// nil, none when empty). A port that cannot be opened is reported but does not stop the others.
func (s *Server) Sync(want map[types.NamespacedName]Service, addrs []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	moved := !slices.Equal(addrs, s.addrs)
	s.addrs = slices.Clone(addrs)
	for nn, l := range s.listeners {
		if w, ok := want[nn]; !ok || w.Port != l.port || moved {
			l.close()
			delete(s.listeners, nn)
		}
	}
	binds := []string{""}
	if addrs != nil {
		binds = binds[:0]
		for _, a := range addrs {
			binds = append(binds, a.String())
		}
	}
	for nn, w := range want {
		if l, ok := s.listeners[nn]; ok {
			l.count = w.LocalEndpoints
			continue
		}
		l := &listener{port: w.Port, count: w.LocalEndpoints}
		for _, b := range binds {
			ln, err := s.listen("tcp", net.JoinHostPort(b, fmt.Sprint(w.Port)))
			if err != nil {
				errs = append(errs, fmt.Errorf("health check port %d of %s on %q: %w", w.Port, nn, b, err))
				continue
			}
			srv := &http.Server{Handler: s.handler(nn, l), ReadHeaderTimeout: 10 * time.Second}
			l.srvs = append(l.srvs, srv)
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					klog.ErrorS(err, "health check server stopped", "service", nn, "port", w.Port)
				}
			}()
		}
		s.listeners[nn] = l
	}
	return errors.Join(errs...)
}

// Close stops every listener.
func (s *Server) Close() {
	_ = s.Sync(nil, nil)
}

type response struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (s *Server) handler(nn types.NamespacedName, l *listener) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		count := l.count
		s.mu.Unlock()
		healthy := s.healthy == nil || s.healthy()
		var r response
		r.Service.Namespace, r.Service.Name = nn.Namespace, nn.Name
		r.LocalEndpoints, r.ServiceProxyHealthy = count, healthy
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Lets a load balancer weigh nodes by how many endpoints they hold.
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", fmt.Sprint(count))
		if count == 0 || !healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		_ = json.NewEncoder(w).Encode(r)
	})
}
