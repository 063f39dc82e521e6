package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// startPause builds this program and starts it as PID 1 of a new PID namespace, the place it
// has in a Pod.
func startPause(t *testing.T) *exec.Cmd {
	t.Helper()
	kit.Heavy(t, "root for a PID namespace")
	if os.Getuid() != 0 {
		t.Fatal("needs root for a PID namespace")
	}
	bin := kit.Binary(t, "./test/images/pause", kit.BuildOptions{})
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Let it install its signal handlers before anything is sent to it.
	time.Sleep(200 * time.Millisecond)
	return cmd
}

func children(pid int) []string {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
	var kids []string
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		kids = append(kids, strings.Fields(string(b))...)
	}
	return kids
}

// An orphan left in the namespace becomes pause's child; when it exits pause must collect it,
// or it stays a zombie for the Pod's lifetime.
func TestReapsOrphans(t *testing.T) {
	p := startPause(t)
	pid := p.Process.Pid
	// sh starts inside the namespace, backgrounds a sleep and exits: the sleep is orphaned to
	// the namespace's init, pause. It sleeps until the test kills it.
	out, err := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--pid", "--", "sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & exit 0").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v\n%s", err, out)
	}
	start := time.Now()
	var kids []string
	kit.Eventually(t, 10*time.Second, "the orphaned sleep to become pause's child", func(context.Context) error {
		if kids = children(pid); len(kids) == 0 {
			return errors.New("pause has no child")
		}
		return nil
	})
	kid, _ := strconv.Atoi(kids[0])
	if err := syscall.Kill(kid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Both waits share the 10 s.
	kit.Eventually(t, 10*time.Second-time.Since(start), fmt.Sprintf("pause to reap its killed child %d", kid), func(context.Context) error {
		if len(children(pid)) > 0 {
			st, _ := os.ReadFile(filepath.Join("/proc", kids[0], "stat"))
			return fmt.Errorf("not reaped: %s", st)
		}
		return nil
	})
}

func TestExitsZeroOnSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		p := startPause(t)
		if err := p.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("after %v pause exited with %v, want status 0", sig, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("pause still running 10s after %v", sig)
		}
	}
}
