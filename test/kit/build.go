package kit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BuildOptions are how a binary is built; binaries built otherwise are cached apart.
type BuildOptions struct {
	// Static builds without cgo (CGO_ENABLED=0), as images need.
	Static bool
	// Small builds with -trimpath and without symbol tables: the links take a good part
	// less time on a busy machine.
	Small bool
	// Race builds with the race detector: the binary's own data races fail it (exit 66).
	Race bool
}

// Binary returns the path of the binary of pkg (an import path, or a path relative to the
// repository's root such as "./cmd/fairlead-speaker"), building it at most once per source:
// see Build. It is skipped in the fast lane.
func Binary(tb testing.TB, pkg string, opts BuildOptions) string {
	tb.Helper()
	Heavy(tb, "a built "+path.Base(pkg))
	bin, err := Build(pkg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

var (
	buildMu sync.Mutex
	built   = map[string]string{} // pkg and options → path, in this process
)

// Build is Binary for a TestMain. Binaries go to a cache shared by every test process and
// worktree of the machine ($XDG_CACHE_HOME/fairlead/testbin, or $FAIRLEAD_TESTBIN), under a
// key that hashes the Go version, the options and every source file the package is built
// from (module dependencies by version), so a binary is rebuilt only when its source changed,
// and two processes wanting the same one build it once.
func Build(pkg string, opts BuildOptions) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	memo := fmt.Sprintf("%s %+v", pkg, opts)
	if bin, ok := built[memo]; ok {
		return bin, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	key, err := sourceKey(root, pkg, opts)
	if err != nil {
		return "", fmt.Errorf("hashing the sources of %s: %w", pkg, err)
	}
	name := path.Base(pkg)
	dir := filepath.Join(cacheDir(), name+"-"+key[:16])
	bin := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	unlock, err := lock(dir + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err != nil {
		if err := build(root, pkg, opts, dir, bin); err != nil {
			return "", err
		}
		evict(name, dir)
	}
	now := time.Now()
	_ = os.Chtimes(dir, now, now) // in use: eviction keeps recently used binaries
	built[memo] = bin
	return bin, nil
}

func build(root, pkg string, opts BuildOptions, dir, bin string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Readable by all: the lab runs some of these as other users.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-o", filepath.Join(tmp, filepath.Base(bin))}
	if opts.Small {
		args = append(args, "-trimpath", "-ldflags=-s -w")
	}
	if opts.Race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = buildEnv(opts)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, out)
	}
	_ = os.RemoveAll(dir) // a half-written entry of a crashed build
	return os.Rename(tmp, dir)
}

func buildEnv(opts BuildOptions) []string {
	env := os.Environ()
	if opts.Static {
		env = append(env, "CGO_ENABLED=0")
	}
	return env
}

// sourceKey hashes what decides the binary: the toolchain and build settings, the options,
// and for every package pkg depends on either its files (packages of this repository or of
// a local replacement) or its module's version.
func sourceKey(root, pkg string, opts BuildOptions) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %+v\n", pkg, opts)
	envCmd := exec.Command("go", "env", "GOVERSION", "GOOS", "GOARCH", "CGO_ENABLED", "GOFLAGS", "GOEXPERIMENT", "GOAMD64")
	envCmd.Dir, envCmd.Env = root, buildEnv(opts)
	out, err := envCmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w", err)
	}
	h.Write(out)
	const format = `{{if not .Standard}}{{.ImportPath}}|{{.Dir}}|{{with .Module}}{{.Path}}@{{.Version}}{{end}}|{{with .Module}}{{.Main}}{{end}}|` +
		`{{with .Module}}{{with .Replace}}{{.Path}}@{{.Version}}{{end}}{{end}}|` +
		`{{join .GoFiles ","}},{{join .CgoFiles ","}},{{join .CFiles ","}},{{join .HFiles ","}},{{join .EmbedFiles ","}}{{end}}`
	list := exec.Command("go", "list", "-deps", "-f", format, pkg)
	list.Dir, list.Env = root, buildEnv(opts)
	var stderr bytes.Buffer
	list.Stderr = &stderr
	if out, err = list.Output(); err != nil {
		return "", fmt.Errorf("go list: %w: %s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 6 {
			return "", fmt.Errorf("go list line %q", line)
		}
		dir, mod, main, repl, files := f[1], f[2], f[3], f[4], f[5]
		fmt.Fprintln(h, f[0], mod, repl)
		// Files are read where the module is ours (main) or replaced by a directory.
		if mod != "" && main != "true" && !strings.HasSuffix(repl, "@") {
			continue
		}
		for _, name := range strings.Split(files, ",") {
			if name == "" {
				continue
			}
			if err := hashFile(h, filepath.Join(dir, name)); err != nil {
				return "", err
			}
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := hashFile(h, filepath.Join(root, f)); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(h io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintln(h, name)
	_, err = io.Copy(h, f)
	return err
}

func cacheDir() string {
	if d := os.Getenv("FAIRLEAD_TESTBIN"); d != "" {
		return d
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "fairlead", "testbin")
}

// lock takes an exclusive lock on a file: one process builds, the others wait for it.
func lock(name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// keep is how many builds of one binary the cache holds: the speaker is over 100 MB, and
// every change to its sources makes another.
const keep = 4

// evict removes the oldest builds of name beyond keep, except any used in the last hour (a
// test of another worktree may be about to run it).
func evict(name, current string) {
	entries, _ := filepath.Glob(filepath.Join(filepath.Dir(current), name+"-*"))
	type entry struct {
		dir string
		mod time.Time
	}
	var es []entry
	for _, e := range entries {
		st, err := os.Stat(e)
		if err != nil || !st.IsDir() || len(filepath.Base(e)) != len(name)+17 {
			continue
		}
		es = append(es, entry{e, st.ModTime()})
	}
	slices.SortFunc(es, func(a, b entry) int { return b.mod.Compare(a.mod) })
	for i, e := range es {
		if i >= keep && e.dir != current && time.Since(e.mod) > time.Hour {
			_ = os.RemoveAll(e.dir)
			_ = os.Remove(e.dir + ".lock")
		}
	}
}

// repoRoot is the module's root: the directory holding go.mod above this source file.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the repository")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
}
