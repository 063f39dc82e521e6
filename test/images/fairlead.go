package images

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FairleadRef names the Fairlead image: what the chart deploys with image.tag=dev. A variable
// so a lab can build under another tag.
var FairleadRef = "ghcr.io/fairlead-lb/fairlead:dev"

// FairleadBinaries are the programs the image holds, at /, as the chart's `command`s expect.
// Each is the main package cmd/<name> (FairleadPackages); what they link ships to users, so
// none may depend on a package under test/ (cmd/fairleadctl's tests check it).
var FairleadBinaries = []string{"fairlead-controller", "fairlead-speaker", "fairlead-ccm", "fairleadctl"}

// FairleadPackages are the import paths of FairleadBinaries' main packages.
func FairleadPackages() []string {
	pkgs := make([]string, 0, len(FairleadBinaries))
	for _, b := range FairleadBinaries {
		pkgs = append(pkgs, "github.com/fairlead-lb/fairlead/cmd/"+b)
	}
	return pkgs
}

// fairleadPackages are the Debian packages whose programs the speaker execs (knftables runs
// nft; stale UDP flows are cleared with conntrack). Their libraries come with them as
// dependencies.
var fairleadPackages = []string{"nftables", "conntrack"}

// NonRootUID is the user the image runs as by default, the chart's runAsUser for the
// controller and the ccm (the speaker runs as 0 with two capabilities).
const NonRootUID = 65532

// BuildFairleadBinaries builds FairleadBinaries into binDir, static (CGO_ENABLED=0) so they
// need nothing from the image. It runs `go build` on this module's packages, so the working
// directory must be inside the repository.
func BuildFairleadBinaries(ctx context.Context, binDir string) error {
	return buildStatic(ctx, binDir, FairleadPackages()...)
}

// buildStatic builds this module's main packages into binDir without cgo, paths or symbols, as
// test/images/Dockerfile does.
func buildStatic(ctx context.Context, binDir string, pkgs ...string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", binDir + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s (the working directory must be in the fairlead repository): %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Fairlead builds (or takes from the cache) the Fairlead image tarball, named FairleadRef, from
// the static binaries in binDir (see BuildFairleadBinaries) and returns its path. The image
// has two layers: nft, conntrack and their libraries from Debian's packages with /etc/passwd
// and /etc/group for the nonroot user, then the binaries; its default command is
// /fairlead-controller as 65532, like the Dockerfile's. The cache key is the binaries' content,
// the Debian package files and the ref.
func Fairlead(ctx context.Context, binDir string) (string, error) {
	parts := [][]byte{[]byte("fairlead"), []byte(FairleadRef)}
	for _, b := range FairleadBinaries {
		p := filepath.Join(binDir, b)
		if err := checkStatic(p); err != nil {
			return "", err
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return "", err
		}
		parts = append(parts, []byte(b+" "+sum))
	}
	root, debKey, err := debianRoot(ctx, fairleadPackages...)
	if err != nil {
		return "", err
	}
	parts = append(parts, debKey)
	ref := FairleadRef
	return cached(ctx, "fairlead", keyOf(parts...), func(ctx context.Context, w io.Writer) error {
		return buildFairlead(ctx, w, ref, binDir, root)
	})
}

// checkStatic refuses a binary that needs a dynamic loader: `go build` with cgo (the default
// of `make build`) links glibc, and the image's Debian libraries are there for nft, not for it.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("image: %w (build the binaries with BuildFairleadBinaries or BuildEchoBinary)", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("image: %s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// skipDocs leaves out what no program in the image reads.
func skipDocs(rel string) bool {
	for _, d := range []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale", "usr/share/bug"} {
		if under(rel, d) {
			return true
		}
	}
	return false
}

func buildFairlead(ctx context.Context, w io.Writer, ref, binDir, debRoot string) error {
	work, err := os.MkdirTemp("", "fairlead-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	base := newLayer()
	if err := base.tree(debRoot, treeOptions{skip: skipDocs}); err != nil {
		return err
	}
	base.file("etc/passwd", 0o644, []byte(fmt.Sprintf("root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/usr/sbin/nologin\n", NonRootUID, NonRootUID)))
	base.file("etc/group", 0o644, []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRootUID)))
	base.dirOwned("home/nonroot", 0o700, NonRootUID, NonRootUID)
	base.dir("root", 0o700)
	base.dir("tmp", 0o1777)
	basePath := filepath.Join(work, "base.tar.gz")
	if err := base.writeTo(basePath); err != nil {
		return err
	}

	bins := newLayer()
	for _, b := range FairleadBinaries {
		if err := bins.copyFile(b, 0o755, filepath.Join(binDir, b)); err != nil {
			return err
		}
	}
	binsPath := filepath.Join(work, "bin.tar.gz")
	if err := bins.writeTo(binsPath); err != nil {
		return err
	}
	return spec{
		ref: ref,
		layers: []layerSpec{
			{path: basePath, createdBy: "fairlead test/images: Debian " + strings.Join(fairleadPackages, " ") + " and their Depends, /etc/passwd"},
			{path: binsPath, createdBy: "fairlead test/images: " + strings.Join(FairleadBinaries, " ")},
		},
		config: v1.Config{
			Entrypoint: []string{"/fairlead-controller"},
			User:       fmt.Sprintf("%d:%d", NonRootUID, NonRootUID),
			Env:        []string{defaultPath},
		},
	}.write(w)
}
