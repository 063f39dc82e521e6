package images

import (
	"context"
	"strings"
	"testing"
)

// The busybox image runs what the e2e specs give it: a shell, sleep, echo, and the applets by
// their own names.
func TestBusyBoxImageRuns(t *testing.T) {
	ctx := context.Background()
	tarball, err := BusyBox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := startContainerd(t)
	c.importAndCheck(ctx, tarball, BusyBoxRef)
	out, err := c.run("busybox-sh", BusyBoxRef, "/bin/sh", "-c", "echo Pausing start. && sleep 1 && ls /bin/nc /bin/wget >/dev/null && id -u")
	if err != nil || strings.TrimSpace(out) != "Pausing start.\n0" {
		t.Errorf("sh in the busybox image: %v, output %q", err, out)
	}
	if again, err := BusyBox(ctx); err != nil || again != tarball {
		t.Errorf("a second call gave %q, %v; want the cached %q", again, err, tarball)
	}
}

// The conntrack regression server's image runs its program, which wants its Pod's address.
func TestRegression74839ImageRuns(t *testing.T) {
	ctx := context.Background()
	tarball, err := Regression74839(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := startContainerd(t)
	c.importAndCheck(ctx, tarball, Regression74839Ref)
	out, err := c.run("boom", Regression74839Ref)
	if err == nil || !strings.Contains(out, "No valid IP found") {
		t.Errorf("regression-issue-74839 without POD_IP: %v, output %q; want it to refuse for want of an address", err, out)
	}
}

// The distroless-iptables image runs the specs' shell commands and the tools they read the
// node's tables with.
func TestDistrolessIptablesImageRuns(t *testing.T) {
	ctx := context.Background()
	tarball, err := DistrolessIptables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := startContainerd(t)
	c.importAndCheck(ctx, tarball, DistrolessIptablesRef)
	out, err := c.run("distroless-iptables", DistrolessIptablesRef, "sh", "-c", "which conntrack iptables >/dev/null && sleep 0.1 && echo ok | grep -c ok")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("sh -c in the distroless-iptables image: %v, output %q", err, out)
	}
}
