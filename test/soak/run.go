package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/scheme"
	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/lab"
)

// Options configure a run.
type Options struct {
	Lab      *lab.Lab // up, with agent nodes
	Seed     int64
	Schedule ScheduleOptions
	// ProbeEvery is how often each probe opens a new connection.
	ProbeEvery time.Duration
	// ChurnEvery is how often a Service is created, changed or deleted.
	ChurnEvery time.Duration
	// ConvergeTimeout is how long the lab gets to settle after a fault is undone before the
	// fault counts as not recovered.
	ConvergeTimeout time.Duration
	Out             io.Writer
}

// ShortSchedule is the run `make test` does: one round, every kind once, the apiserver
// paused 30 s.
var ShortSchedule = ScheduleOptions{Duration: 2 * time.Minute, Nodes: lab.Nodes, QuietMin: 3 * time.Second, QuietMax: 5 * time.Second,
	PauseMin: 30 * time.Second, PauseMax: 30 * time.Second}

// LongSchedule is `make soak`'s, for a duration.
func LongSchedule(d time.Duration) ScheduleOptions {
	return ScheduleOptions{Duration: d, Nodes: lab.Nodes, QuietMin: 10 * time.Second, QuietMax: 30 * time.Second,
		PauseMin: 30 * time.Second, PauseMax: 60 * time.Second}
}

// components are the daemons whose memory the report shows.
func components(l *lab.Lab) []string {
	out := []string{"etcd", "kube-apiserver", "kube-controller-manager"}
	for i := 1; i <= max(l.ControllerReplicas, 1); i++ {
		out = append(out, lab.ControllerName(i))
	}
	for i := 1; i <= lab.Nodes; i++ {
		out = append(out, fmt.Sprintf("speaker-node%d", i))
	}
	return append(out, "frr-zebra", "frr-bgpd")
}

// Run soaks the lab: it prints the seed and the schedule, starts the probes, the checkers
// and the Service churn, injects every fault of the schedule in turn (each after its quiet
// time, undone after its hold, then waiting for the lab to converge), and returns the report.
// An error means the run itself could not go on (the lab was not ready to start with); what
// went wrong under the faults is in the report (Report.Failures).
func Run(ctx context.Context, o Options) (*Report, error) {
	l := o.Lab
	say := func(format string, args ...any) {
		if o.Out != nil {
			fmt.Fprintf(o.Out, format+"\n", args...)
		}
	}
	if o.ProbeEvery == 0 {
		o.ProbeEvery = 100 * time.Millisecond
	}
	if o.ChurnEvery == 0 {
		o.ChurnEvery = time.Second
	}
	if o.ConvergeTimeout == 0 {
		o.ConvergeTimeout = 3 * time.Minute
	}
	schedule := NewSchedule(o.Seed, o.Schedule)
	say("soak: seed %d (replay with -seed %d), %d faults:\n%s", o.Seed, o.Seed, len(schedule), FormatSchedule(schedule))

	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, err
	}
	probes, err := setUp(ctx, l, cs)
	if err != nil {
		return nil, err
	}

	pids := map[string]int{}
	r := &Report{Seed: o.Seed, Planned: o.Schedule.Duration, Probes: probeOrder}
	for _, c := range components(l) {
		pids[c], _ = l.ProgramPID(c)
		rss, _ := lab.RSS(pids[c])
		r.Memory = append(r.Memory, Memory{Component: c, Start: rss})
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	rec := newRecorder()
	checker := newAddressChecker(cs, cl)
	var arpObs arpObserver
	if err := arpObs.run(runCtx, l.ClientL2(), "eth0", 2*time.Second, 500*time.Millisecond, checker.l2Addresses); err != nil {
		return nil, fmt.Errorf("the ARP observer: %w", err)
	}
	// Watches are long requests: the other clients' 10 s timeout would cut them.
	wcfg := rest.CopyConfig(cfg)
	wcfg.Timeout = 0
	wcs, err := kubernetes.NewForConfig(wcfg)
	if err != nil {
		return nil, err
	}
	var ready readinessWatcher
	ready.start(runCtx, wcs)
	ch := newChurn(cs, o.Seed)
	done := make(chan struct{})
	workers := len(probes) + 2
	r.Start = time.Now()
	for _, p := range probes {
		go func() { p.run(runCtx, o.ProbeEvery, rec); done <- struct{}{} }()
	}
	go func() { checker.run(runCtx, time.Second, netip.MustParsePrefix(lab.PoolL2v4)); done <- struct{}{} }()
	go func() { ch.run(runCtx, o.ChurnEvery); done <- struct{}{} }()

	for i, f := range schedule {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(f.Quiet):
		}
		res := Result{Fault: f, Injected: time.Now()}
		say("soak: %s fault %d/%d: %s for %s", time.Since(r.Start).Round(time.Second), i+1, len(schedule), f, f.Hold)
		err := inject(l, f)
		if err == nil {
			time.Sleep(f.Hold)
		}
		// Undone even when injecting failed half-way: a stopped apiserver or a link down
		// must not outlive the fault.
		if uerr := undo(l, f); uerr != nil {
			err = errors.Join(err, uerr)
		}
		res.Undone = time.Now()
		if err != nil {
			res.Err = err.Error()
		} else if err := waitConverged(ctx, l, cs, cl, probes, rec, res.Undone, o.ConvergeTimeout); err != nil {
			res.Err = err.Error()
		} else {
			res.Converged = time.Now()
		}
		if res.Recovered() {
			say("soak:   converged %s after it was undone", res.Converged.Sub(res.Undone).Round(100*time.Millisecond))
		} else {
			say("soak:   NOT RECOVERED: %s", res.Err)
		}
		r.Results = append(r.Results, res)
	}
	// A last stretch with no fault on: what it loses counts against the run.
	time.Sleep(o.Schedule.QuietMin)
	stop()
	for i := 0; i < workers; i++ {
		<-done
	}
	r.End = time.Now()
	r.Attempts = rec.snapshot()
	checker.mu.Lock()
	r.Changed, r.Duplicate, r.AnnouncedSvcann = checker.events.changed, checker.events.dup, checker.events.announced
	checker.mu.Unlock()
	r.AnnouncedARP = arpObs.snapshot()
	r.Readiness = ready.snapshot()
	r.ServiceOps, r.ServiceOpsFailed = ch.counts()
	for i, m := range r.Memory {
		pid, _ := l.ProgramPID(m.Component)
		r.Memory[i].End, _ = lab.RSS(pid)
		r.Memory[i].Restarted = pid != pids[m.Component]
	}
	return r, nil
}

// setUp creates the churn namespace and the probes' Services, waits until every probe
// answers, and returns the probes.
func setUp(ctx context.Context, l *lab.Lab, cs kubernetes.Interface) ([]probe, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ChurnNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	byName := map[string]*corev1.Service{}
	for _, s := range probeServices() {
		if _, err := cs.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		err := poll(ctx, time.Minute, func() error {
			got, err := cs.CoreV1().Services(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(ingressIPs(got)) < 2 {
				return fmt.Errorf("Service %s has addresses %v", s.Name, ingressIPs(got))
			}
			byName[s.Name] = got
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	l2, bgp := byName["soak-l2"], byName["soak-bgp"]
	family := func(s *corev1.Service, v6 bool) string {
		for _, ip := range ingressIPs(s) {
			if netip.MustParseAddr(ip).Is6() == v6 {
				return ip
			}
		}
		return ""
	}
	probes := []probe{
		{ProbeL2v4, []target{{l.ClientL2(), hostPort(family(l2, false), 80)}}},
		{ProbeL2v6, []target{{l.ClientL2(), hostPort(family(l2, true), 80)}}},
		{ProbeBGPv4, []target{{l.ClientBGP(), hostPort(family(bgp, false), 80)}}},
		{ProbeBGPv6, []target{{l.ClientBGP(), hostPort(family(bgp, true), 80)}}},
	}
	var cip, np []target
	for _, n := range l.Nodes() {
		// The ClusterIP from each node itself (the proxy catches the node's own connections),
		// the NodePort on each node from the LAN client.
		cip = append(cip, target{n.NS, hostPort(l2.Spec.ClusterIP, 80)})
		np = append(np, target{l.ClientL2(), hostPort(n.V4, l2.Spec.Ports[0].NodePort)})
	}
	probes = append(probes, probe{ProbeClusterIP, cip}, probe{ProbeNodePort, np})
	err := poll(ctx, 2*time.Minute, func() error {
		for _, p := range probes {
			for _, t := range p.targets {
				// Several in a row: with ECMP, one node's proxy may lag behind the others.
				for i := 0; i < 3; i++ {
					if _, err := request(ctx, t.from, t.addr); err != nil {
						return fmt.Errorf("%s from %s to %s: %w", p.name, t.from, t.addr, err)
					}
				}
			}
		}
		return nil
	})
	return probes, err
}

// inject starts fault f.
func inject(l *lab.Lab, f Fault) error {
	n := node(l, f)
	switch f.Kind {
	case KillController:
		if l.ControllerReplicas > 1 {
			// Its babysitter starts it again, as a standby (kubelet would restart the
			// container); the other replica takes over once the Lease runs out.
			_, err := l.KillControllerLeader()
			return err
		}
		return l.StopController()
	case KillSpeaker:
		return l.KillSpeaker(n)
	case PauseAPIServer:
		return l.SignalDaemon("kube-apiserver", syscall.SIGSTOP)
	case RestartEtcd:
		return l.KillEtcd()
	case CutLink:
		return l.SetNodeLink(n, false)
	case RestartFRR:
		l.StopRouter()
		return nil
	}
	return fmt.Errorf("unknown fault kind %q", f.Kind)
}

// undo ends fault f.
func undo(l *lab.Lab, f Fault) error {
	n := node(l, f)
	switch f.Kind {
	case KillController:
		if l.ControllerReplicas > 1 {
			return nil
		}
		return l.StartController()
	case KillSpeaker:
		return l.StartSpeaker(n)
	case PauseAPIServer:
		return l.SignalDaemon("kube-apiserver", syscall.SIGCONT)
	case RestartEtcd:
		return l.StartEtcd()
	case CutLink:
		return l.SetNodeLink(n, true)
	case RestartFRR:
		return l.StartRouter()
	}
	return fmt.Errorf("unknown fault kind %q", f.Kind)
}

func node(l *lab.Lab, f Fault) lab.Node {
	if f.Node < 1 {
		return lab.Node{}
	}
	return l.Nodes()[f.Node-1]
}

// waitConverged waits until the lab is whole again after a fault undone at since: every
// daemon runs, every Node is Ready, every probe target answered since, the router routes the
// BGP probe addresses via every node, each layer 2 address is announced by exactly one node,
// and no Service older than a few seconds waits for an address.
func waitConverged(ctx context.Context, l *lab.Lab, cs kubernetes.Interface, cl client.Client, probes []probe, rec *recorder, since time.Time, timeout time.Duration) error {
	return poll(ctx, timeout, func() error {
		var down []string
		for _, d := range components(l) {
			if _, err := l.ProgramPID(d); err != nil {
				down = append(down, d)
			}
		}
		for _, n := range l.Nodes() {
			if _, err := l.DaemonPID("agent-" + n.Name); err != nil {
				down = append(down, "agent-"+n.Name)
			}
		}
		if len(down) > 0 {
			return fmt.Errorf("not running: %s", strings.Join(down, ", "))
		}
		if l.ControllerReplicas > 1 {
			if _, _, err := l.ControllerLeader(); err != nil {
				return err
			}
		}
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("apiserver: %w", err)
		}
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
					return fmt.Errorf("node %s is not Ready: %s", n.Name, c.Message)
				}
			}
		}
		if err := rec.answeredSince(probes, since); err != nil {
			return err
		}
		for _, s := range []string{"soak-bgp"} {
			svc, err := cs.CoreV1().Services(lab.DemoNamespace).Get(ctx, s, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, ip := range ingressIPs(svc) {
				a := netip.MustParseAddr(ip)
				hops, err := l.RouterNextHops(netip.PrefixFrom(a, a.BitLen()))
				if err != nil {
					return fmt.Errorf("router: %w", err)
				}
				if len(hops) != lab.Nodes {
					return fmt.Errorf("the router routes %s via %v, not every node", ip, hops)
				}
			}
		}
		var ann v1alpha1.ServiceAnnouncement
		if err := cl.Get(ctx, client.ObjectKey{Namespace: lab.DemoNamespace, Name: "soak-l2"}, &ann); err != nil {
			return err
		}
		count := map[string][]string{}
		for _, a := range ann.Status.Announcements {
			count[a.IP] = append(count[a.IP], a.Node)
		}
		if len(count) != 2 {
			return fmt.Errorf("ServiceAnnouncement soak-l2 lists %v", ann.Status.Announcements)
		}
		for ip, ns := range count {
			if len(ns) != 1 {
				return fmt.Errorf("ServiceAnnouncement soak-l2: %s announced by %v", ip, ns)
			}
		}
		svcs, err := cs.CoreV1().Services(ChurnNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, s := range svcs.Items {
			if s.DeletionTimestamp == nil && time.Since(s.CreationTimestamp.Time) > 10*time.Second && len(ingressIPs(&s)) == 0 {
				return fmt.Errorf("Service %s/%s has no address %s after its creation", s.Namespace, s.Name,
					time.Since(s.CreationTimestamp.Time).Round(time.Second))
			}
		}
		return nil
	})
}

// poll retries check every 250 ms until it passes or timeout runs out, returning its last
// error then.
func poll(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
