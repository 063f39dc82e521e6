package lab

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// What `lab down` sweeps after a kubelet lab, whether it stopped cleanly or crashed: the
// processes of its Pods (in the nodes' cgroup roots, not in the nodes' namespaces), the mounts
// under its state directory (containerd's snapshots and sandboxes, kubelet's volumes, the Pods'
// network namespaces), the cgroup roots in every hierarchy, and the files containerd's shims
// and the CNI library leave in fixed places.

// cgroupRoot is node n's cgroup root: kubelet puts every Pod under it, in every hierarchy.
func (l *Lab) cgroupRoot(n Node) string { return "/" + n.NS }

// cgroupMounts lists the mount points of the host's cgroup hierarchies (v1 and v2).
func cgroupMounts() ([]string, error) {
	var out []string
	err := eachMount(func(mountPoint, fsType string) {
		if fsType == "cgroup" || fsType == "cgroup2" {
			out = append(out, mountPoint)
		}
	})
	return out, err
}

// eachMount calls f for every line of this process's mountinfo.
func eachMount(f func(mountPoint, fsType string)) error {
	file, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer file.Close()
	s := bufio.NewScanner(file)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(s.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		f(unescapeMountPath(fields[4]), fields[sep+1])
	}
	return s.Err()
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountPath(p string) string {
	if !strings.Contains(p, `\`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+3 < len(p) {
			if v, err := strconv.ParseUint(p[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// makeCgroupRoot creates root in every v1 hierarchy (kubelet refuses a cgroupRoot that does
// not exist). A new cpuset cgroup starts with no CPUs and no memory nodes: it gets its
// parent's.
func makeCgroupRoot(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		dir := filepath.Join(m, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(m, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
				return fmt.Errorf("setting %s of %s: %w", f, dir, err)
			}
		}
	}
	return nil
}

// killCgroupRoot SIGKILLs every process in root's subtree, in every hierarchy, until none is
// left, then removes the subtree, deepest first.
func killCgroupRoot(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		top := filepath.Join(m, root)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		err := waitUntil(15*time.Second, func() error {
			pids := cgroupPids(top)
			for _, pid := range pids {
				if pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if len(pids) > 0 {
				return fmt.Errorf("cgroup %s still holds pids %v", top, pids)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		for _, d := range dirs {
			// A cgroup whose last process just died can be busy for a moment.
			err := waitUntil(5*time.Second, func() error {
				if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				return nil
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cgroupPids lists the processes in cgroup dir and below.
func cgroupPids(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// unmountUnder unmounts everything mounted at or below dir, deepest (and latest) first.
func unmountUnder(dir string) error {
	dir = filepath.Clean(dir)
	for range 10 { // mounts stacked on one point need several rounds
		var points []string
		if err := eachMount(func(mp, _ string) {
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				points = append(points, mp)
			}
		}); err != nil {
			return err
		}
		if len(points) == 0 {
			return nil
		}
		slices.Reverse(points)
		for _, p := range points {
			if err := unix.Unmount(p, 0); err != nil {
				_ = unix.Unmount(p, unix.MNT_DETACH)
			}
		}
	}
	return fmt.Errorf("mounts left under %s", dir)
}

// MountsUnder lists the mount points at or below dir (for tests).
func MountsUnder(dir string) []string {
	var out []string
	_ = eachMount(func(mp, _ string) {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	})
	return out
}

// removeShimSockets removes the sockets of node n's containerd shims that a crash left in
// containerd 1.6's fixed directory: it names them by a hash of containerd's address, the
// namespace and the task ID.
func (l *Lab) removeShimSockets(n Node) {
	addr := l.containerdSocket(n)
	tasks, _ := os.ReadDir(filepath.Join(l.containerdState(n), "io.containerd.runtime.v2.task", "k8s.io"))
	for _, t := range tasks {
		sum := sha256.Sum256([]byte(filepath.Join(addr, "k8s.io", t.Name())))
		_ = os.Remove(fmt.Sprintf("/run/containerd/s/%x", sum))
	}
}

// removeCNIResults removes the CNI library's cached results for node n's Pod sandboxes (kept
// in /var/lib/cni/results whatever the runtime's configuration): its network's,
// <network>-<sandbox>-eth0, and containerd's loopback's, cni-loopback-<sandbox>-lo.
func (l *Lab) removeCNIResults(n Node) {
	prefix := l.cniNetwork(n) + "-"
	files, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", prefix+"*"))
	for _, f := range files {
		if sandbox, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(f), prefix), "-"); ok {
			_ = os.Remove(filepath.Join("/var/lib/cni/results", "cni-loopback-"+sandbox+"-lo"))
		}
		_ = os.Remove(f)
	}
}

// removeLogLinks removes the links kubelet made in /var/log/containers to node n's Pod logs.
func (l *Lab) removeLogLinks(n Node) {
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, link := range links {
		if target, err := os.Readlink(link); err == nil && strings.HasPrefix(target, l.nodeDir(n)+"/") {
			_ = os.Remove(link)
		}
	}
}

// sweepNodes removes what the kubelet nodes of the lab left outside their processes.
func (l *Lab) sweepNodes() []error {
	var errs []error
	for _, n := range l.Nodes() {
		if err := killCgroupRoot(l.cgroupRoot(n)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(l.State); err == nil {
		if err := unmountUnder(l.State); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range l.Nodes() {
		l.removeShimSockets(n)
		l.removeCNIResults(n)
		l.removeLogLinks(n)
	}
	return errs
}
