package images

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

//go:embed pause/main.go
var pauseSource []byte

// Pause builds (or takes from the cache) the pause image tarball and returns its path. The
// image holds /pause, built from test/images/pause, as its entrypoint, run as 65535 like
// Kubernetes' own. Its cache key is the program's source and the Go toolchain's version.
func Pause(ctx context.Context) (string, error) {
	gover, err := goVersion(ctx)
	if err != nil {
		return "", err
	}
	key := keyOf([]byte("pause"), []byte(PauseRef), []byte(gover), []byte(runtime.GOARCH), pauseSource)
	return cached(ctx, "pause", key, buildPause)
}

func buildPause(ctx context.Context, w io.Writer) error {
	work, err := os.MkdirTemp("", "fairlead-pause-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "pause")
	if err := buildStdlibProgram(ctx, work, pauseSource, bin); err != nil {
		return err
	}
	l := newLayer()
	if err := l.copyFile("pause", 0o755, bin); err != nil {
		return err
	}
	layerPath := filepath.Join(work, "layer.tar.gz")
	if err := l.writeTo(layerPath); err != nil {
		return err
	}
	return spec{
		ref:    PauseRef,
		layers: []layerSpec{{path: layerPath, createdBy: "fairlead test/images: /pause from test/images/pause"}},
		config: v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"},
	}.write(w)
}

// buildStdlibProgram compiles a one-file program that needs only the standard library, in a
// module of its own under work, so it builds from any directory, inside this repository or not.
// The binary is static and carries no paths or build IDs that differ between machines.
func buildStdlibProgram(ctx context.Context, work string, source []byte, out string) error {
	src := filepath.Join(work, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module fairlead.local/prog\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), source, 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", out, err, strings.TrimSpace(string(b)))
	}
	return nil
}
