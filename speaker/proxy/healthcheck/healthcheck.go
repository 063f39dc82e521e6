// Package healthcheck serves the healthCheckNodePort of externalTrafficPolicy Local Services
// the way kube-proxy does: an external load balancer probes every node and only sends traffic
// to nodes answering 200, that is, nodes with at least one local endpoint.
package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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

// Server runs one HTTP listener per health check port.
type Server struct {
	mu        sync.Mutex
	listeners map[types.NamespacedName]*listener
	// listen is net.Listen; tests may bind elsewhere.
	listen func(network, addr string) (net.Listener, error)
}

type listener struct {
	port  uint16
	srv   *http.Server
	count int
}

// New returns a Server with no listeners.
func New() *Server {
	return &Server{listeners: map[types.NamespacedName]*listener{}, listen: net.Listen}
}

// Sync opens, updates and closes listeners to match want. A port that cannot be opened is
// reported but does not stop the others.
func (s *Server) Sync(want map[types.NamespacedName]Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for nn, l := range s.listeners {
		if w, ok := want[nn]; !ok || w.Port != l.port {
			_ = l.srv.Close()
			delete(s.listeners, nn)
		}
	}
	for nn, w := range want {
		if l, ok := s.listeners[nn]; ok {
			l.count = w.LocalEndpoints
			continue
		}
		ln, err := s.listen("tcp", fmt.Sprintf(":%d", w.Port))
		if err != nil {
			errs = append(errs, fmt.Errorf("health check port %d of %s: %w", w.Port, nn, err))
			continue
		}
		l := &listener{port: w.Port, count: w.LocalEndpoints}
		l.srv = &http.Server{Handler: s.handler(nn, l), ReadHeaderTimeout: 10 * time.Second}
		s.listeners[nn] = l
		go func() {
			if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "health check server stopped", "service", nn, "port", w.Port)
			}
		}()
	}
	return errors.Join(errs...)
}

// Close stops every listener.
func (s *Server) Close() {
	_ = s.Sync(nil)
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
		var r response
		r.Service.Namespace, r.Service.Name = nn.Namespace, nn.Name
		r.LocalEndpoints, r.ServiceProxyHealthy = count, true
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Lets a load balancer weigh nodes by how many endpoints they hold.
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", fmt.Sprint(count))
		if count == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		_ = json.NewEncoder(w).Encode(r)
	})
}
