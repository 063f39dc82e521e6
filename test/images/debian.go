package images

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// deb is one Debian package file as apt would download it.
type deb struct {
	file   string // nftables_1.0.6-2+deb12u2_amd64.deb
	sha256 string
}

// debianRoot returns a directory holding pkgs and every package they depend on (Depends and
// Pre-Depends, recursively, as apt resolves them), extracted with dpkg-deb as they would be
// installed but with no maintainer scripts run, and a key naming exactly those package files.
// The .debs are kept in <cache>/debs and the tree in <cache>/debian/<key>, so a second call
// costs one apt query. Nothing is installed on the host.
func debianRoot(ctx context.Context, pkgs ...string) (string, []byte, error) {
	debs, err := resolveDebs(ctx, pkgs)
	if err != nil {
		return "", nil, err
	}
	var keyText strings.Builder
	for _, d := range debs {
		fmt.Fprintf(&keyText, "%s %s\n", d.file, d.sha256)
	}
	key := keyOf([]byte("debian-root"), []byte(keyText.String()))
	cache, err := CacheDir()
	if err != nil {
		return "", nil, err
	}
	root := filepath.Join(cache, "debian", hex.EncodeToString(key[:8]))
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return filepath.Join(root, "rootfs"), key, nil
	}
	if err := os.MkdirAll(filepath.Join(cache, "debian"), 0o755); err != nil {
		return "", nil, err
	}
	unlock, err := lock(root + ".lock")
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return filepath.Join(root, "rootfs"), key, nil
	}
	debDir := filepath.Join(cache, "debs")
	if err := downloadDebs(ctx, debDir, debs); err != nil {
		return "", nil, err
	}
	os.RemoveAll(root)
	if err := os.MkdirAll(filepath.Join(root, "rootfs"), 0o755); err != nil {
		return "", nil, err
	}
	for _, d := range debs {
		out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", filepath.Join(debDir, d.file), filepath.Join(root, "rootfs")).CombinedOutput()
		if err != nil {
			return "", nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", d.file, err, strings.TrimSpace(string(out)))
		}
	}
	if err := os.WriteFile(filepath.Join(root, ".complete"), []byte(keyText.String()), 0o644); err != nil {
		return "", nil, err
	}
	return filepath.Join(root, "rootfs"), key, nil
}

// resolveDebs lists the package files of pkgs and their dependency closure, sorted by name.
func resolveDebs(ctx context.Context, pkgs []string) ([]deb, error) {
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
		"--no-breaks", "--no-replaces", "--no-enhances"}, pkgs...)
	out, err := exec.CommandContext(ctx, "apt-cache", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache %s: %w", strings.Join(args, " "), err)
	}
	// Lines at column 0 are the packages the recursion visited; <name> is a virtual package,
	// which some real package in the list provides.
	var names []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == ' ' || l[0] == '<' {
			continue
		}
		names = append(names, strings.TrimSpace(l))
	}
	sort.Strings(names)
	names = dedup(names)
	uris, err := printURIs(ctx, names)
	if err != nil {
		return nil, err
	}
	var debs []deb
	sc = bufio.NewScanner(strings.NewReader(uris))
	for sc.Scan() {
		// 'http://.../nftables_1.0.6-2%2bdeb12u2_amd64.deb' nftables_1.0.6-2+deb12u2_amd64.deb 70292 SHA256:966f...
		f := strings.Fields(sc.Text())
		if len(f) != 4 || !strings.HasPrefix(f[3], "SHA256:") {
			return nil, fmt.Errorf("apt-get download --print-uris: unexpected line %q", sc.Text())
		}
		debs = append(debs, deb{file: f[1], sha256: strings.TrimPrefix(f[3], "SHA256:")})
	}
	if len(debs) != len(names) {
		return nil, fmt.Errorf("apt resolved %d packages %v but would download %d files", len(names), names, len(debs))
	}
	sort.Slice(debs, func(i, j int) bool { return debs[i].file < debs[j].file })
	return debs, nil
}

// printURIs asks apt which files it would download for names, updating the package lists once
// when they are missing (a fresh machine may have none).
func printURIs(ctx context.Context, names []string) (string, error) {
	args := append([]string{"download", "--print-uris"}, names...)
	out, err := exec.CommandContext(ctx, "apt-get", args...).CombinedOutput()
	if err != nil {
		if uerr := exec.CommandContext(ctx, "apt-get", "update").Run(); uerr != nil {
			return "", fmt.Errorf("apt-get %s: %w: %s (and apt-get update: %v)", strings.Join(args, " "), err, strings.TrimSpace(string(out)), uerr)
		}
		if out, err = exec.CommandContext(ctx, "apt-get", args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return string(out), nil
}

// downloadDebs fetches the package files not yet in dir and checks every file's digest.
func downloadDebs(ctx context.Context, dir string, debs []deb) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var missing []string
	for _, d := range debs {
		if sum, err := fileSHA256(filepath.Join(dir, d.file)); err != nil || sum != d.sha256 {
			os.Remove(filepath.Join(dir, d.file))
			missing = append(missing, strings.SplitN(d.file, "_", 2)[0])
		}
	}
	if len(missing) > 0 {
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download"}, missing...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download %s: %w: %s", strings.Join(missing, " "), err, strings.TrimSpace(string(out)))
		}
	}
	for _, d := range debs {
		sum, err := fileSHA256(filepath.Join(dir, d.file))
		if err != nil {
			return fmt.Errorf("after apt-get download: %w", err)
		}
		if sum != d.sha256 {
			return fmt.Errorf("%s: sha256 %s, apt says %s", d.file, sum, d.sha256)
		}
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func dedup(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}
