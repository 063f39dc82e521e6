package images

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// EchoRef names the image of the lab's demo server, test/echo: what the lab's demo Deployment
// asks for ("fairlead.dev/echo", whose tag is latest). A variable so a lab can use another.
var EchoRef = "fairlead.dev/echo:latest"

// BuildEchoBinary builds test/echo, static, into binDir/echo (from inside the repository).
func BuildEchoBinary(ctx context.Context, binDir string) error {
	return buildStatic(ctx, binDir, "github.com/fairlead-lb/fairlead/test/echo")
}

// Echo builds (or takes from the cache) the image of test/echo from binDir/echo (see
// BuildEchoBinary) and returns the tarball's path. It runs `/echo -tcp 8080`, answering with
// its host name, which in a Pod is the Pod's name, as the demo Deployment expects.
func Echo(ctx context.Context, binDir string) (string, error) {
	bin := filepath.Join(binDir, "echo")
	if err := checkStatic(bin); err != nil {
		return "", err
	}
	return singleBinary(ctx, "echo", EchoRef, bin, []string{"/echo"}, []string{"-tcp", "8080"},
		"fairlead test/images: /echo from test/echo")
}

// defaultPath is the PATH the images with a shell set, Debian's.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// singleBinary builds (or takes from the cache) an image named ref holding one static program,
// at /, and a writable /tmp, with entrypoint and cmd as given.
func singleBinary(ctx context.Context, name, ref, bin string, entrypoint, cmd []string, createdBy string) (string, error) {
	sum, err := fileSHA256(bin)
	if err != nil {
		return "", err
	}
	key := keyOf([]byte(name), []byte(ref), []byte(sum), []byte(strings.Join(entrypoint, " ")), []byte(strings.Join(cmd, " ")))
	base := filepath.Base(bin)
	return oneLayer(ctx, name, ref, key, createdBy, v1.Config{Entrypoint: entrypoint, Cmd: cmd}, func(l *layer) error {
		if err := l.copyFile(base, 0o755, bin); err != nil {
			return err
		}
		l.dir("tmp", 0o1777)
		return nil
	})
}

// oneLayer builds (or takes from the cache, by key) image ref of the one layer fill writes.
func oneLayer(ctx context.Context, name, ref string, key []byte, createdBy string, config v1.Config, fill func(*layer) error) (string, error) {
	return cached(ctx, name, key, func(ctx context.Context, w io.Writer) error {
		work, err := os.MkdirTemp("", name+"-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		l := newLayer()
		if err := fill(l); err != nil {
			return err
		}
		p := filepath.Join(work, name+".tar.gz")
		if err := l.writeTo(p); err != nil {
			return err
		}
		return spec{ref: ref, layers: []layerSpec{{path: p, createdBy: createdBy}}, config: config}.write(w)
	})
}
