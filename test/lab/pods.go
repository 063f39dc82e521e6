package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// podSandbox is one running Pod: its namespace, address and processes.
type podSandbox struct {
	uid, ns, name string
	ip, ip6       netip.Addr // the Pod's IPv4 and IPv6 addresses
	procs         []*exec.Cmd
	exited        []chan struct{}
	restarts      int32
	started       metav1.Time
	ready         bool
	lastProbe     time.Time
}

func (a *Agent) syncPod(ctx context.Context, p *corev1.Pod) {
	uid := string(p.UID)
	if p.DeletionTimestamp != nil {
		a.stopPod(uid)
		// What a kubelet does once the containers are gone: the final delete.
		err := a.o.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			klog.ErrorS(err, "deleting pod", "pod", klog.KObj(p))
		}
		return
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return
	}
	a.mu.Lock()
	sb := a.pods[uid]
	a.mu.Unlock()
	if sb == nil {
		var err error
		if sb, err = a.startPod(p); err != nil {
			klog.ErrorS(err, "starting pod", "pod", klog.KObj(p))
			return
		}
	}
	a.restartExited(p, sb)
	a.probe(p, sb)
	if err := a.writePodStatus(ctx, p, sb); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.ErrorS(err, "writing pod status", "pod", klog.KObj(p))
	}
}

func (a *Agent) allocateIP(uid string, want string) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w, err := netip.ParseAddr(want); err == nil && a.o.Node.PodV4.Contains(w) {
		if owner, taken := a.ips[w]; !taken || owner == uid {
			a.ips[w] = uid
			return w, nil
		}
	}
	// .1 is the node's gateway on cbr0.
	for ip := a.o.Node.PodV4.Addr().Next().Next(); a.o.Node.PodV4.Contains(ip); ip = ip.Next() {
		if _, taken := a.ips[ip]; !taken && ip.As4()[3] != 255 {
			a.ips[ip] = uid
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s is full", a.o.Node.PodV4)
}

// ipv6For gives a Pod the IPv6 address with the same host part as its IPv4 address, in the
// node's IPv6 pod CIDR: one allocation serves both families.
func (a *Agent) ipv6For(ip netip.Addr) netip.Addr {
	b := a.o.Node.PodV6.Addr().As16()
	v4 := ip.As4()
	b[14], b[15] = 0, v4[3]
	return netip.AddrFrom16(b)
}

func (a *Agent) startPod(p *corev1.Pod) (*podSandbox, error) {
	uid := string(p.UID)
	ip, err := a.allocateIP(uid, p.Status.PodIP)
	if err != nil {
		return nil, err
	}
	sb := &podSandbox{uid: uid, ns: a.podNS(uid), name: p.Namespace + "/" + p.Name, ip: ip, ip6: a.ipv6For(ip), started: metav1.Now()}
	host := "v" + strings.ReplaceAll(uid, "-", "")[:12]
	gw, gw6 := a.o.Node.PodV4.Addr().Next(), a.o.Node.PodV6.Addr().Next()
	_, _ = run("", "ip", "netns", "del", sb.ns) // a leftover from a previous agent
	err = script("",
		"ip netns add "+sb.ns,
		// The agent runs in the node's namespace: the host end stays here, the other goes in.
		fmt.Sprintf("ip link add %s type veth peer name eth0 netns %s", host, sb.ns),
		"ip link set "+host+" master cbr0", "ip link set "+host+" up")
	if err == nil {
		err = script(sb.ns, "ip link set lo up", "ip link set eth0 up",
			fmt.Sprintf("ip addr add %s/%d dev eth0", ip, a.o.Node.PodV4.Bits()),
			fmt.Sprintf("ip addr add %s/%d dev eth0 nodad", sb.ip6, a.o.Node.PodV6.Bits()),
			"ip route add default via "+gw.String(), "ip -6 route add default via "+gw6.String())
	}
	if err != nil {
		a.cleanupSandbox(sb)
		return nil, err
	}
	for i := range p.Spec.Containers {
		cmd, done, err := a.startContainer(p, sb, i)
		if err != nil {
			a.cleanupSandbox(sb)
			return nil, err
		}
		sb.procs, sb.exited = append(sb.procs, cmd), append(sb.exited, done)
	}
	a.mu.Lock()
	a.pods[uid] = sb
	a.mu.Unlock()
	klog.InfoS("pod started", "pod", klog.KObj(p), "ip", ip)
	return sb, nil
}

// startContainer runs container i of p. Images are not pulled or run: every container is the
// lab's echo server on its declared ports (8080/TCP when it declares none), which answers with
// the Pod's name and the client address it sees. That is enough for Services to be real.
func (a *Agent) startContainer(p *corev1.Pod, sb *podSandbox, i int) (*exec.Cmd, chan struct{}, error) {
	c := p.Spec.Containers[i]
	ports := map[corev1.Protocol][]string{}
	for _, cp := range c.Ports {
		proto := cp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		ports[proto] = append(ports[proto], strconv.Itoa(int(cp.ContainerPort)))
	}
	if len(ports) == 0 {
		ports[corev1.ProtocolTCP] = []string{"8080"}
	}
	args := []string{"--net=/run/netns/" + sb.ns, "--", a.o.EchoBin, "-name", p.Name}
	for proto, flag := range map[corev1.Protocol]string{corev1.ProtocolTCP: "-tcp", corev1.ProtocolUDP: "-udp", corev1.ProtocolSCTP: "-sctp"} {
		if len(ports[proto]) > 0 {
			args = append(args, flag, strings.Join(ports[proto], ","))
		}
	}
	logf, err := os.OpenFile(filepath.Join(a.logDir(), fmt.Sprintf("%s_%s_%s.log", p.Namespace, p.Name, c.Name)),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	return cmd, done, nil
}

// restartExited applies restartPolicy Always: a container that exited is started again.
func (a *Agent) restartExited(p *corev1.Pod, sb *podSandbox) {
	for i := range sb.procs {
		select {
		case <-sb.exited[i]:
		default:
			continue
		}
		if i >= len(p.Spec.Containers) || p.Spec.RestartPolicy == corev1.RestartPolicyNever {
			continue
		}
		if cmd, done, err := a.startContainer(p, sb, i); err == nil {
			sb.procs[i], sb.exited[i] = cmd, done
			sb.restarts++
			sb.ready = false
		}
	}
}

func (sb *podSandbox) running() bool {
	for _, d := range sb.exited {
		select {
		case <-d:
			return false
		default:
		}
	}
	return true
}

// probe runs the first container's readiness probe (TCP or HTTP GET) from the node, at most
// once per periodSeconds. Without a probe a running Pod is ready.
func (a *Agent) probe(p *corev1.Pod, sb *podSandbox) {
	if !sb.running() {
		sb.ready = false
		return
	}
	var pr *corev1.Probe
	for _, c := range p.Spec.Containers {
		if c.ReadinessProbe != nil {
			pr = c.ReadinessProbe
			break
		}
	}
	if pr == nil {
		sb.ready = true
		return
	}
	period := time.Duration(max(pr.PeriodSeconds, 1)) * time.Second
	if time.Since(sb.lastProbe) < period || time.Since(sb.started.Time) < time.Duration(pr.InitialDelaySeconds)*time.Second {
		return
	}
	sb.lastProbe = time.Now()
	timeout := time.Duration(max(pr.TimeoutSeconds, 1)) * time.Second
	port := func(ip intOrName) string { return ip.resolve(p) }
	switch {
	case pr.TCPSocket != nil:
		c, err := net.DialTimeout("tcp", net.JoinHostPort(sb.ip.String(), port(intOrName(pr.TCPSocket.Port.String()))), timeout)
		if err == nil {
			c.Close()
		}
		sb.ready = err == nil
	case pr.HTTPGet != nil:
		cl := http.Client{Timeout: timeout}
		r, err := cl.Get("http://" + net.JoinHostPort(sb.ip.String(), port(intOrName(pr.HTTPGet.Port.String()))) + pr.HTTPGet.Path)
		if err == nil {
			r.Body.Close()
		}
		sb.ready = err == nil && r.StatusCode < 400
	default:
		sb.ready = true // exec and gRPC probes are not run in the lab
	}
}

type intOrName string

func (s intOrName) resolve(p *corev1.Pod) string {
	if _, err := strconv.Atoi(string(s)); err == nil {
		return string(s)
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == string(s) {
				return strconv.Itoa(int(cp.ContainerPort))
			}
		}
	}
	return string(s)
}

func (a *Agent) writePodStatus(ctx context.Context, p *corev1.Pod, sb *podSandbox) error {
	st := p.Status.DeepCopy()
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		for _, old := range p.Status.Conditions {
			if old.Type == t && old.Status == s {
				return old
			}
		}
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: metav1.Now()}
	}
	st.Phase = corev1.PodRunning
	st.HostIP, st.HostIPs = a.o.Node.V4, []corev1.HostIP{{IP: a.o.Node.V4}, {IP: a.o.Node.V6}}
	st.PodIP, st.PodIPs = sb.ip.String(), []corev1.PodIP{{IP: sb.ip.String()}, {IP: sb.ip6.String()}}
	st.StartTime = &sb.started
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodScheduled, true), cond(corev1.PodInitialized, true),
		cond(corev1.ContainersReady, sb.ready), cond(corev1.PodReady, sb.ready),
	}
	st.ContainerStatuses = nil
	for i, c := range p.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "fairlead-lab://echo",
			ContainerID: fmt.Sprintf("lab://%s/%d", sb.uid, i), Ready: sb.ready, Started: ptr.To(true),
			RestartCount: sb.restarts,
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: sb.started}}}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	if statusEqual(&p.Status, st) {
		return nil
	}
	np := p.DeepCopy()
	np.Status = *st
	_, err := a.o.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, np, metav1.UpdateOptions{})
	return err
}

func statusEqual(a, b *corev1.PodStatus) bool {
	if a.Phase != b.Phase || a.PodIP != b.PodIP || len(a.PodIPs) != len(b.PodIPs) || len(a.Conditions) != len(b.Conditions) ||
		len(a.ContainerStatuses) != len(b.ContainerStatuses) {
		return false
	}
	for i := range a.Conditions {
		if a.Conditions[i].Type != b.Conditions[i].Type || a.Conditions[i].Status != b.Conditions[i].Status {
			return false
		}
	}
	for i := range a.ContainerStatuses {
		if a.ContainerStatuses[i].Ready != b.ContainerStatuses[i].Ready || a.ContainerStatuses[i].RestartCount != b.ContainerStatuses[i].RestartCount {
			return false
		}
	}
	return true
}

func (a *Agent) stopPod(uid string) {
	a.mu.Lock()
	sb := a.pods[uid]
	delete(a.pods, uid)
	a.mu.Unlock()
	if sb == nil {
		return
	}
	for _, c := range sb.procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(5 * time.Second)
	for _, d := range sb.exited {
		select {
		case <-d:
		case <-deadline:
		}
	}
	a.cleanupSandbox(sb)
	klog.InfoS("pod stopped", "pod", sb.name)
}

func (a *Agent) cleanupSandbox(sb *podSandbox) {
	if out, err := run("", "ip", "netns", "pids", sb.ns); err == nil {
		killAll(out)
	}
	_, _ = run("", "ip", "netns", "del", sb.ns) // takes the veth with it
	a.mu.Lock()
	if a.ips[sb.ip] == sb.uid {
		delete(a.ips, sb.ip)
	}
	a.mu.Unlock()
}

// adoptOrphans removes the namespaces of Pods this node ran before the agent restarted: the
// Pods still bound here are started again (with the same address), the others are gone.
func (a *Agent) adoptOrphans(store cache.Store) {
	prefix := a.podNSPrefix()
	for _, ns := range listNamespaces(func(name string) bool { return strings.HasPrefix(name, prefix) }) {
		a.cleanupSandbox(&podSandbox{ns: ns})
	}
	for _, obj := range store.List() {
		p := obj.(*corev1.Pod)
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			a.ips[ip] = string(p.UID)
		}
	}
}
