package lab

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/scheme"
	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// SpeakerComponents are fairlead-speaker's components and whether the lab runs them on every
// node.
var SpeakerComponents = map[string]bool{
	"l2":    true,
	"bgp":   true,
	"proxy": true,
}

// SpeakerNamespace is where the speaker would run on a cluster (the chart's default): the lab
// creates it so that BGPPeers' password Secrets have the same home as on a real install.
const SpeakerNamespace = "fairlead-system"

// podCIDRs covers every node's pod CIDRs.
const podCIDRs = "10.244.0.0/16,fd00:10:244::/48"

// startSpeakers runs fairlead-speaker in every node namespace, with the components in
// SpeakerComponents.
func (l *Lab) startSpeakers(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SpeakerNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", SpeakerNamespace, err)
	}
	names := slices.Sorted(maps.Keys(SpeakerComponents))
	var on []string
	for _, name := range names {
		if SpeakerComponents[name] {
			on = append(on, name)
		}
	}
	for _, n := range l.Nodes() {
		if err := l.StartSpeaker(n); err != nil {
			return err
		}
	}
	l.say("• fairlead-speaker on every node: %s", strings.Join(on, ", "))
	return nil
}

// StartSpeaker starts fairlead-speaker on node n, with the components in SpeakerComponents.
func (l *Lab) StartSpeaker(n Node) error {
	args := []string{"--node-name", n.Name, "--kubeconfig", filepath.Join(l.State, "pki", "node.kubeconfig"),
		"--bgp-secret-namespace", SpeakerNamespace, "--cluster-cidr", podCIDRs, "--nodeport-addresses", LANv4 + "," + LANv6}
	for _, name := range slices.Sorted(maps.Keys(SpeakerComponents)) {
		args = append(args, fmt.Sprintf("--%s=%v", name, SpeakerComponents[name]))
	}
	return l.daemon(n.NS, "speaker-"+n.Name, filepath.Join(l.Bin, "fairlead-speaker"), args...)
}

// createAnnouncements makes the objects that say how the lab's pools are announced: lab-l2 on
// the LAN, lab-bgp to the router.
func createAnnouncements(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	hold := metav1.Duration{Duration: routerHoldTime}
	keepalive := metav1.Duration{Duration: routerHoldTime / 3}
	for _, o := range []client.Object{
		&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lab-l2"},
			Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{"lab-l2"}, Interfaces: []string{"eth0"}}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"},
			Spec: v1alpha1.BGPPeerSpec{PeerAddress: RouterV4, PeerASN: ASNEdge, LocalASN: ASNLab,
				HoldTime: &hold, KeepaliveTime: &keepalive}},
		&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "lab-bgp"},
			Spec: v1alpha1.BGPAdvertisementSpec{IPPools: []string{"lab-bgp"}}},
	} {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// waitRouted waits until the router's kernel routes the BGP demo Service's address to every
// node, and says what it has then.
func (l *Lab) waitRouted(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) {
	s, err := cs.CoreV1().Services(DemoNamespace).Get(ctx, "echo-bgp", metav1.GetOptions{})
	if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
		return
	}
	addr, err := netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
	if err != nil {
		return
	}
	prefix := netip.PrefixFrom(addr, addr.BitLen())
	var hops []netip.Addr
	err = waitUntil(timeout, func() error {
		h, err := l.RouterNextHops(prefix)
		if err != nil {
			return err
		}
		hops = h
		if len(h) < Nodes {
			return fmt.Errorf("%d of %d nodes are next hops", len(h), Nodes)
		}
		return nil
	})
	if err != nil {
		logs := filepath.Join(l.State, "logs", "speaker-node*.log")
		if l.kubelets() {
			logs = "kubectl logs -n " + SpeakerNamespace + " -l app.kubernetes.io/component=speaker"
		}
		l.say("• %s: no route to %s via every node after %s: %v (logs: %s)", l.Router(), prefix, timeout, err, logs)
		return
	}
	var via []string
	for _, h := range hops {
		via = append(via, h.String())
	}
	l.say("• %s routes %s via %s", l.Router(), prefix, strings.Join(via, ", "))
}
