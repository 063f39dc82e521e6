package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// AgentOptions configure one node's agent: the lab's stand-in for a kubelet (and, on one
// node, for the scheduler).
type AgentOptions struct {
	Node     Node
	Prefix   string // the lab's namespace prefix: Pods' namespaces start with it
	Client   kubernetes.Interface
	State    string // the lab's state directory (logs)
	EchoBin  string // what every container runs
	Schedule bool   // bind pending Pods to nodes (one agent does it)
}

// Agent registers its Node, keeps it alive, and runs the Pods bound to it as processes in
// network namespaces of their own, on the node's pod CIDR.
type Agent struct {
	o    AgentOptions
	mu   sync.Mutex
	pods map[string]*podSandbox // by Pod UID
	ips  map[netip.Addr]string  // pod IP → Pod UID
}

// NewAgent returns an agent; Run starts it.
func NewAgent(o AgentOptions) *Agent {
	return &Agent{o: o, pods: map[string]*podSandbox{}, ips: map[netip.Addr]string{}}
}

// Run registers the node and works until ctx ends. Pods keep running if the agent stops (like
// containers when a kubelet restarts); a new agent finds and adopts them by namespace name.
func (a *Agent) Run(ctx context.Context) error {
	// A busy apiserver or a conflict with the node controllers must not kill the agent: its
	// node would then never be Ready.
	for {
		err := a.register(ctx)
		if err == nil {
			break
		}
		klog.ErrorS(err, "registering node; retrying", "node", a.o.Node.Name)
		select {
		case <-ctx.Done():
			return fmt.Errorf("registering node %s: %w", a.o.Node.Name, err)
		case <-time.After(time.Second):
		}
	}
	go a.heartbeat(ctx)
	f := informers.NewSharedInformerFactoryWithOptions(a.o.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.o.Node.Name).String()
		}))
	pods := f.Core().V1().Pods().Informer()
	queue := make(chan string, 1024)
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			queue <- key
		}
	}
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				a.stopPod(string(p.UID))
			}
		},
	})
	f.Start(ctx.Done())
	if a.o.Schedule {
		go a.schedule(ctx)
	}
	cache.WaitForCacheSync(ctx.Done(), pods.HasSynced)
	a.adoptOrphans(pods.GetStore())
	resync := time.NewTicker(2 * time.Second)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case key := <-queue:
			obj, ok, _ := pods.GetStore().GetByKey(key)
			if ok {
				a.syncPod(ctx, obj.(*corev1.Pod))
			}
		case <-resync.C:
			// Probes and restarts are driven from here.
			for _, obj := range pods.GetStore().List() {
				a.syncPod(ctx, obj.(*corev1.Pod))
			}
		}
	}
}

func (a *Agent) register(ctx context.Context) error {
	n := a.o.Node
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
			"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			// Zones let topology-aware routing and trafficDistribution be tried in the lab.
			"topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", n.Index),
		}},
		Spec: corev1.NodeSpec{PodCIDR: n.PodV4.String(), PodCIDRs: []string{n.PodV4.String(), n.PodV6.String()}},
	}
	c := a.o.Client.CoreV1().Nodes()
	if _, err := c.Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return a.updateStatus(ctx)
}

// updateStatus writes the node's status, again on a conflict: the node controllers write the
// Node too (taints, annotations).
func (a *Agent) updateStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error { return a.tryUpdateStatus(ctx) })
}

func (a *Agent) tryUpdateStatus(ctx context.Context) error {
	n := a.o.Node
	c := a.o.Client.CoreV1().Nodes()
	node, err := c.Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "LabAgentReady",
		Message: "the lab agent is running", LastHeartbeatTime: now, LastTransitionTime: now}
	for _, old := range node.Status.Conditions {
		if old.Type == corev1.NodeReady && old.Status == corev1.ConditionTrue {
			ready.LastTransitionTime = old.LastTransitionTime
		}
	}
	node.Status.Conditions = []corev1.NodeCondition{ready}
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.V4}, {Type: corev1.NodeInternalIP, Address: n.V6},
		{Type: corev1.NodeHostName, Address: n.Name},
	}
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("110")}
	node.Status.Capacity, node.Status.Allocatable = capacity, capacity
	node.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "v1.37.2-fairlead-lab", OperatingSystem: "linux",
		Architecture: "amd64", ContainerRuntimeVersion: "fairlead-lab://processes"}
	_, err = c.UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// heartbeat renews the node's Lease and Ready condition, so the node lifecycle controller
// keeps the node Ready while the agent lives and taints it when the agent dies.
func (a *Agent) heartbeat(ctx context.Context) {
	leases := a.o.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(ctx, a.o.Node.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.o.Node.Name},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.o.Node.Name),
					LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
			}, metav1.CreateOptions{})
		} else if err == nil {
			l.Spec.RenewTime = &now
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		}
		if err == nil {
			err = a.updateStatus(ctx)
		}
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "heartbeat")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// schedule binds pending Pods to the Ready, schedulable node running the fewest Pods: the
// lab's whole scheduler. Node selectors are honoured; nothing else is.
func (a *Agent) schedule(ctx context.Context) {
	c := a.o.Client.CoreV1()
	for ctx.Err() == nil {
		time.Sleep(300 * time.Millisecond)
		pending, err := c.Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=,status.phase=Pending"})
		if err != nil || len(pending.Items) == 0 {
			continue
		}
		nodes, err := c.Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		all, err := c.Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
		if err != nil {
			continue
		}
		load := map[string]int{}
		for _, p := range all.Items {
			load[p.Spec.NodeName]++
		}
		for _, p := range pending.Items {
			if p.Spec.SchedulerName != "" && p.Spec.SchedulerName != corev1.DefaultSchedulerName {
				continue
			}
			var fit []string
			for _, n := range nodes.Items {
				if schedulable(&n) && matches(p.Spec.NodeSelector, n.Labels) {
					fit = append(fit, n.Name)
				}
			}
			if len(fit) == 0 {
				continue
			}
			sort.Slice(fit, func(i, j int) bool {
				if load[fit[i]] != load[fit[j]] {
					return load[fit[i]] < load[fit[j]]
				}
				return fit[i] < fit[j]
			})
			err := c.Pods(p.Namespace).Bind(ctx, &corev1.Binding{
				ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID},
				Target:     corev1.ObjectReference{Kind: "Node", Name: fit[0]},
			}, metav1.CreateOptions{})
			if err == nil {
				load[fit[0]]++
			}
		}
	}
}

func schedulable(n *corev1.Node) bool {
	if n.Spec.Unschedulable {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return false
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// podNSPrefix starts every lab Pod's namespace name: <prefix>pod-<node>-<uid>. The node in
// the name lets an agent find the Pods it ran before a restart.
func podNSPrefix(prefix string) string { return prefix + "pod-node" }

func (a *Agent) podNSPrefix() string {
	p := a.o.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return fmt.Sprintf("%spod-%s-", p, a.o.Node.Name)
}

func (a *Agent) podNS(uid string) string {
	return a.podNSPrefix() + strings.ReplaceAll(uid, "-", "")[:10]
}

func (a *Agent) logDir() string {
	d := filepath.Join(a.o.State, "logs", "pods")
	_ = os.MkdirAll(d, 0o755)
	return d
}
