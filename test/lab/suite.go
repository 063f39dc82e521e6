package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// Suite runs a test binary's tests on a lab of their own, named after the suite: namespaces
// fl<Name>-<pid>-*, state in /run/fairlead-<Name>-<pid>, its own relay port, so a user's
// `make lab` (fl-*, /run/fairlead-lab), and other suites, go on undisturbed beside it.
//
// The test binary runs twice: the first process builds the binaries, brings the lab up, runs
// the tests in a child process and takes the lab down whatever happened to the child (a
// failure, a panic, a timeout, a signal), so the machine is left clean.
type Suite struct {
	Name     string
	NodeMode NodeMode
	// K8s are the Kubernetes binaries the suite needs (build-control-plane.sh's WANT).
	K8s string
	// Static builds the binaries without cgo, as images need them.
	Static bool
	// ControllerReplicas is the lab's (Lab.ControllerReplicas).
	ControllerReplicas int
	// Ready runs in the first process once the lab is up, before the tests.
	Ready func(ctx context.Context, l *Lab) error
}

// suiteEnv carries the lab's description (JSON) to the child process that runs the tests.
const suiteEnv = "FAIRLEAD_SUITE_LAB"

func (s Suite) prefix() string { return "fl" + s.Name + "-%d-" }
func (s Suite) state() string  { return "/run/fairlead-" + s.Name + "-%d" }

// Main is a suite's TestMain: in the first process it returns the exit code of the child that
// ran the tests; in the child, it calls connect with the lab, then runs the tests.
func (s Suite) Main(m *testing.M, connect func(*Lab) error) int {
	if desc := os.Getenv(suiteEnv); desc != "" {
		l := &Lab{}
		if err := json.Unmarshal([]byte(desc), l); err != nil {
			fmt.Fprintln(os.Stderr, s.Name+": bad", suiteEnv, err)
			return 1
		}
		if err := connect(l); err != nil {
			fmt.Fprintln(os.Stderr, s.Name+":", err)
			return 1
		}
		return m.Run()
	}
	if kit.Short() {
		kit.SkipPackage("a lab of its own")
	}
	return s.parent()
}

func (s Suite) parent() (code int) {
	fail := func(args ...any) int {
		fmt.Fprintln(os.Stderr, append([]any{s.Name + ":"}, args...)...)
		return 1
	}
	if os.Geteuid() != 0 {
		// Not a skip: the suite is part of `make test`, which runs as root.
		return fail("the lab creates network namespaces: run as root")
	}
	start := time.Now()
	root := RepoRoot()
	tmp, err := os.MkdirTemp("", "fairlead-"+s.Name+"-bin-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	s.removeStale()
	l := &Lab{Prefix: fmt.Sprintf(s.prefix(), os.Getpid()), State: fmt.Sprintf(s.state(), os.Getpid()),
		Bin: tmp, CRDs: filepath.Join(root, "charts/fairlead/crds"), NodeMode: s.NodeMode,
		ControllerReplicas: s.ControllerReplicas}
	if l.K8sBin, err = K8sBin(root, s.K8s); err != nil {
		return fail(err)
	}
	// fairleadctl for the suites' `fairleadctl status` and the image; fairlead-lab is the lab's
	// own daemons (relay, agents, Prometheus' discovery).
	pkgs := []string{"./cmd/fairlead-controller", "./cmd/fairlead-speaker", "./cmd/fairleadctl", "./test/lab/cmd/fairlead-lab", "./test/echo"}
	if s.NodeMode == KubeletNodes {
		pkgs = append(pkgs, "./cmd/fairlead-ccm") // the image holds it
	}
	// Built once per source for every suite and worktree; the lab finds them in its Bin.
	for _, pkg := range pkgs {
		bin, err := kit.Build(pkg, kit.BuildOptions{Small: true, Static: s.Static})
		if err != nil {
			return fail(err)
		}
		if err := os.Symlink(bin, filepath.Join(tmp, filepath.Base(pkg))); err != nil {
			return fail(err)
		}
	}
	if l.HostPort, err = freePort(); err != nil {
		return fail(err)
	}
	if l.PrometheusPort, err = freePort(); err != nil {
		return fail(err)
	}

	// A signal stops the lab's bring-up or the child, then the lab comes down as usual.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var child *exec.Cmd
	childStarted := make(chan struct{})
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "%s: %v: stopping, then taking the lab down\n", s.Name, sig)
		cancel()
		select {
		case <-childStarted:
			_ = child.Process.Signal(sig)
		default:
		}
	}()
	// `lab down` must leave nothing behind: checked after every suite, whatever its result.
	host, _ := SnapshotHost()
	if len(l.otherHostRecords()) > 0 {
		// Another suite's kubelets have the host's sysctls changed now: what this one would
		// record as before is theirs, restored when they end, not a leftover of this lab.
		host = nil
	}
	defer func() {
		t := time.Now()
		if err := l.Down(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: taking the lab down: %v\n", s.Name, err)
			code = 1
		}
		if left := l.Leftovers(host); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "%s: the lab left behind:\n  %s\n", s.Name, strings.Join(left, "\n  "))
			code = 1
		}
		fmt.Printf("%s: lab down in %s; whole suite %s\n", s.Name, time.Since(t).Round(time.Millisecond), time.Since(start).Round(time.Second))
	}()

	var out strings.Builder
	l.Out = &out
	t := time.Now()
	if err := l.Up(ctx); err != nil {
		DumpLogs(l)
		return fail(fmt.Sprintf("lab up failed: %v\n%s", err, out.String()))
	}
	if s.Ready != nil {
		if err := s.Ready(ctx, l); err != nil {
			return fail(err)
		}
	}
	fmt.Printf("%s: lab up in %s\n", s.Name, time.Since(t).Round(time.Millisecond))
	l.Out = nil

	desc, _ := json.Marshal(l)
	child = exec.Command(os.Args[0], os.Args[1:]...)
	child.Env = append(os.Environ(), suiteEnv+"="+string(desc))
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := child.Start(); err != nil {
		return fail("starting the tests:", err)
	}
	close(childStarted)
	err = child.Wait()
	code = child.ProcessState.ExitCode()
	if err != nil && code == 0 {
		code = 1
	}
	if code != 0 {
		DumpLogs(l)
	}
	return code
}

// removeStale takes down the suite's labs of earlier runs that could not do it themselves
// (SIGKILLed): those whose process is gone.
func (s Suite) removeStale() {
	dirs, _ := filepath.Glob(strings.Replace(s.state(), "%d", "*", 1))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d, s.state(), &pid); err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue
		}
		fmt.Fprintf(os.Stderr, "%s: removing the lab of an earlier run (pid %d)\n", s.Name, pid)
		if err := (&Lab{Prefix: fmt.Sprintf(s.prefix(), pid), State: d}).Down(); err != nil {
			fmt.Fprintln(os.Stderr, s.Name+":", err)
		}
	}
}

// DumpLogs prints the end of every lab daemon's log: the lab's state directory (with the
// logs) goes away with the lab.
func DumpLogs(l *Lab) {
	files, _ := filepath.Glob(filepath.Join(l.State, "logs", "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		fmt.Fprintf(os.Stderr, "\n--- %s (last %d lines)\n%s\n", filepath.Base(f), min(len(lines), 25),
			strings.Join(lines[max(0, len(lines)-25):], "\n"))
	}
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// K8sBin returns the directory with the Kubernetes binaries in want, building any that is
// missing (make's control-plane step has usually built the control plane's already).
func K8sBin(root, want string) (string, error) {
	args := []string{filepath.Join(root, "test/tools/build-control-plane.sh")}
	if d := os.Getenv("FAIRLEAD_K8S_BIN"); d != "" {
		args = append(args, d)
	}
	cmd := exec.Command("bash", args...)
	cmd.Env = append(os.Environ(), "WANT="+want)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building %s: %w", want, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// freePort finds a port on the host's 127.0.0.1 for the lab's relay.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// LANKubeconfig is an admin kubeconfig that reaches the apiserver over the LAN, from any of the
// lab's namespaces on it (the clients, the nodes).
func (l *Lab) LANKubeconfig() string { return filepath.Join(l.State, "pki", "node.kubeconfig") }
