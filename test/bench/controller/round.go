package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/test/controlplane"
)

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }

// round is one implementation allocating n Services.
type round struct {
	env        *controlplane.Env
	impl       *implementation
	n          int
	creators   int
	kubeconfig string
	namespace  string
	prefix     string
	backlog    bool // create everything first, then start the controller
}

type result struct {
	impl       string
	n          int
	backlog    bool
	wall       time.Duration
	creation   time.Duration // how long the creators took: the offered rate
	p50, p99   time.Duration
	max        time.Duration
	cpu        float64
	peak       int64
	duplicates int
	latencies  []time.Duration // every Service's, for the plots
}

func (r *round) service(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.namespace, Name: name},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:             ptr.To(r.impl.class),
			IPFamilies:                    []corev1.IPFamily{corev1.IPv6Protocol},
			IPFamilyPolicy:                ptr.To(corev1.IPFamilyPolicySingleStack),
			AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports:                         []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func hasAddress(s *corev1.Service) bool {
	for _, in := range s.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			return true
		}
	}
	return false
}

func (r *round) run(ctx context.Context, timeout time.Duration) (result, error) {
	c := r.env.Client
	if err := ensureNamespace(ctx, c, r.namespace); err != nil {
		return result{}, err
	}
	if err := r.impl.pool(ctx, r); err != nil {
		return result{}, fmt.Errorf("creating the pool: %w", err)
	}

	// Record when each Service is first seen with an address, from a watch.
	cs, err := kubernetes.NewForConfig(r.env.Config)
	if err != nil {
		return result{}, err
	}
	var (
		mu   sync.Mutex
		seen = map[string]time.Time{}
		got  atomic.Int64
	)
	note := func(obj any) {
		s, ok := obj.(*corev1.Service)
		if !ok || !hasAddress(s) {
			return
		}
		now := time.Now()
		mu.Lock()
		if _, dup := seen[s.Name]; !dup {
			seen[s.Name] = now
			got.Add(1)
		}
		mu.Unlock()
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(r.namespace))
	inf := f.Core().V1().Services().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: note, UpdateFunc: func(_, o any) { note(o) }})
	stopInf := make(chan struct{})
	defer close(stopInf)
	f.Start(stopInf)
	cache.WaitForCacheSync(stopInf, inf.HasSynced)

	log, err := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("fairlead-bench-%s-%d.log", r.impl.name, r.n)))
	if err != nil {
		return result{}, err
	}
	defer log.Close()
	cmd := r.impl.start(r)
	cmd.Stdout, cmd.Stderr = log, log

	var (
		created  []time.Time
		start    time.Time
		creation time.Duration
		cpu0     float64
		want     = int64(r.n)
	)
	if r.backlog {
		// Every Service exists before the controller starts: this measures the controller's
		// own rate, with no creators competing for the apiserver.
		if created, creation, err = r.create(ctx); err != nil {
			return result{}, err
		}
		start = time.Now()
		for i := range created {
			created[i] = start
		}
		if err := cmd.Start(); err != nil {
			return result{}, err
		}
		defer stop(cmd)
	} else {
		if err := cmd.Start(); err != nil {
			return result{}, err
		}
		defer stop(cmd)
		// One Service first, so the clock starts with a controller that has synced and read its pool.
		if err := c.Create(ctx, r.service("warmup")); err != nil {
			return result{}, err
		}
		if err := waitCount(&got, 1, 2*time.Minute, cmd); err != nil {
			return result{}, fmt.Errorf("warm-up Service never got an address (log: %s): %w", log.Name(), err)
		}
		want++
		if cpu0, _, err = processStats(cmd.Process.Pid); err != nil {
			return result{}, err
		}
		start = time.Now()
		if created, creation, err = r.create(ctx); err != nil {
			return result{}, err
		}
	}
	if err := waitCount(&got, want, timeout, cmd); err != nil {
		return result{}, fmt.Errorf("%d of %d Services allocated (log: %s): %w", got.Load(), want, log.Name(), err)
	}
	cpu1, peak, err := processStats(cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}

	res := result{impl: r.impl.name, n: r.n, backlog: r.backlog, creation: creation, cpu: cpu1 - cpu0, peak: peak}
	mu.Lock()
	lat := make([]time.Duration, r.n)
	var last time.Time
	for i := range lat {
		t := seen[name(i)]
		lat[i] = t.Sub(created[i])
		if t.After(last) {
			last = t
		}
	}
	mu.Unlock()
	res.wall = last.Sub(start)
	res.p50, res.p99, res.max = percentiles(lat)
	res.latencies = lat
	if res.duplicates, err = r.duplicates(ctx); err != nil {
		return result{}, err
	}
	stop(cmd)
	return res, r.cleanup(ctx)
}

// create makes the round's Services with r.creators parallel creators and returns when each
// Create call started, and how long they all took.
func (r *round) create(ctx context.Context) ([]time.Time, time.Duration, error) {
	created := make([]time.Time, r.n)
	work := make(chan int)
	var wg sync.WaitGroup
	var createErr atomic.Value
	start := time.Now()
	for w := 0; w < r.creators; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				created[i] = time.Now()
				if err := r.env.Client.Create(ctx, r.service(name(i))); err != nil {
					createErr.Store(err)
				}
			}
		}()
	}
	for i := 0; i < r.n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := createErr.Load().(error); err != nil {
		return nil, 0, fmt.Errorf("creating Services: %w", err)
	}
	return created, time.Since(start), nil
}

func name(i int) string { return fmt.Sprintf("svc-%05d", i) }

func waitCount(got *atomic.Int64, want int64, timeout time.Duration, cmd *exec.Cmd) error {
	deadline := time.Now().Add(timeout)
	for got.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		if cmd.ProcessState != nil {
			return fmt.Errorf("controller exited: %s", cmd.ProcessState)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// duplicates counts addresses held by more than one Service of the round.
func (r *round) duplicates(ctx context.Context) (int, error) {
	var list corev1.ServiceList
	if err := r.env.Client.List(ctx, &list, client.InNamespace(r.namespace)); err != nil {
		return 0, err
	}
	held := map[netip.Addr]int{}
	for _, s := range list.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				held[a]++
			}
		}
	}
	dups := 0
	for _, n := range held {
		if n > 1 {
			dups += n - 1
		}
	}
	return dups, nil
}

// cleanup removes the round's Services (dropping finalizers: the controller is stopped) so the
// next round's controller does not list them.
func (r *round) cleanup(ctx context.Context) error {
	var list corev1.ServiceList
	if err := r.env.Client.List(ctx, &list, client.InNamespace(r.namespace)); err != nil {
		return err
	}
	work := make(chan corev1.Service)
	var wg sync.WaitGroup
	for w := 0; w < r.creators; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				if len(s.Finalizers) > 0 {
					_ = r.env.Client.Patch(ctx, &s, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
				}
				_ = r.env.Client.Delete(ctx, &s)
			}
		}()
	}
	for _, s := range list.Items {
		work <- s
	}
	close(work)
	wg.Wait()
	return nil
}
