// Package e2e runs Fairlead's end-to-end scenarios on a lab of its own (test/lab): the real
// control plane, three node namespaces running fairlead-speaker (layer 2, BGP, proxy) and lab
// agents, an FRR router with a client behind it and a client on the nodes' LAN. Every test
// asserts what the clients get over the wire and what the kernels and the router hold.
//
// The lab's namespaces are named fle2e-<pid>-* and its state is in /run/fairlead-e2e-<pid>,
// with its own relay port, so a user's `make lab` (fl-*, /run/fairlead-lab), and another run
// of this suite, go on undisturbed beside it.
//
// The test binary runs twice: the first process builds the binaries, brings the lab up, runs
// the tests in a child process and takes the lab down whatever happened to the child (a
// failure, a panic, a timeout, a signal), so the machine is left clean.
package e2e

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

	"github.com/fairlead-lb/fairlead/test/lab"
)

const (
	labPrefix = "fle2e-%d-"            // with the pid of the process that brings the lab up
	labState  = "/run/fairlead-e2e-%d" // likewise
	// childEnv carries the lab's description (JSON) to the child process that runs the tests.
	childEnv = "FAIRLEAD_E2E_LAB"
)

// The lab every test uses (set in the child).
var theLab *lab.Lab

func TestMain(m *testing.M) {
	if desc := os.Getenv(childEnv); desc != "" {
		theLab = &lab.Lab{}
		if err := json.Unmarshal([]byte(desc), theLab); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: bad", childEnv, err)
			os.Exit(1)
		}
		if err := connect(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	os.Exit(parent())
}

// parent brings the lab up, runs the tests in a child and takes the lab down.
func parent() int {
	if os.Geteuid() != 0 {
		// Not a skip: the suite is part of `make test`, which runs as root.
		fmt.Fprintln(os.Stderr, "e2e: the lab creates network namespaces: run as root")
		return 1
	}
	start := time.Now()
	root := repoRoot()
	tmp, err := os.MkdirTemp("", "fairlead-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	removeStaleLabs()
	// Lab agents, not kubelets: the scenarios are about Fairlead, and agents come up in seconds
	// (and are killed and restarted by the failover test).
	l := &lab.Lab{Prefix: fmt.Sprintf(labPrefix, os.Getpid()), State: fmt.Sprintf(labState, os.Getpid()),
		Bin: tmp, CRDs: filepath.Join(root, "charts/fairlead/crds"), NodeMode: lab.AgentNodes}
	if l.K8sBin, err = k8sBin(root); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// Without symbol tables the four links take a good part less time on a busy machine.
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", tmp+"/", "./cmd/fairlead-controller", "./cmd/fairlead-speaker",
		"./cmd/fairleadctl", "./test/echo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the binaries: %v\n%s", err, out)
		return 1
	}
	if l.HostPort, err = freePort(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}

	// A signal stops the lab's bring-up or the child, then the lab comes down as usual.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var child *exec.Cmd
	childStarted := make(chan struct{})
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "e2e: %v: stopping, then taking the lab down\n", s)
		cancel()
		select {
		case <-childStarted:
			_ = child.Process.Signal(s)
		default:
		}
	}()
	defer func() {
		t := time.Now()
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: taking the lab down:", err)
		}
		fmt.Printf("e2e: lab down in %s; whole suite %s\n", time.Since(t).Round(time.Millisecond), time.Since(start).Round(time.Second))
	}()

	var out strings.Builder
	l.Out = &out
	t := time.Now()
	if err := l.Up(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: lab up failed: %v\n%s", err, out.String())
		dumpLogs(l)
		return 1
	}
	fmt.Printf("e2e: lab up in %s\n", time.Since(t).Round(time.Millisecond))
	l.Out = nil

	desc, _ := json.Marshal(l)
	child = exec.Command(os.Args[0], os.Args[1:]...)
	child.Env = append(os.Environ(), childEnv+"="+string(desc))
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the tests:", err)
		return 1
	}
	close(childStarted)
	err = child.Wait()
	code := child.ProcessState.ExitCode()
	if err != nil && code == 0 {
		code = 1
	}
	if code != 0 {
		dumpLogs(l)
	}
	return code
}

// removeStaleLabs takes down the labs of earlier runs that could not do it themselves
// (SIGKILLed): those whose process is gone.
func removeStaleLabs() {
	dirs, _ := filepath.Glob(strings.Replace(labState, "%d", "*", 1))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d, labState, &pid); err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue
		}
		fmt.Fprintf(os.Stderr, "e2e: removing the lab of an earlier run (pid %d)\n", pid)
		if err := (&lab.Lab{Prefix: fmt.Sprintf(labPrefix, pid), State: d}).Down(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
		}
	}
}

// dumpLogs prints the end of every lab daemon's log: the lab's state directory (with the
// logs) goes away with the lab.
func dumpLogs(l *lab.Lab) {
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

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// k8sBin returns the directory with the control plane's binaries, building any that is
// missing (make's control-plane step has usually built them already).
func k8sBin(root string) (string, error) {
	args := []string{filepath.Join(root, "test/tools/build-control-plane.sh")}
	if d := os.Getenv("FAIRLEAD_K8S_BIN"); d != "" {
		args = append(args, d)
	}
	cmd := exec.Command("bash", args...)
	cmd.Env = append(os.Environ(), "WANT=kube-apiserver etcd kube-controller-manager kubectl")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the control plane: %w", err)
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
