package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEchoImageAnswers(t *testing.T) {
	ctx := context.Background()
	bins := t.TempDir()
	if err := BuildEchoBinary(ctx, bins); err != nil {
		t.Fatal(err)
	}
	tarball, err := Echo(ctx, bins)
	if err != nil {
		t.Fatal(err)
	}
	c := startContainerd(t)
	c.importAndCheck(ctx, tarball, EchoRef)

	// The image's own command (`/echo -tcp 8080`), in the container's network namespace.
	const id = "echo-test"
	args := append(c.runArgs(id), "-d", "--log-uri", "file://"+filepath.Join(c.dir, id+".log"), EchoRef, id)
	if _, err := c.ctrOutput(args...); err != nil {
		t.Fatal(err)
	}
	netns := filepath.Join("/proc", c.taskPid(id), "ns/net")
	// The image has no client: the host's socat connects from inside that namespace, to its
	// loopback, so nothing crosses the host's network.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("nsenter", "--net="+netns, "--", "socat", "-T2", "-", "TCP:127.0.0.1:8080").CombinedOutput()
		if err == nil && strings.Contains(string(out), " 127.0.0.1:") {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
			t.Fatalf("echo in its container did not answer on 127.0.0.1:8080: %v %q\nlog:\n%s", err, out, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
