package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// containerd is Debian's containerd started for one test with its own root, state and socket
// in a temporary directory: nothing of it lands in /var/lib/containerd, and its sockets,
// shims and runc state are found by that directory when it is torn down. (containerd 1.6's
// shims still put a hash-named socket under /run/containerd/s; the hash is of our address, and
// the shim removes it when it exits.)
type containerd struct {
	t      *testing.T
	dir    string
	sock   string
	cgroup string // cgroup parent of the test's containers, per hierarchy under /sys/fs/cgroup
	cmd    *exec.Cmd
	done   chan error
}

func startContainerd(t *testing.T) *containerd {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("containerd tests run as root (they mount overlays and create cgroups)")
	}
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: run `make packages` (Debian's containerd and runc): %v", bin, err)
		}
	}
	// Short: the socket path must fit a sockaddr_un.
	dir, err := os.MkdirTemp("", "flctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{t: t, dir: dir, sock: filepath.Join(dir, "containerd.sock"), cgroup: "fairlead-images-" + filepath.Base(dir), done: make(chan error, 1)}
	t.Cleanup(c.teardown)
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
# The CRI plugin is kubelet's; ctr needs only the core. opt would install into /opt/containerd.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command("containerd", "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	// If the test binary dies, containerd goes with it; the next run's teardown cannot find
	// a directory it did not create, so this is the only guard against a crash.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	logf.Close()
	go func() { c.done <- c.cmd.Wait() }()
	kit.Eventually(t, 30*time.Second, "containerd to answer on "+c.sock, func(context.Context) error {
		_, err := c.ctrOutput("version")
		if err == nil {
			return nil
		}
		select {
		case exit := <-c.done:
			c.done <- exit
			t.Fatalf("containerd exited: %v\n%s", exit, c.log())
		default:
		}
		return fmt.Errorf("%v\n%s", err, c.log())
	})
	return c
}

func (c *containerd) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ctr runs ctr against this containerd in namespace k8s.io.
func (c *containerd) ctr(args ...string) *exec.Cmd {
	return exec.Command("ctr", append([]string{"--address", c.sock, "-n", Namespace}, args...)...)
}

func (c *containerd) ctrOutput(args ...string) (string, error) {
	out, err := c.ctr(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// runArgs are the flags that keep a container's runtime state in the test's directory and its
// cgroup under the test's own parent.
func (c *containerd) runArgs(id string) []string {
	return []string{"run", "--runc-root", filepath.Join(c.dir, "runc"), "--fifo-dir", filepath.Join(c.dir, "fifo"),
		"--cgroup", "/" + c.cgroup + "/" + id}
}

// taskStatus is the STATUS column of `ctr task ls` for id, "" when there is no such task.
func (c *containerd) taskStatus(id string) string {
	out, err := c.ctrOutput("task", "ls")
	if err != nil {
		c.t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// teardown stops every task and the daemon, then removes what they left: shims, mounts,
// cgroups and the directory. It runs on failure too (t.Cleanup) and reports leftovers.
func (c *containerd) teardown() {
	if c.cmd != nil && c.cmd.Process != nil {
		if out, err := c.ctrOutput("task", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				c.ctr("task", "kill", "-s", "SIGKILL", id).Run()
				for i := 0; i < 50 && c.ctr("task", "delete", id).Run() != nil; i++ {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
		if out, err := c.ctrOutput("containers", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				c.ctr("containers", "delete", id).Run()
			}
		}
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
	// Shims reparent themselves away from containerd; they are ours when their command line
	// names our socket.
	for _, pid := range pidsMentioning(c.dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, m := range mountsUnder(c.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			c.t.Errorf("unmount %s: %v", m, err)
		}
	}
	removeCgroups(c.t, c.cgroup)
	if err := os.RemoveAll(c.dir); err != nil {
		c.t.Errorf("remove %s: %v", c.dir, err)
	}
}

func pidsMentioning(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroups removes the test's cgroup parent (and anything runc left in it) from every
// hierarchy, cgroup v1 or v2.
func removeCgroups(t *testing.T, name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if fi, err := os.Stat("/sys/fs/cgroup/" + name); err == nil && fi.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+name)
	}
	for _, root := range roots {
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove cgroup %s: %v", dirs[i], err)
			}
		}
	}
}

// importAndCheck imports tarball and checks containerd lists it under ref.
func (c *containerd) importAndCheck(ctx context.Context, tarball, ref string) {
	c.t.Helper()
	if err := Import(ctx, c.sock, tarball); err != nil {
		c.t.Fatal(err)
	}
	out, err := c.ctrOutput("images", "ls", "-q")
	if err != nil {
		c.t.Fatal(err)
	}
	if !containsLine(out, ref) {
		c.t.Fatalf("after importing %s, containerd lists images %q, not %s", tarball, strings.Fields(out), ref)
	}
}

func containsLine(out, want string) bool {
	for _, l := range strings.Fields(out) {
		if l == want {
			return true
		}
	}
	return false
}
