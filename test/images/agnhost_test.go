package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// exec runs cmd in task id and returns its output.
func (c *containerd) exec(id, execID string, cmd ...string) (string, error) {
	return c.ctrOutput(append([]string{"task", "exec", "--fifo-dir", filepath.Join(c.dir, "fifo"), "--exec-id", execID, id}, cmd...)...)
}

// taskPid is the host PID of task id's init process.
func (c *containerd) taskPid(id string) string {
	c.t.Helper()
	ps, err := c.ctrOutput("task", "ps", id)
	if err != nil {
		c.t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(ps), "\n")
	if len(lines) < 2 {
		c.t.Fatalf("task %s has no process:\n%s", id, ps)
	}
	return strings.Fields(lines[1])[0]
}

func TestAgnhostServesInItsOwnNetns(t *testing.T) {
	ctx := context.Background()
	tarball, err := Agnhost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := startContainerd(t)
	c.importAndCheck(ctx, tarball, AgnhostRef)

	// agnhost netexec in the container's own network namespace (ctr gives it one with only
	// loopback): nothing it serves is reachable from the host's network.
	const id = "agnhost-test"
	args := append(c.runArgs(id), "-d", "--log-uri", "file://"+filepath.Join(c.dir, id+".log"), AgnhostRef, id, "/agnhost", "netexec", "--http-port", "8080")
	if _, err := c.ctrOutput(args...); err != nil {
		t.Fatal(err)
	}
	pid := c.taskPid(id)
	hostNS, _ := os.Readlink("/proc/self/ns/net")
	if ns, err := os.Readlink(filepath.Join("/proc", pid, "ns/net")); err != nil || ns == hostNS {
		t.Fatalf("agnhost's network namespace is %q (err %v), the test's is %q: want its own", ns, err, hostNS)
	}

	// The tools the e2e suite execs in agnhost Pods are there.
	out, err := c.exec(id, "tools", "sh", "-c", "for t in sh bash curl nc wget ss ip dig nslookup socat; do command -v $t >/dev/null || echo missing $t; done")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("tools in the agnhost image: %v %s", err, out)
	}
	// wget tries once, as busybox's on upstream's Alpine: `wget -T 1` to an address that
	// drops packets gives up after about a second, not after 20 tries (routed to loopback, a
	// foreign address's packets are dropped: the container does not forward).
	if out, err := exec.Command("nsenter", "-t", pid, "-n", "ip", "route", "add", "203.0.113.9/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("routing 203.0.113.9 to the container's loopback: %v %s", err, out)
	}
	if out, err := c.exec(id, "wget", "sh", "-c", "s=$(date +%s); wget -T 1 -qO- http://203.0.113.9/ 2>&1; echo rc=$? took=$(( $(date +%s) - s ))"); err != nil || !strings.Contains(out, "rc=4") || !(strings.Contains(out, "took=1") || strings.Contains(out, "took=2")) {
		t.Errorf("wget -T 1 to an unreachable address: %v %s; want a failure (rc 4) within about a second", err, out)
	}

	// netexec answers curl from inside the container, over its loopback.
	var body string
	tries := 0
	kit.Eventually(t, 30*time.Second, "netexec to answer curl inside the container", func(context.Context) (err error) {
		tries++
		if body, err = c.exec(id, fmt.Sprintf("curl-%d", tries), "curl", "-sS", "-m", "2", "http://127.0.0.1:8080/echo?msg=fairlead"); err != nil {
			log, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
			return fmt.Errorf("%v\nagnhost log:\n%s", err, log)
		}
		return nil
	})
	if strings.TrimSpace(body) != "fairlead" {
		t.Errorf("netexec /echo?msg=fairlead answered %q", body)
	}
	out, err = c.exec(id, "ss", "ss", "-ltn")
	if err != nil || !strings.Contains(out, ":8080") {
		t.Errorf("ss -ltn in the container: %v\n%s", err, out)
	}
}
