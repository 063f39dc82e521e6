package healthcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// freePort finds a free port on loopback.
func freePort(t *testing.T) uint16 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func get(port uint16) (int, response, string, error) {
	var r response
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return 0, r, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	err = json.Unmarshal(b, &r)
	return resp.StatusCode, r, resp.Header.Get("X-Load-Balancing-Endpoint-Weight"), err
}

// Loopback only: the tests must not listen on the host's addresses.
var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

func TestAnswersLikeKubeProxy(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	s := New(healthy.Load)
	defer s.Close()
	nn := types.NamespacedName{Namespace: "ns", Name: "web"}
	port := freePort(t)

	if err := s.Sync(map[types.NamespacedName]Service{nn: {Port: port, LocalEndpoints: 2}}, loopback); err != nil {
		t.Fatal(err)
	}
	code, r, weight, err := get(port)
	if err != nil || code != 200 || r.LocalEndpoints != 2 || r.Service.Name != "web" || r.Service.Namespace != "ns" || !r.ServiceProxyHealthy || weight != "2" {
		t.Errorf("with 2 local endpoints: %d %+v weight %q %v", code, r, weight, err)
	}
	// Endpoints, but rules that are not current: the node must not get traffic.
	healthy.Store(false)
	if code, r, _, err := get(port); err != nil || code != 503 || r.ServiceProxyHealthy || r.LocalEndpoints != 2 {
		t.Errorf("with the proxy unhealthy: %d %+v %v", code, r, err)
	}
	healthy.Store(true)

	if err := s.Sync(map[types.NamespacedName]Service{nn: {Port: port, LocalEndpoints: 0}}, loopback); err != nil {
		t.Fatal(err)
	}
	if code, r, _, err := get(port); err != nil || code != 503 || r.LocalEndpoints != 0 {
		t.Errorf("with no local endpoint: %d %+v %v", code, r, err)
	}

	if err := s.Sync(nil, loopback); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := get(port); err == nil {
		t.Error("listener still open after the Service went away")
	}
}

func TestBusyPortDoesNotBlockOthers(t *testing.T) {
	s := New(nil)
	defer s.Close()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bp, free := uint16(busy.Addr().(*net.TCPAddr).Port), freePort(t)
	err = s.Sync(map[types.NamespacedName]Service{
		{Namespace: "ns", Name: "a"}: {Port: bp, LocalEndpoints: 1},
		{Namespace: "ns", Name: "b"}: {Port: free, LocalEndpoints: 1},
	}, loopback)
	if err == nil {
		t.Error("busy port not reported")
	}
	if code, _, _, err := get(free); err != nil || code != 200 {
		t.Errorf("other Service's health check: %d %v", code, err)
	}
}
