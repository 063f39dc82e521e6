package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/lab"
)

// Killing the processes of the node that answers ARP for the layer 2 address (its speaker and
// its agent, SIGKILL, as in a crash) moves the address: another node answers ARP, the client's
// requests go through that node (the Pods see its address, masqueraded) and are answered.
func TestNodeCrashMovesL2Address(t *testing.T) {
	_, ip := demoService(t, "echo-l2")
	var owner lab.Node
	kit.Eventually(t, converge, "some node answers ARP for "+ip, func(context.Context) error {
		mac, err := arpOwner(ip)
		if err != nil {
			return err
		}
		n, ok := nodeByMAC(t, mac)
		if !ok {
			return fmt.Errorf("ARP answered by %q, no node's MAC", mac)
		}
		owner = n
		return nil
	})
	t.Logf("%s answers for %s; killing its speaker and agent", owner.Name, ip)
	if err := theLab.KillNode(owner); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restartNode(t, owner) })

	var next lab.Node
	kit.Eventually(t, converge, ip+" answered by another node", func(context.Context) error {
		mac, err := arpOwner(ip)
		if err != nil {
			return err
		}
		n, ok := nodeByMAC(t, mac)
		if !ok || n.Name == owner.Name {
			return fmt.Errorf("ARP answered by %q", mac)
		}
		next = n
		return nil
	})
	// The client learns the new owner from its gratuitous ARP; every request then enters the
	// cluster through it, which the Pods see as the masqueraded source.
	via := []netip.Addr{netip.MustParseAddr(next.V4), next.PodV4.Addr().Next()}
	kit.Eventually(t, converge, "requests to "+ip+" answered through "+next.Name, func(context.Context) error {
		for i := 0; i < 6; i++ {
			a, err := request(theLab.ClientL2(), addr80(ip))
			if err != nil {
				return err
			}
			if !slices.Contains(via, a.Client.Addr()) {
				return fmt.Errorf("%s saw the request from %s, not from %s", a.Pod, a.Client.Addr(), next.Name)
			}
		}
		return nil
	})
	kit.Eventually(t, converge, "the ServiceAnnouncement names "+next.Name, func(context.Context) error {
		nodes, err := announcedBy("echo-l2", ip)
		if err == nil && !slices.Equal(nodes, []string{next.Name}) {
			err = fmt.Errorf("announced by %v", nodes)
		}
		return err
	})
}

// restartNode starts a killed node's agent and speaker again and waits until the node is a
// full member of the lab again (Ready, and a BGP next hop for the demo), so that the tests
// after this one find three nodes.
func restartNode(t *testing.T, n lab.Node) {
	if err := theLab.StartAgent(n); err != nil {
		t.Fatal(err)
	}
	if err := theLab.StartSpeaker(n); err != nil {
		t.Fatal(err)
	}
	_, bgpIP := demoService(t, "echo-bgp")
	kit.Eventually(t, 2*time.Minute, n.Name+" back", func(context.Context) error {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				return fmt.Errorf("node not Ready: %s", c.Message)
			}
		}
		hops, err := routerHops(bgpIP)
		if err == nil && !slices.Equal(hops, allNodeNames()) {
			err = fmt.Errorf("BGP next hops %v", hops)
		}
		if err != nil {
			return err
		}
		ready, err := readyEndpoints("echo-l2")
		if err == nil && ready != 3 {
			err = fmt.Errorf("%d ready endpoints", ready)
		}
		return err
	})
}
