package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// outage is how long the apiserver stays away in the fail-static tests.
const outage = 60 * time.Second

// Fail-static: with the apiserver unreachable for a minute the proxy keeps its rules and
// traffic to a ClusterIP, a NodePort and a LoadBalancer address keeps reaching the endpoints
// (checked throughout, from the LAN); the same process catches up with what changed meanwhile
// (an endpoint removed) once the apiserver is back, without a restart.
func TestAPIServerUnreachableFailStatic(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	lb4, _ := c.lbIP(0)
	svc := c.createService("web", loadBalancer(lb4))
	c.setEndpoints("web", ready(a), ready(b))
	v4, _ := clusterIPs(svc)
	addrs := []string{hostPort(v4, 80), hostPort(nodeLAN4, svc.Spec.Ports[0].NodePort), hostPort(lb4, 80)}
	for _, addr := range addrs {
		c.expectPods(c.client, "tcp", addr, 20, "pod-a", "pod-b")
	}
	pid := c.speaker.Cmd.Process.Pid

	c.relay.Cut()
	// A change the proxy cannot see until the apiserver is back.
	c.setEndpoints("web", ready(a))
	rounds := 0
	kit.Consistently(t, outage, "traffic reaching the endpoints without the apiserver", func(context.Context) error {
		for _, addr := range addrs {
			ans, err := ask(c.client, "tcp", addr, 0)
			if err != nil || (ans.Pod != "pod-a" && ans.Pod != "pod-b") {
				return fmt.Errorf("%s: %+v %v", addr, ans, err)
			}
		}
		if done, err := c.speaker.Exited(); done {
			return fmt.Errorf("the speaker exited: %v\n%s", err, c.speaker.Output())
		}
		rounds++
		return nil
	})
	// Both pods still answer: the rules are the ones from before the outage.
	c.expectPods(c.client, "tcp", addrs[0], 20, "pod-a", "pod-b")
	c.relay.Restore()
	c.eventually("the endpoint removed during the outage is gone from the rules", func() error {
		answers, err := spreadOnly(c, addrs[0], 20)
		if err != nil {
			return err
		}
		if answers["pod-b"] > 0 {
			return fmt.Errorf("pod-b still answers: %v", answers)
		}
		return nil
	})
	if c.speaker.Cmd.Process.Pid != pid {
		t.Fatal("the speaker was restarted")
	}
	t.Logf("%d rounds of requests over %v without the apiserver, all answered", rounds, outage)
}

func spreadOnly(c *cluster, addr string, n int) (map[string]int, error) {
	got, _, err := spread(c.client, "tcp", addr, n)
	return got, err
}
