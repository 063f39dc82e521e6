package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/test/lab"
)

// ChurnNamespace holds the Services the soak creates, changes and deletes.
const ChurnNamespace = "soak"

// churn creates, changes and deletes LoadBalancer Services in ChurnNamespace, one operation
// every interval, between minLive and maxLive of them. Changes are those that must keep the
// addresses: ports, labels, externalTrafficPolicy.
type churn struct {
	cs               kubernetes.Interface
	rng              *rand.Rand
	minLive, maxLive int

	mu          sync.Mutex
	ops, failed int
	live        []string
	next        int
}

func newChurn(cs kubernetes.Interface, seed int64) *churn {
	return &churn{cs: cs, rng: rand.New(rand.NewPCG(uint64(seed), 0xc4a2)), minLive: 4, maxLive: 12}
}

func (c *churn) run(ctx context.Context, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		err := c.step(ctx)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		c.ops++
		if err != nil {
			c.failed++
		}
		c.mu.Unlock()
	}
}

func (c *churn) step(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	svcs := c.cs.CoreV1().Services(ChurnNamespace)
	c.mu.Lock()
	n := len(c.live)
	op := c.rng.IntN(10)
	c.mu.Unlock()
	switch {
	case n < c.minLive || (n < c.maxLive && op < 4):
		c.mu.Lock()
		c.next++
		name := fmt.Sprintf("churn-%d", c.next)
		pool := []string{"lab-l2", "lab-bgp"}[c.rng.IntN(2)]
		dual := c.rng.IntN(2) == 0
		c.mu.Unlock()
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ChurnNamespace, Name: name,
				Annotations: map[string]string{"fairlead.dev/pool": pool}, Labels: map[string]string{"soak": "churn"}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "none"},
				Ports: []corev1.ServicePort{{Name: "p", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}
		if dual {
			s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		}
		if _, err := svcs.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return err
		}
		c.mu.Lock()
		c.live = append(c.live, name)
		c.mu.Unlock()
		return nil
	case n > c.maxLive || op < 7:
		c.mu.Lock()
		name := c.live[c.rng.IntN(n)]
		c.mu.Unlock()
		if err := svcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		c.mu.Lock()
		c.live = slices.DeleteFunc(c.live, func(s string) bool { return s == name })
		c.mu.Unlock()
		return nil
	default:
		c.mu.Lock()
		name := c.live[c.rng.IntN(n)]
		port := int32(80 + c.rng.IntN(100))
		c.mu.Unlock()
		s, err := svcs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Ports[0].Port = port
		s.Labels["changed"] = fmt.Sprint(port)
		if s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		} else {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		_, err = svcs.Update(ctx, s, metav1.UpdateOptions{})
		return err
	}
}

func (c *churn) counts() (ops, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops, c.failed
}

// probeServices are the Services the probes connect to, in front of the lab demo's echo
// Pods: dual-stack, one per announcing pool.
func probeServices() []*corev1.Service {
	svc := func(name, pool string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: lab.DemoNamespace, Name: name,
				Annotations: map[string]string{"fairlead.dev/pool": pool}},
			Spec: corev1.ServiceSpec{
				Type:           corev1.ServiceTypeLoadBalancer,
				Selector:       map[string]string{"app": "echo"},
				Ports:          []corev1.ServicePort{{Name: "echo", Port: 80, TargetPort: intstr.FromString("echo")}},
				IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
				IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			},
		}
	}
	return []*corev1.Service{svc("soak-l2", "lab-l2"), svc("soak-bgp", "lab-bgp")}
}
