// Package images builds the container images the lab's kubelets run — the pause image, the
// Fairlead image, the e2e suite's agnhost — without Docker or a registry: layers are tar files
// written here from Go binaries and Debian packages, assembled with go-containerregistry into
// docker-archive tarballs that `ctr images import` loads under the names kubelet and the e2e
// manifest ask for, so nothing is ever pulled.
//
// Builds are reproducible (fixed timestamps and owners, sorted entries: the same inputs give
// the same digests) and cached under $XDG_CACHE_HOME/fairlead/images, keyed by the content of
// their inputs, so a second run only hashes them.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Ref names of the images, exactly what kubelet and the e2e manifest ask for.
const PauseRef = "registry.k8s.io/pause:3.10.2"

// Namespace is the containerd namespace the CRI plugin (and so kubelet) reads images from.
const Namespace = "k8s.io"

// format is part of every cache key: bump it when the way images are assembled changes, so
// tarballs built by older code are not reused.
const format = "fairlead-images/1"

// epoch is the time stamped on every file, layer and config: a build's bytes must not depend
// on when it ran.
var epoch = time.Unix(0, 0).UTC()

// CacheDir is where built images (and what they are built from) are kept:
// $XDG_CACHE_HOME/fairlead/images, by default ~/.cache/fairlead/images.
func CacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("image cache: no $XDG_CACHE_HOME and no home directory: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "fairlead", "images"), nil
}

// Import loads an image tarball into the containerd listening on ctrAddress, in namespace
// k8s.io where the CRI plugin finds it, and unpacks it into the default snapshotter.
func Import(ctx context.Context, ctrAddress, tarball string) error {
	return ImportNamespace(ctx, ctrAddress, Namespace, tarball)
}

// ImportNamespace is Import into another containerd namespace.
func ImportNamespace(ctx context.Context, ctrAddress, namespace, tarball string) error {
	cmd := exec.CommandContext(ctx, "ctr", "--address", ctrAddress, "-n", namespace, "images", "import", tarball)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr --address %s -n %s images import %s: %w: %s", ctrAddress, namespace, tarball, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// spec is what an image is made of: its layers (bottom first) and its runtime config.
type spec struct {
	ref    string
	layers []layerSpec
	config v1.Config
}

type layerSpec struct {
	path      string // gzipped tar
	createdBy string // recorded in the image's history
}

// write assembles the image and writes it as a docker-archive tarball (manifest.json with the
// ref in RepoTags, which is what `ctr images import` names the image after).
func (s spec) write(w io.Writer) error {
	ref, err := name.NewTag(s.ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image ref %q: %w", s.ref, err)
	}
	adds := make([]mutate.Addendum, 0, len(s.layers))
	for _, l := range s.layers {
		layer, err := tarball.LayerFromFile(l.path)
		if err != nil {
			return fmt.Errorf("layer %s: %w", l.path, err)
		}
		adds = append(adds, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: l.createdBy}})
	}
	img, err := mutate.Append(empty.Image, adds...)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = s.config
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	return tarball.Write(ref, img, w)
}

// cached returns dir/<name>-<key>.tar, running build to make it when it is not there. An
// flock serialises builders of one image (a test and the lab may ask at once); the tarball
// appears by rename, so a reader never sees half of one.
func cached(ctx context.Context, name string, key []byte, build func(ctx context.Context, w io.Writer) error) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("image cache %s: %w", dir, err)
	}
	sum := sha256.Sum256(key)
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.tar", name, hex.EncodeToString(sum[:8])))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	unlock, err := lock(filepath.Join(dir, "."+name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	f, err := os.CreateTemp(dir, "."+name+"-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", err
	}
	if err := build(ctx, f); err != nil {
		f.Close()
		return "", fmt.Errorf("build image %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// keyOf joins the parts of a cache key unambiguously.
func keyOf(parts ...[]byte) []byte {
	h := sha256.New()
	io.WriteString(h, format)
	for _, p := range parts {
		fmt.Fprintf(h, "\x00%d\x00", len(p))
		h.Write(p)
	}
	return h.Sum(nil)
}

// goVersion is the version of the go command that builds the binaries: part of their cache key,
// since a new toolchain makes other bytes.
func goVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
