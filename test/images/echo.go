package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// EchoRef names the image of test/echo, the lab's demo server.
const EchoRef = "fairlead.dev/echo:lab"

// Echo builds (or takes from the cache) an image holding binDir/echo (test/echo, built
// static: CGO_ENABLED=0) as /echo, its entrypoint, and returns the tarball's path. Its cache
// key is the binary's content.
func Echo(ctx context.Context, binDir string) (string, error) {
	bin := filepath.Join(binDir, "echo")
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("echo image: %w", err)
	}
	key := keyOf([]byte("echo"), []byte(EchoRef), data)
	return cached(ctx, "echo", key, func(ctx context.Context, w io.Writer) error {
		work, err := os.MkdirTemp("", "fairlead-echo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		l := newLayer()
		if err := l.copyFile("echo", 0o755, bin); err != nil {
			return err
		}
		layerPath := filepath.Join(work, "layer.tar.gz")
		if err := l.writeTo(layerPath); err != nil {
			return err
		}
		return spec{
			ref:    EchoRef,
			layers: []layerSpec{{path: layerPath, createdBy: "fairlead test/images: /echo from test/echo"}},
			config: v1.Config{Entrypoint: []string{"/echo"}},
		}.write(w)
	})
}
