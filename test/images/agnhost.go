package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// AgnhostRef is the image kubernetes v1.37.2's e2e manifest (test/utils/image/manifest.go)
// names for agnhost; its pods run the Services tests' servers and clients.
const AgnhostRef = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"

// K8sVersion is the Kubernetes release agnhost is built from, by
// test/tools/build-control-plane.sh.
const K8sVersion = "1.37.2"

// Agnhost builds (or takes from the cache) the agnhost image tarball and returns its path:
// agnhost built from k8s.io/kubernetes/test/images/agnhost at K8sVersion (by
// test/tools/build-control-plane.sh with WANT=agnhost, into $FAIRLEAD_K8S_BIN or the cache) on
// a Debian minbase root with the tools the suite execs (agnhostPackages). Like the upstream
// image its entrypoint is /agnhost and its default arguments `pause`. Needs root (debootstrap).
func Agnhost(ctx context.Context) (string, error) {
	bin, err := k8sTestBinary(ctx, "agnhost")
	if err != nil {
		return "", err
	}
	sum, err := fileSHA256(bin)
	if err != nil {
		return "", err
	}
	root, baseKey, err := minbase(ctx, agnhostPackages)
	if err != nil {
		return "", err
	}
	key := keyOf([]byte("agnhost"), []byte(AgnhostRef), []byte(sum), baseKey)
	return cached(ctx, "agnhost", key, func(ctx context.Context, w io.Writer) error {
		return buildAgnhost(w, bin, root)
	})
}

// agnhostWget makes GNU wget try once, as busybox's wget (upstream's, on Alpine) does: the
// specs' `wget -T 5` must give up after 5 s, where GNU wget retries 20 times, and every "not
// reachable" check would take minutes. (Debian 12's busybox wget crashes on -T.)
const agnhostWget = "#!/bin/sh\nexec /usr/bin/wget --tries=1 \"$@\"\n"

func buildAgnhost(w io.Writer, bin, root string) error {
	work, err := os.MkdirTemp("", "agnhost-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	base := newLayer()
	// A few files of the root are not root's (e.g. /var/mail is group mail): keep them.
	if err := base.tree(root, treeOptions{keepOwners: true}); err != nil {
		return err
	}
	basePath := filepath.Join(work, "base.tar.gz")
	if err := base.writeTo(basePath); err != nil {
		return err
	}
	top := newLayer()
	if err := top.copyFile("agnhost", 0o755, bin); err != nil {
		return err
	}
	// Upstream's image has these too: agnhost-2 is used by tests that need two commands, and
	// /uploads by its test-webserver.
	top.symlink("agnhost-2", "agnhost")
	top.file("usr/local/bin/wget", 0o755, []byte(agnhostWget))
	top.dir("uploads", 0o777)
	topPath := filepath.Join(work, "agnhost.tar.gz")
	if err := top.writeTo(topPath); err != nil {
		return err
	}
	return spec{
		ref: AgnhostRef,
		layers: []layerSpec{
			{path: basePath, createdBy: "fairlead test/images: debootstrap --variant=minbase --include=" + strings.Join(agnhostPackages, ",")},
			{path: topPath, createdBy: "fairlead test/images: agnhost from k8s.io/kubernetes@v" + K8sVersion},
		},
		config: v1.Config{
			Entrypoint: []string{"/agnhost"},
			Cmd:        []string{"pause"},
			Env:        []string{defaultPath},
		},
	}.write(w)
}

// k8sTestBinary returns one of the e2e suite's test programs built from k8s.io/kubernetes
// (agnhost, regression-issue-74839), building it with test/tools/build-control-plane.sh when it
// is not there yet.
func k8sTestBinary(ctx context.Context, name string) (string, error) {
	dir := os.Getenv("FAIRLEAD_K8S_BIN")
	if dir != "" {
		if p := filepath.Join(dir, name); isFile(p) {
			return p, nil
		}
	}
	repo, err := repoRoot()
	if err != nil {
		return "", err
	}
	args := []string{filepath.Join(repo, "test/tools/build-control-plane.sh")}
	if dir != "" {
		args = append(args, dir)
	}
	cmd := exec.CommandContext(ctx, "bash", args...)
	cmd.Env = append(os.Environ(), "WANT="+name, "K8S_VERSION="+K8sVersion)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building %s v%s with %s: %w", name, K8sVersion, args[0], err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), name)
	if !isFile(p) {
		return "", fmt.Errorf("build-control-plane.sh reported %s, which has no %s", strings.TrimSpace(string(out)), name)
	}
	return p, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// repoRoot is the checkout this package was compiled from; with -trimpath, the module of the
// working directory.
func repoRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	if filepath.IsAbs(file) {
		return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")), nil
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("cannot find the fairlead repository (run from inside it)")
	}
	return filepath.Dir(gomod), nil
}
