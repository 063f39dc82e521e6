package lab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
