package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// A fairlead-ccm leader paused past its Lease resumes with a stale view of the pools; the
// upstream service controller would write the Service status it computes from it. The fence
// refuses those writes, so no address is ever held by two Services.
func TestPausedLeaderWritesNothingAfterItsLease(t *testing.T) {
	const ns = "ccm-paused"
	namespace(t, ns)
	create(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.64/26"}, AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{ns}}}})
	createNode(t, "paused-node", "", netip.MustParseAddr("10.0.0.2"))
	dups := watchDuplicates(t, ns)

	election := []string{"--leader-elect=true", "--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
		"--leader-elect-retry-period=250ms", "--leader-elect-resource-namespace=default"}
	leads := func(p *process) func(context.Context) error {
		return func(context.Context) error {
			if strings.Contains(strings.ToLower(p.logs()), "successfully acquired lease") {
				return nil
			}
			return errors.New("no lease yet")
		}
	}
	a := startCCM(t, "provider: pools\n", election...)
	kit.Eventually(t, settle, "the first replica to lead", leads(a))
	b := startCCM(t, "provider: pools\n", election...)
	for i := 0; i < 10; i++ {
		create(t, lbService(ns, fmt.Sprintf("s%02d", i), nil))
	}
	for i := 0; i < 10; i++ {
		waitIngress(t, ns, fmt.Sprintf("s%02d", i))
	}

	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
	kit.Eventually(t, settle, "the standby to take over", leads(b))
	for i := 0; i < 5; i++ {
		deleteAndWait(t, ns, fmt.Sprintf("s%02d", i))
	}
	for i := 10; i < 25; i++ {
		create(t, lbService(ns, fmt.Sprintf("s%02d", i), nil))
	}
	before := map[string]string{}
	for i := 5; i < 25; i++ {
		name := fmt.Sprintf("s%02d", i)
		before[name] = waitIngress(t, ns, name).IP
	}

	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the old leader still runs 30 s after it lost its Lease")
	}
	// It did try: the upstream controller synced on the stale view, and the fence refused.
	if !strings.Contains(a.logs(), "not provably held") {
		t.Fatalf("the resumed leader never attempted a write, so this run proves nothing; its logs:\n%s", tail(a.logs(), 30))
	}
	for name, ip := range before {
		if got := get(t, ns, name).Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != ip {
			t.Errorf("%s had %s while the old leader slept, has %+v after", name, ip, got)
		}
	}
	dups.check(t)
	for name := range before {
		deleteAndWait(t, ns, name)
	}
}

// duplicates follows every write to the Services of a namespace, in the apiserver's order, and
// records each moment at which an address was held by two Services.
type duplicates struct {
	mu    sync.Mutex
	found []string
}

func watchDuplicates(t *testing.T, ns string) *duplicates {
	t.Helper()
	w, err := kubernetes.NewForConfigOrDie(env.Config).CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	d := &duplicates{}
	go func() {
		held := map[string][]string{}
		for ev := range w.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			held[svc.Name] = nil
			if ev.Type != watch.Deleted {
				for _, in := range svc.Status.LoadBalancer.Ingress {
					held[svc.Name] = append(held[svc.Name], in.IP)
				}
			}
			owner := map[string]string{}
			for name, ips := range held {
				for _, ip := range ips {
					if other, dup := owner[ip]; dup {
						d.mu.Lock()
						d.found = append(d.found, fmt.Sprintf("at resourceVersion %s: %s held by %s and %s", svc.ResourceVersion, ip, other, name))
						d.mu.Unlock()
					}
					owner[ip] = name
				}
			}
		}
	}()
	return d
}

func (d *duplicates) check(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.found) > 0 {
		t.Fatalf("%d moments with an address held twice, first: %s", len(d.found), d.found[0])
	}
}
