package lab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The faults a soak injects into a running lab (agent nodes): each is what happens to a real
// cluster's part, done to the lab's own processes and links only.

// DaemonPID returns the pid of the recorded daemon name ("etcd", "kube-apiserver",
// "speaker-node1", ...) if it still runs.
func (l *Lab) DaemonPID(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(l.State, "pids", name+".pid"))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !l.isOurs(pid) {
		return 0, fmt.Errorf("%s: not running (pid file says %q)", name, b)
	}
	return pid, nil
}

// SignalDaemon sends sig to the recorded daemon name: SIGSTOP and SIGCONT pause and resume it,
// as a frozen VM or a stalled disk would.
func (l *Lab) SignalDaemon(name string, sig syscall.Signal) error {
	pid, err := l.DaemonPID(name)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("%s (pid %d): %w", name, pid, err)
	}
	return nil
}

// KillEtcd SIGKILLs etcd; StartEtcd brings it back on the same data.
func (l *Lab) KillEtcd() error { return l.killDaemon("etcd") }

// StartEtcd starts etcd again after KillEtcd.
func (l *Lab) StartEtcd() error { return l.startEtcd() }

// StopRouter stops FRR (SIGTERM, as its init scripts do); StartRouter starts it again with the
// lab's configuration, and the nodes' sessions come back as they retry.
func (l *Lab) StopRouter() { l.stopRouter() }

// StartRouter starts FRR after StopRouter.
func (l *Lab) StartRouter() error { return l.startRouter() }

// SetNodeLink takes node n's port on the LAN bridge down or up: the node is cut off the LAN
// (and from the router, the control plane and its peers) as by a pulled cable, and its side
// of the link loses carrier.
func (l *Lab) SetNodeLink(n Node, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := run(l.LAN(), "ip", "link", "set", fmt.Sprintf("pn%d", n.Index), state)
	return err
}

// DaemonRSS returns the resident memory of the recorded daemon name, in bytes.
func (l *Lab) DaemonRSS(name string) (int64, error) {
	pid, err := l.DaemonPID(name)
	if err != nil {
		return 0, err
	}
	return RSS(pid)
}

// RSS reads VmRSS from /proc/<pid>/status.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("pid %d: VmRSS %q", pid, v)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in its status", pid)
}

// ProgramPID returns the pid of the program the recorded daemon name runs: the daemon's own,
// or, for a daemon under a babysitter, the babysitter's child of the moment.
func (l *Lab) ProgramPID(name string) (int, error) {
	pid, err := l.DaemonPID(name)
	if err != nil {
		return 0, err
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if !strings.HasSuffix(exe, "sh") {
		return pid, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	for _, f := range strings.Fields(string(b)) {
		child, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		// Between two runs the babysitter's child is `sleep`.
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", child)); err == nil && !strings.HasSuffix(exe, "/sleep") {
			return child, nil
		}
	}
	return 0, fmt.Errorf("%s: its babysitter (pid %d) runs no program now", name, pid)
}

// ControllerLeader returns the controller replica that holds the Lease (ControllerReplicas >
// 1) and its program's pid. The replicas share one host name, so the Lease's holder names no
// replica: the leader is the one whose log says it acquired the Lease since it last started.
func (l *Lab) ControllerLeader() (string, int, error) {
	for i := 1; i <= l.ControllerReplicas; i++ {
		name := ControllerName(i)
		b, err := os.ReadFile(l.logPath(name))
		if err != nil {
			continue
		}
		log := strings.ToLower(string(b))
		if k := strings.LastIndex(log, "babysitter: "); k >= 0 {
			log = log[k:]
		}
		if !strings.Contains(log, "successfully acquired lease") {
			continue
		}
		pid, err := l.ProgramPID(name)
		if err != nil {
			return "", 0, err
		}
		return name, pid, nil
	}
	return "", 0, fmt.Errorf("none of %d controller replicas leads", l.ControllerReplicas)
}

// KillControllerLeader SIGKILLs the leading controller replica's program, as a crash would;
// its babysitter starts it again two seconds later (as a standby: the other replica takes the
// Lease once it runs out). It returns the replica's name.
func (l *Lab) KillControllerLeader() (string, error) {
	name, pid, err := l.ControllerLeader()
	if err != nil {
		return "", err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return "", fmt.Errorf("%s (pid %d): %w", name, pid, err)
	}
	return name, waitUntil(10*time.Second, func() error {
		if syscall.Kill(pid, 0) == nil {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st), ") Z ") {
				return fmt.Errorf("%s (pid %d) still runs", name, pid)
			}
		}
		return nil
	})
}
