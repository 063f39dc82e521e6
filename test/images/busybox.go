package images

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BusyBoxRef is the image kubernetes v1.37.2's e2e manifest names for busybox; specs run it
// as init containers and short-lived clients.
const BusyBoxRef = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"

// BusyBox builds (or takes from the cache) the busybox image and returns the tarball's path:
// Debian's busybox-static (static, so it needs nothing else) at /bin/busybox with a link per
// applet in /bin, as upstream's image has them. Its default command is sh.
func BusyBox(ctx context.Context) (string, error) {
	root, debKey, err := debianRoot(ctx, "busybox-static")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "busybox")
	out, err := exec.CommandContext(ctx, bin, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("%s --list: %w", bin, err)
	}
	applets := strings.Fields(string(out))
	if len(applets) < 100 {
		return "", fmt.Errorf("%s lists only %d applets", bin, len(applets))
	}
	key := keyOf([]byte("busybox"), []byte(BusyBoxRef), debKey)
	return oneLayer(ctx, "busybox", BusyBoxRef, key, "fairlead test/images: /bin/busybox from Debian's busybox-static, a link per applet",
		v1.Config{Cmd: []string{"sh"}, Env: []string{defaultPath}}, func(l *layer) error {
			if err := l.copyFile("bin/busybox", 0o755, bin); err != nil {
				return err
			}
			for _, a := range applets {
				if a != "busybox" {
					l.symlink("bin/"+a, "busybox")
				}
			}
			l.dir("tmp", 0o1777)
			l.dir("etc", 0o755)
			l.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
			l.file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
			return nil
		})
}

// Regression74839Ref is the image the e2e manifest names for the server of the "invalid
// conntrack state" spec (kubernetes issue 74839), which injects out-of-window TCP segments.
const Regression74839Ref = "registry.k8s.io/e2e-test-images/regression-issue-74839:1.5"

// Regression74839 builds (or takes from the cache) that image: its program built from
// k8s.io/kubernetes/test/images/regression-issue-74839 at K8sVersion, alone, as upstream's.
func Regression74839(ctx context.Context) (string, error) {
	bin, err := k8sTestBinary(ctx, "regression-issue-74839")
	if err != nil {
		return "", err
	}
	return singleBinary(ctx, "regression-issue-74839", Regression74839Ref, bin, []string{"/regression-issue-74839"}, nil,
		"fairlead test/images: regression-issue-74839 from k8s.io/kubernetes@v"+K8sVersion)
}

// DistrolessIptablesRef is the image the e2e manifest names for privileged host-network
// helpers that read the node's conntrack table and iptables.
const DistrolessIptablesRef = "registry.k8s.io/build-image/distroless-iptables:v0.9.9"

// distrolessIptablesPackages: upstream's image has iptables and conntrack on a distroless
// base; the specs exec them, and sh, which, sleep, cat and grep, through `sh -c`.
var distrolessIptablesPackages = []string{"iptables", "conntrack", "dash", "coreutils", "grep", "debianutils"}

// DistrolessIptables builds (or takes from the cache) that image from Debian's packages and
// the closure of their Depends, extracted without maintainer scripts.
func DistrolessIptables(ctx context.Context) (string, error) {
	root, debKey, err := debianRoot(ctx, distrolessIptablesPackages...)
	if err != nil {
		return "", err
	}
	// What maintainer scripts would make (none runs here): dash's /bin/sh, and the
	// alternatives for which and iptables (nft, Debian's default).
	links := [][2]string{{"bin/sh", "dash"}, {"usr/bin/which", "which.debianutils"}}
	for _, t := range []string{"iptables", "ip6tables"} {
		for _, s := range []string{"", "-save", "-restore"} {
			links = append(links, [2]string{"usr/sbin/" + t + s, t + "-nft" + s})
		}
	}
	key := keyOf([]byte("distroless-iptables"), []byte(DistrolessIptablesRef), debKey, []byte(fmt.Sprint(links)))
	return oneLayer(ctx, "distroless-iptables", DistrolessIptablesRef, key,
		"fairlead test/images: Debian "+strings.Join(distrolessIptablesPackages, " ")+" and their Depends",
		v1.Config{Env: []string{defaultPath}}, func(l *layer) error {
			if err := l.tree(root, treeOptions{skip: skipDocs}); err != nil {
				return err
			}
			for _, ln := range links {
				l.symlink(ln[0], ln[1])
			}
			l.dir("tmp", 0o1777)
			return nil
		})
}
