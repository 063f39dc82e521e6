package proxy_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Requests to a dual-stack ClusterIP spread over every ready endpoint, over TCP and UDP and
// both families. From the LAN (outside the cluster CIDR) the source is masqueraded to the
// node; from a pod it is preserved.
func TestClusterIPSpreadsOverEndpoints(t *testing.T) {
	c := newCluster(t)
	a, b, cc := c.addPod("pod-a", 1), c.addPod("pod-b", 2), c.addPod("pod-c", 3)
	client := c.addPod("client-pod", 4)
	svc := c.createService("web")
	c.setEndpoints("web", ready(a), ready(b), ready(cc))
	v4, v6 := clusterIPs(svc)

	for _, addr := range []string{hostPort(v4, 80), hostPort(v6, 80)} {
		for _, proto := range []string{"tcp", "udp"} {
			answers := c.expectPods(c.client, proto, addr, 30, "pod-a", "pod-b", "pod-c")
			for _, ans := range answers {
				if ip := ans.SourceIP(); ip != podGW4 && ip != podGW6 {
					t.Errorf("%s %s from the LAN: pod saw source %s, want the node's (masqueraded)", proto, addr, ans.Source)
				}
			}
			answers = c.expectPods(client.ns, proto, addr, 30, "pod-a", "pod-b", "pod-c")
			for _, ans := range answers {
				if ip := ans.SourceIP(); ip != client.ip4 && ip != client.ip6 {
					t.Errorf("%s %s from a pod: pod saw source %s, want the pod's own", proto, addr, ans.Source)
				}
			}
		}
	}
}

// A Service without endpoints rejects at once, on every address it has, instead of letting
// clients time out.
func TestNoEndpointsRejects(t *testing.T) {
	c := newCluster(t)
	lb4, lb6 := c.lbIP(0)
	svc := c.createService("empty", loadBalancer(lb4, lb6))
	v4, v6 := clusterIPs(svc)
	np := svc.Spec.Ports[0].NodePort
	for _, addr := range []string{hostPort(v4, 80), hostPort(v6, 80), hostPort(lb4, 80), hostPort(lb6, 80),
		hostPort(nodeLAN4, np), hostPort(nodeLAN6, np)} {
		c.eventually("tcp "+addr+" refused", func() error {
			if _, err := ask(c.client, "tcp", addr, 0); !refused(err) {
				return fmt.Errorf("want connection refused, got %v", err)
			}
			return nil
		})
	}
	for _, addr := range []string{hostPort(v4, 80), hostPort(v6, 80)} {
		c.eventually("udp "+addr+" refused", func() error {
			if _, err := ask(c.client, "udp", addr, 0); !refused(err) {
				return fmt.Errorf("want ICMP unreachable (refused), got %v", err)
			}
			return nil
		})
	}
	// Once an endpoint appears, the same addresses answer.
	a := c.addPod("pod-a", 1)
	c.setEndpoints("empty", ready(a))
	c.expectPods(c.client, "tcp", hostPort(lb4, 80), 3, "pod-a")
	c.expectPods(c.client, "udp", hostPort(v6, 80), 3, "pod-a")
}

// LoadBalancer ingress IPs, externalIPs and NodePorts (on the node's addresses, both
// families) reach the endpoints; with externalTrafficPolicy Cluster the client is masqueraded.
func TestExternalAddressesClusterPolicy(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	lb4, lb6 := c.lbIP(0)
	ext4, ext6 := c.lbIP(1)
	svc := c.createService("web", loadBalancer(lb4, lb6), func(s *corev1.Service) {
		s.Spec.ExternalIPs = []string{ext4, ext6}
	})
	c.setEndpoints("web", ready(a), endpoint{pod: b, node: otherNode})
	np := svc.Spec.Ports[0].NodePort
	unp := svc.Spec.Ports[1].NodePort
	for _, tc := range []struct{ proto, addr string }{
		{"tcp", hostPort(lb4, 80)}, {"tcp", hostPort(lb6, 80)}, {"udp", hostPort(lb4, 80)},
		{"tcp", hostPort(ext4, 80)}, {"udp", hostPort(ext6, 80)},
		{"tcp", hostPort(nodeLAN4, np)}, {"tcp", hostPort(nodeLAN6, np)}, {"udp", hostPort(nodeLAN4, unp)},
	} {
		for _, ans := range c.expectPods(c.client, tc.proto, tc.addr, 20, "pod-a", "pod-b") {
			if ip := ans.SourceIP(); ip != podGW4 && ip != podGW6 {
				t.Errorf("%s %s: pod saw source %s, want the node's (masqueraded)", tc.proto, tc.addr, ans.Source)
			}
		}
	}
}

// externalTrafficPolicy Local: external traffic only reaches endpoints on this node, with
// the client's address preserved; the healthCheckNodePort says how many there are, and with
// none the node drops the traffic (the load balancer should not send it any).
func TestExternalTrafficPolicyLocal(t *testing.T) {
	c := newCluster(t)
	a, b, cc := c.addPod("pod-a", 1), c.addPod("pod-b", 2), c.addPod("pod-c", 3)
	lb4, lb6 := c.lbIP(0)
	svc := c.createService("web", loadBalancer(lb4, lb6), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	c.setEndpoints("web", ready(a), endpoint{pod: b, node: otherNode}, endpoint{pod: cc, node: otherNode})
	np, hc := svc.Spec.Ports[0].NodePort, svc.Spec.HealthCheckNodePort
	if hc == 0 {
		t.Fatal("apiserver allocated no healthCheckNodePort")
	}
	for _, tc := range []struct{ proto, addr, client string }{
		{"tcp", hostPort(lb4, 80), clientLAN4}, {"tcp", hostPort(lb6, 80), clientLAN6},
		{"udp", hostPort(lb4, 80), clientLAN4}, {"tcp", hostPort(nodeLAN4, np), clientLAN4},
	} {
		for _, ans := range c.expectPods(c.client, tc.proto, tc.addr, 20, "pod-a") {
			if ans.SourceIP() != tc.client {
				t.Errorf("%s %s: pod saw source %s, want the client's %s", tc.proto, tc.addr, ans.Source, tc.client)
			}
		}
	}
	// ClusterIP traffic is not external: every endpoint serves it.
	v4, _ := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 30, "pod-a", "pod-b", "pod-c")

	hcAddr := hostPort(nodeLAN4, hc)
	c.eventually("health check says 1 local endpoint", func() error {
		code, body, err := httpGet(c.client, hcAddr, "/")
		if err != nil {
			return err
		}
		if code != 200 || !strings.Contains(body, `"localEndpoints":1`) || !strings.Contains(body, `"name":"web"`) {
			return fmt.Errorf("got %d %s", code, body)
		}
		return nil
	})

	// The local endpoint leaves: 503, and external traffic is dropped, not sent elsewhere.
	c.setEndpoints("web", endpoint{pod: b, node: otherNode}, endpoint{pod: cc, node: otherNode})
	c.eventually("health check says 503", func() error {
		code, body, err := httpGet(c.client, hcAddr, "/")
		if err != nil {
			return err
		}
		if code != 503 || !strings.Contains(body, `"localEndpoints":0`) {
			return fmt.Errorf("got %d %s", code, body)
		}
		return nil
	})
	if ans, err := ask(c.client, "tcp", hostPort(lb4, 80), 0); err == nil {
		t.Errorf("external traffic without local endpoints reached %s", ans.Pod)
	}
}
