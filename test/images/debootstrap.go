package images

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// agnhostPackages are what the e2e suite execs in agnhost Pods besides agnhost itself (sh comes
// with minbase): curl, nc and wget against Services, ss and ip for sockets and addresses, dig
// and nslookup for DNS; ca-certificates for TLS.
// Upstream's agnhost is Alpine with bind-tools, curl, netcat-openbsd, iproute2, socat and bash,
// and busybox's wget (see agnhostWget).
var agnhostPackages = []string{"ca-certificates", "curl", "netcat-openbsd", "wget", "iproute2", "bind9-dnsutils", "socat"}

// minbase returns a Debian root file system made by `debootstrap --variant=minbase` of this
// machine's release from its configured mirror, with extra packages, and a key naming what it
// was made from. It is built once and kept under <cache>/debootstrap/<key>. debootstrap runs
// package scripts in a chroot, so this needs root.
func minbase(ctx context.Context, extra []string) (string, []byte, error) {
	suite, mirror, err := aptSource()
	if err != nil {
		return "", nil, err
	}
	include := append([]string(nil), extra...)
	sort.Strings(include)
	key := keyOf([]byte("debootstrap-minbase"), []byte(suite), []byte(mirror), []byte(strings.Join(include, ",")))
	cache, err := CacheDir()
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(cache, "debootstrap", hex.EncodeToString(key[:8]))
	rootfs := filepath.Join(dir, "rootfs")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return rootfs, key, nil
	}
	if os.Getuid() != 0 {
		return "", nil, fmt.Errorf("debootstrap of the %s base needs root", suite)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", nil, fmt.Errorf("debootstrap not found (make packages installs it): %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", nil, err
	}
	unlock, err := lock(dir + ".lock")
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return rootfs, key, nil
	}
	unmountUnder(dir)
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, err
	}
	// debootstrap mounts /proc and /sys in the target while it configures packages and may
	// leave them when it fails.
	defer unmountUnder(dir)
	args := []string{"--variant=minbase", "--include=" + strings.Join(include, ","), suite, rootfs, mirror}
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		tail := string(out)
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return "", nil, fmt.Errorf("debootstrap %s: %w\n%s", strings.Join(args, " "), err, tail)
	}
	if err := trimRootfs(rootfs); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), []byte(strings.Join(args, " ")+"\n"), 0o644); err != nil {
		return "", nil, err
	}
	return rootfs, key, nil
}

// trimRootfs removes what a container does not need, and what says where and when it was
// built (logs, the host's resolv.conf; the runtime provides hosts, hostname, resolv.conf).
func trimRootfs(root string) error {
	for _, glob := range []string{"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*",
		"var/log/*", "var/cache/ldconfig/aux-cache", "etc/resolv.conf", "etc/hostname", "etc/machine-id",
		"usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"} {
		ms, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			return err
		}
		for _, m := range ms {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// aptSource finds this machine's release (its codename) and the first Debian mirror the apt
// sources list for it, in one-line (sources.list) or deb822 (.sources) form.
func aptSource() (suite, mirror string, err error) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", "", fmt.Errorf("debootstrap needs a Debian host: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok {
			suite = strings.Trim(v, `"`)
		}
	}
	if suite == "" {
		return "", "", fmt.Errorf("/etc/os-release names no VERSION_CODENAME")
	}
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.HasSuffix(f, ".sources") {
			if m := deb822Mirror(string(b), suite); m != "" {
				return suite, m, nil
			}
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			f = f[1:]
			if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=...]
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				if len(f) > 0 {
					f = f[1:]
				}
			}
			if len(f) >= 2 && f[1] == suite {
				return suite, f[0], nil
			}
		}
	}
	return "", "", fmt.Errorf("no apt source for %s in /etc/apt/sources.list*", suite)
}

func deb822Mirror(text, suite string) string {
	for _, stanza := range strings.Split(text, "\n\n") {
		fields := map[string]string{}
		for _, l := range strings.Split(stanza, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !contains(strings.Fields(fields["types"]), "deb") || !contains(strings.Fields(fields["suites"]), suite) {
			continue
		}
		if strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	for _, m := range mountsUnder(dir) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			ms = append(ms, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ms)))
	return ms
}
