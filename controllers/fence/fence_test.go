package fence_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/fairlead-lb/fairlead/controllers/fence"
	"github.com/fairlead-lb/fairlead/test/controlplane"
)

var env *controlplane.Env

func TestMain(m *testing.M) {
	controlplane.Main(m, controlplane.Options{}, func(cp *controlplane.ControlPlane) error {
		env = cp.Env
		return nil
	})
}

// clock is a settable time source for the fence (the elector keeps real time).
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) skip(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

func fenced(f *fence.Fence, protobuf bool) *kubernetes.Clientset {
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(f.Wrap)
	if protobuf { // as the cloud-provider app configures its clients
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// elect runs client-go's elector through cs until ctx ends; leading is closed once it leads,
// stopped once it has stopped.
func elect(t *testing.T, ctx context.Context, name string, cs *kubernetes.Clientset, release bool) (leading, stopped <-chan struct{}) {
	t.Helper()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, "default", name, cs.CoreV1(), cs.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: name + "-a"})
	if err != nil {
		t.Fatal(err)
	}
	lead, stop := make(chan struct{}), make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: 10 * time.Second, RenewDeadline: 8 * time.Second, RetryPeriod: time.Second,
		ReleaseOnCancel: release,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(lead) },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { le.Run(ctx); close(stop) }()
	return lead, stop
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func createCM(ctx context.Context, cs *kubernetes.Clientset, name string) error {
	_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

func TestWritesOnlyWhileTheLeaseIsProvablyHeld(t *testing.T) {
	for _, proto := range []bool{false, true} {
		name := map[bool]string{false: "json", true: "protobuf"}[proto]
		t.Run(name, func(t *testing.T) {
			c := &clock{}
			var refused atomic.Int32
			lease := "fence-" + name
			f := fence.New("default", lease, fence.WithClock(c.now), fence.OnRefused(func() { refused.Add(1) }))
			cs := fenced(f, proto)
			ctx, stopElecting := context.WithCancel(context.Background())
			defer stopElecting()
			// Before the Lease is ours nothing is written, while reads go through. (Checked
			// before the elector starts: once it runs, it may win the free Lease at any moment.)
			if err := createCM(context.Background(), cs, "before-"+name); !errors.Is(err, fence.ErrNotHeld) {
				t.Fatalf("write before leading: got %v, want ErrNotHeld", err)
			}
			if _, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{}); err != nil {
				t.Fatalf("reads must pass the fence: %v", err)
			}
			leading, stopped := elect(t, ctx, lease, cs, false)
			wait(t, leading, "leading")
			d := f.Deadline()
			if left := time.Until(d); left <= 0 || left > 10*time.Second {
				t.Fatalf("deadline %s away, want within the lease duration", left)
			}
			if err := createCM(context.Background(), cs, "while-"+name); err != nil {
				t.Fatalf("write while leading: %v", err)
			}

			// The elector stops renewing (as in a pause) and the deadline passes before it
			// notices: the fence refuses, and nothing reaches the apiserver.
			stopElecting()
			wait(t, stopped, "the elector to stop")
			d = f.Deadline()
			c.skip(time.Until(d) + time.Millisecond)
			err := createCM(context.Background(), cs, "paused-"+name)
			if !errors.Is(err, fence.ErrNotHeld) {
				t.Fatalf("write after the deadline: got %v, want ErrNotHeld", err)
			}
			if _, err := cs.CoreV1().ConfigMaps("default").Get(context.Background(), "paused-"+name, metav1.GetOptions{}); err == nil {
				t.Fatal("the refused write reached the apiserver")
			}
			if refused.Load() != 2 {
				t.Fatalf("OnRefused called %d times, want 2", refused.Load())
			}

			// A renewal sent after the pause (the Lease is still ours) opens the fence again.
			ctx2, release := context.WithCancel(context.Background())
			leading, stopped = elect(t, ctx2, lease, cs, true)
			wait(t, leading, "leading again")
			if !f.Deadline().After(d) {
				t.Fatalf("the renewal left the deadline at %s", f.Deadline())
			}
			if err := createCM(context.Background(), cs, "renewed-"+name); err != nil {
				t.Fatalf("write after renewal: %v", err)
			}

			// Releasing the Lease closes the fence at once.
			release()
			wait(t, stopped, "the elector to release")
			if !f.Deadline().IsZero() {
				t.Fatal("releasing the Lease left the fence open")
			}
			if err := createCM(context.Background(), cs, "released-"+name); !errors.Is(err, fence.ErrNotHeld) {
				t.Fatalf("write after release: got %v, want ErrNotHeld", err)
			}
		})
	}
}
