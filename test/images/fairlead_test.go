package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/fairlead-lb/fairlead/test/kit"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// fairleadBins builds the static binaries once per test binary.
func fairleadBins(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "fairlead-bins-")
		if binErr == nil {
			binErr = BuildFairleadBinaries(context.Background(), binDir)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// run starts image's cmd in a fresh container and returns its output; the container is
// removed when it exits.
func (c *containerd) run(id, ref string, cmd ...string) (string, error) {
	args := append(append(append([]string{"--address", c.sock, "-n", Namespace}, c.runArgs(id)...), "--rm", ref, id), cmd...)
	out, err := exec.Command("ctr", args...).CombinedOutput()
	return string(out), err
}

func TestFairleadImage(t *testing.T) {
	ctx := context.Background()
	bins := fairleadBins(t)
	tarball, err := Fairlead(ctx, bins)
	if err != nil {
		t.Fatal(err)
	}

	// Reproducible: the same inputs assembled again give the same bytes.
	root, _, err := debianRoot(ctx, fairleadPackages...)
	if err != nil {
		t.Fatal(err)
	}
	var sums [][32]byte
	for i := 0; i < 2; i++ {
		var buf bytes.Buffer
		if err := buildFairlead(ctx, &buf, FairleadRef, bins, root); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sha256.Sum256(buf.Bytes()))
	}
	if sums[0] != sums[1] || sums[0] != fileSum(t, tarball) {
		t.Fatalf("three assemblies of the Fairlead image differ: %x %x %x", sums[0], sums[1], fileSum(t, tarball))
	}

	a := readArchive(t, tarball)
	if len(a.manifest[0].Layers) != 2 {
		t.Fatalf("%d layers, want 2 (Debian base, binaries)", len(a.manifest[0].Layers))
	}
	hdrs, data := a.layer(t, 0)
	for _, p := range []string{"usr/sbin/nft", "usr/sbin/conntrack", "etc/passwd", "etc/group", "tmp/"} {
		if hdrs[p] == nil {
			t.Errorf("base layer lacks %s", p)
		}
	}
	if !strings.Contains(string(data["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no user 65532:\n%s", data["etc/passwd"])
	}
	for p := range hdrs {
		if under(strings.TrimSuffix(p, "/"), "usr/share/doc") {
			t.Errorf("base layer carries documentation: %s", p)
			break
		}
	}

	c := startContainerd(t)
	c.importAndCheck(ctx, tarball, FairleadRef)
	// Each program runs as the image's default user (65532): a missing library or loader
	// fails here, not in a Pod.
	for i, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"nft", "--version"}, "nftables v"},
		{[]string{"conntrack", "--version"}, "conntrack v"},
		{[]string{"/fairlead-controller", "--help"}, "-leader-elect"},
		{[]string{"/fairlead-speaker", "--help"}, "-node-name"},
	} {
		out, err := c.run("fairlead-"+string(rune('a'+i)), FairleadRef, tc.cmd...)
		if err != nil && !strings.Contains(out, tc.want) {
			t.Errorf("%s in the image: %v\n%s", strings.Join(tc.cmd, " "), err, out)
			continue
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s in the image printed %q, want it to contain %q", strings.Join(tc.cmd, " "), out, tc.want)
		}
	}
}

func TestMain(m *testing.M) {
	if kit.Short() {
		kit.SkipPackage("images built from our binaries and Debian's packages, and containerd as root")
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
