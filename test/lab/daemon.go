package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// daemon starts bin inside namespace ns ("" = the host's) as a detached session leader that
// outlives fairlead-lab, logging to <state>/logs/<name>.log and recording its pid.
func (l *Lab) daemon(ns, name, bin string, args ...string) error {
	return l.startDaemon(ns, name, false, bin, args...)
}

// babysatDaemon is daemon for a program that exits to be restarted, as systemd restarts it on
// a real node: kubelet exits when its container manager fails to start, for one, and the
// lab's kubelets race for the one device-plugin socket path kubelet hard-codes
// (/var/lib/kubelet/device-plugins/kubelet.sock), which the loser gets on its next start.
func (l *Lab) babysatDaemon(ns, name, bin string, args ...string) error {
	return l.startDaemon(ns, name, true, bin, args...)
}

// babysitter reruns "$0" "$@" two seconds after each exit. Its process group holds the
// program, so killing the group stops both.
const babysitter = `while :; do "$0" "$@"; echo "babysitter: $0 exited ($?), restarting in 2s"; sleep 2; done`

func (l *Lab) startDaemon(ns, name string, restart bool, bin string, args ...string) error {
	if restart {
		args = append([]string{"-c", babysitter, bin}, args...)
		bin = "/bin/sh"
	}
	logf, err := os.OpenFile(filepath.Join(l.State, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	var cmd *exec.Cmd
	if ns == "" {
		cmd = exec.Command(bin, args...)
	} else {
		cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "--", bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return os.WriteFile(filepath.Join(l.State, "pids", name+".pid"), []byte(strconv.Itoa(pid)), 0o644)
}

// stopDaemons kills every daemon the lab recorded (those in namespaces die with them anyway;
// this is for the host-side relay).
func (l *Lab) stopDaemons() {
	files, _ := filepath.Glob(filepath.Join(l.State, "pids", "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 && l.isOurs(pid) {
			killGroup(pid)
		}
		_ = os.Remove(f)
	}
}

// isOurs guards against killing a recycled pid: the process must run one of the lab's binaries,
// or (containerd) name a file in the lab's state directory on its command line.
func (l *Lab) isOurs(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	if strings.Contains(exe, "fairlead") || strings.Contains(exe, "k8s-") || strings.HasSuffix(exe, "/nsenter") {
		return true
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && l.State != "" && strings.Contains(string(cmdline), filepath.Clean(l.State)+"/")
}

// killDaemon SIGKILLs the recorded daemon name, if it still runs.
func (l *Lab) killDaemon(name string) error {
	f := filepath.Join(l.State, "pids", name+".pid")
	b, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !l.isOurs(pid) {
		return fmt.Errorf("%s: no such process (pid file says %q)", name, b)
	}
	if err := killGroup(pid); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// Wait until it is gone (a zombie until reaped by init: its exe link is gone then).
	return waitUntil(10*time.Second, func() error {
		if l.isOurs(pid) {
			return fmt.Errorf("%s (pid %d) still runs", name, pid)
		}
		return nil
	})
}

// killGroup SIGKILLs daemon pid and its process group (a daemon leads its own session, so the
// group is the daemon and what it started without a session of its own: a babysitter's
// program, nsenter's child).
func killGroup(pid int) error {
	err := syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return err
}

// daemonAlive reports whether the recorded daemon still runs.
func (l *Lab) daemonAlive(name string) bool {
	b, err := os.ReadFile(filepath.Join(l.State, "pids", name+".pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && syscall.Kill(pid, 0) == nil
}

// DialIn opens a TCP connection from inside namespace ns. The socket keeps its namespace after
// the dialling thread is gone, so the caller (in the host's namespace) can use it freely: this
// is how fairlead-lab and the relay reach the lab's apiserver without any route into the lab.
func DialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// Never unlocked: the runtime then retires this thread instead of reusing it in the lab's
		// namespace for unrelated goroutines.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: fmt.Errorf("entering %s: %w", ns, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
