package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// tarEntries reads a tar (gzipped or not) into name -> header and contents.
func tarEntries(t *testing.T, r io.Reader) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	br := bytes.NewBuffer(nil)
	if _, err := io.Copy(br, r); err != nil {
		t.Fatal(err)
	}
	var rd io.Reader = br
	if b := br.Bytes(); len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		rd = gz
	}
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rd)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		hdrs[h.Name], data[h.Name] = h, b
	}
}

// archive is a docker-archive tarball opened for inspection.
type archive struct {
	manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	files map[string][]byte
}

func readArchive(t *testing.T, path string) archive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, files := tarEntries(t, f)
	var a archive
	a.files = files
	if err := json.Unmarshal(files["manifest.json"], &a.manifest); err != nil {
		t.Fatalf("%s: manifest.json: %v", path, err)
	}
	if len(a.manifest) != 1 {
		t.Fatalf("%s: %d images in manifest.json, want 1", path, len(a.manifest))
	}
	return a
}

// layer returns the entries of the archive's i-th layer.
func (a archive) layer(t *testing.T, i int) (map[string]*tar.Header, map[string][]byte) {
	return tarEntries(t, bytes.NewReader(a.files[a.manifest[0].Layers[i]]))
}

func fileSum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestPauseIsReproducibleAndCached(t *testing.T) {
	ctx := context.Background()
	// Each build gets a cache of its own; Go's build cache (which lives under XDG_CACHE_HOME
	// too) stays where it was, or every build would recompile the standard library.
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", strings.TrimSpace(string(gocache)))
	var paths []string
	for i := 0; i < 2; i++ {
		t.Setenv("XDG_CACHE_HOME", t.TempDir())
		p, err := Pause(ctx)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if fileSum(t, paths[0]) != fileSum(t, paths[1]) {
		t.Fatalf("two builds of the pause image differ: %s and %s", paths[0], paths[1])
	}

	a := readArchive(t, paths[1])
	if got := a.manifest[0].RepoTags; len(got) != 1 || got[0] != PauseRef {
		t.Errorf("RepoTags %q, want [%s]", got, PauseRef)
	}
	var cfg struct {
		Architecture, OS, Created string
		Config                    struct {
			Entrypoint []string
			User       string
		}
	}
	if err := json.Unmarshal(a.files[a.manifest[0].Config], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || strings.Join(cfg.Config.Entrypoint, " ") != "/pause" || cfg.Created != "1970-01-01T00:00:00Z" {
		t.Errorf("config %+v: want os linux, entrypoint /pause, created at the epoch", cfg)
	}
	hdrs, _ := a.layer(t, 0)
	if len(hdrs) != 1 || hdrs["pause"] == nil {
		t.Fatalf("pause layer holds %v, want only pause", hdrs)
	}
	if h := hdrs["pause"]; h.Mode != 0o755 || !h.ModTime.Equal(epoch) || h.Uid != 0 {
		t.Errorf("pause entry mode %o mtime %v uid %d, want 755 at the epoch owned by root", h.Mode, h.ModTime, h.Uid)
	}

	// A second call with the same inputs is a cache hit: same file, not rewritten.
	before, _ := os.Stat(paths[1])
	again, err := Pause(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(again)
	if again != paths[1] || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("second Pause: %s (mtime %v), want the cached %s (mtime %v)", again, after.ModTime(), paths[1], before.ModTime())
	}
}

func TestPauseRunsInContainerd(t *testing.T) {
	ctx := context.Background()
	tarball, err := Pause(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := startContainerd(t)
	c.importAndCheck(ctx, tarball, PauseRef)

	const id = "pause-test"
	run := exec.Command("ctr", append(append([]string{"--address", c.sock, "-n", Namespace}, c.runArgs(id)...), "--rm", PauseRef, id)...)
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	kit.Eventually(t, 30*time.Second, "task "+id+" RUNNING", func(context.Context) error {
		select {
		case err := <-exited:
			t.Fatalf("ctr run %s exited before its task ran: %v\n%s\n%s", PauseRef, err, out.String(), c.log())
		default:
		}
		if st := c.taskStatus(id); st != "RUNNING" {
			return fmt.Errorf("status %q", st)
		}
		return nil
	})
	// The task's process is our /pause, as the image's unprivileged user.
	ps, err := c.ctrOutput("task", "ps", id)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.Fields(strings.Split(strings.TrimSpace(ps), "\n")[1])[0]
	if exe, _ := os.Readlink(filepath.Join("/proc", pid, "exe")); filepath.Base(exe) != "pause" {
		t.Errorf("task process %s runs %q, want pause", pid, exe)
	}
	if st, _ := os.ReadFile(filepath.Join("/proc", pid, "status")); !strings.Contains(string(st), "Uid:\t65535\t") {
		t.Errorf("task process %s is not uid 65535:\n%s", pid, st)
	}

	// SIGTERM ends it cleanly: ctr run returns the task's exit status, 0.
	if _, err := c.ctrOutput("task", "kill", "-s", "SIGTERM", id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("pause exited with %v after SIGTERM, want 0\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("pause still running 30s after SIGTERM")
	}
}
