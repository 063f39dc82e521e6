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
	kit.Eventually(t, 30*time.Second, "echo in its container to answer on 127.0.0.1:8080", func(context.Context) error {
		out, err := exec.Command("nsenter", "--net="+netns, "--", "socat", "-T2", "-", "TCP:127.0.0.1:8080").CombinedOutput()
		if err != nil || !strings.Contains(string(out), " 127.0.0.1:") {
			log, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
			return fmt.Errorf("%v %q\nlog:\n%s", err, out, log)
		}
		return nil
	})
}
