// Package netns builds throwaway network topologies for tests: named network namespaces, veth
// pairs and bridges, made with iproute2 and torn down by t.Cleanup, also when the test fails.
// Every namespace is named "fl-<test>-<n>" so a leftover is easy to spot and remove
// (`ip netns list | grep ^fl-`). Nothing here touches the host's own namespace except creating
// and deleting the named namespaces themselves.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fairlead-lb/fairlead/test/kit"
)

var seq atomic.Int64

// NS is a network namespace created for one test.
type NS struct {
	Name string
	t    testing.TB
}

// Require fails the test when it cannot create namespaces, because the network suites are
// part of `make test`, not optional extras. Only the fast lane (`make unit`, -short) skips it.
func Require(t testing.TB) {
	t.Helper()
	kit.Heavy(t, "root and network namespaces")
	if os.Geteuid() != 0 {
		t.Fatal("network namespace tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run `make packages`", tool)
		}
	}
}

// New creates a namespace with loopback up; it is deleted (with every process still inside it
// killed) when the test ends.
func New(t testing.TB, role string) *NS {
	t.Helper()
	Require(t)
	name := fmt.Sprintf("fl-%s-%d-%d", short(role), os.Getpid()%100000, seq.Add(1))
	mustRun(t, "ip", "netns", "add", name)
	ns := &NS{Name: name, t: t}
	t.Cleanup(ns.destroy)
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

func short(s string) string {
	s = strings.ToLower(strings.NewReplacer("/", "", "_", "", " ", "").Replace(s))
	if len(s) > 6 {
		s = s[:6]
	}
	return s
}

func (n *NS) destroy() {
	// Kill what still runs inside so the namespace really goes away.
	if out, err := exec.Command("ip", "netns", "pids", n.Name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			var pid int
			// Never ourselves: a thread of the test process may still sit in the namespace
			// (see Do), which makes `ip netns pids` list the test itself.
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		n.t.Logf("deleting namespace %s: %v: %s", n.Name, err, out)
	}
}

// Cmd returns a command that runs inside the namespace.
func (n *NS) Cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (n *NS) Run(name string, args ...string) (string, error) {
	out, err := n.Cmd(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(name string, args ...string) string {
	n.t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// Do runs fn on an OS thread switched into the namespace. Sockets opened by fn stay in the
// namespace after Do returns; goroutines started by fn do not inherit it.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread goes back to its own namespace afterwards and is reused. Letting it die
		// instead would kill every process started from it (Start sets Pdeathsig, which fires
		// when the forking thread exits). Only if switching back fails is it left locked, so
		// that the runtime discards it rather than run other goroutines in the namespace.
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		f, err := os.Open("/var/run/netns/" + n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Proc is a long-running process inside a namespace, with its output captured.
type Proc struct {
	Cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Exited reports whether the process has ended, and its error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) { _ = p.Cmd.Process.Signal(sig) }

// Kill SIGKILLs the process and waits for it.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Wait waits up to d for the process to end on its own.
func (p *Proc) Wait(d time.Duration) (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(d):
		return false, nil
	}
}

// Start starts a process inside the namespace. It is killed when the test ends; if the test
// failed, the tail of its output is logged.
func (n *NS) Start(name string, args ...string) *Proc {
	n.t.Helper()
	p := &Proc{done: make(chan struct{})}
	// nsenter rather than `ip netns exec`: the latter also remounts /sys, which we don't need,
	// and exec's the program directly so signals reach it.
	p.Cmd = exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + n.Name, "--", name}, args...)...)
	p.Cmd.Stdout, p.Cmd.Stderr = p, p
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		n.t.Fatalf("starting %s in %s: %v", name, n.Name, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	n.t.Cleanup(func() {
		if ok, _ := p.Exited(); !ok {
			p.Kill()
		}
		if n.t.Failed() {
			n.t.Logf("%s in %s, output tail:\n%s", name, n.Name, tail(p.Output(), 30))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Veth connects a and b with a veth pair named ifA (in a) and ifB (in b), both up.
func Veth(t testing.TB, a *NS, ifA string, b *NS, ifB string) {
	t.Helper()
	tmp := fmt.Sprintf("flv%d", seq.Add(1))
	mustRun(t, "ip", "link", "add", tmp+"a", "netns", a.Name, "type", "veth", "peer", "name", tmp+"b", "netns", b.Name)
	a.MustRun("ip", "link", "set", tmp+"a", "name", ifA)
	b.MustRun("ip", "link", "set", tmp+"b", "name", ifB)
	a.MustRun("ip", "link", "set", ifA, "up")
	b.MustRun("ip", "link", "set", ifB, "up")
}

// Bridge creates bridge br inside n, up, with the given veth ends (already in n) enslaved.
func (n *NS) Bridge(br string, ports ...string) {
	n.t.Helper()
	n.MustRun("ip", "link", "add", br, "type", "bridge")
	n.MustRun("ip", "link", "set", br, "up")
	for _, p := range ports {
		n.MustRun("ip", "link", "set", p, "master", br)
	}
}

// Addr adds an address (CIDR form) to an interface of n. IPv6 addresses skip duplicate address
// detection so they are usable at once.
func (n *NS) Addr(dev, cidr string) {
	n.t.Helper()
	args := []string{"addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	n.MustRun("ip", args...)
}

// Sysctl sets a sysctl inside n (net.* sysctls are per namespace).
func (n *NS) Sysctl(key, value string) {
	n.t.Helper()
	n.MustRun("sysctl", "-qw", key+"="+value)
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// Forward listens on addr (host:port) inside n and relays each connection to target, dialled
// from the test's own namespace. It is how a process in a test namespace reaches the envtest
// apiserver on the host's 127.0.0.1 without giving the namespace any route out: both ends stay
// on loopback. Using the same address for both keeps kubeconfigs and TLS names valid unchanged.
func (n *NS) Forward(addr, target string) {
	n.t.Helper()
	n.ForwardRelay(addr, target)
}

// Relay is a running Forward that a test can cut and restore, to take the apiserver away from
// the processes in a namespace and give it back.
type Relay struct {
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

// Cut closes every relayed connection, and connections made while cut are closed at once: to
// the namespace, the target is gone.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = true
	for c := range r.conns {
		c.Close()
	}
}

// Restore relays new connections again.
func (r *Relay) Restore() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = false
}

// track registers c (and reports false when the relay is cut) or, with add false, forgets it.
func (r *Relay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !add {
		delete(r.conns, c)
		return true
	}
	if r.down {
		return false
	}
	r.conns[c] = true
	return true
}

// ForwardRelay is Forward, returning the Relay so the test can cut it.
func (n *NS) ForwardRelay(addr, target string) *Relay {
	n.t.Helper()
	r := &Relay{conns: map[net.Conn]bool{}}
	var l net.Listener
	if err := n.Do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		n.t.Fatalf("listening on %s in %s: %v", addr, n.Name, err)
	}
	n.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go relay(r, c, target)
		}
	}()
	return r
}

func relay(r *Relay, c net.Conn, target string) {
	defer c.Close()
	if !r.track(c, true) {
		return
	}
	defer r.track(c, false)
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}
