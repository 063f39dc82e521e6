// Command build writes one of test/images' image tarballs to a file, for `make image-tar` and
// for loading by hand (`ctr -n k8s.io images import FILE`).
//
//	go run ./test/images/build -image fairlead -out bin/fairlead-image.tar
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fairlead-lb/fairlead/test/images"
)

func main() {
	image := flag.String("image", "fairlead", "which image: fairlead, pause, agnhost")
	out := flag.String("out", "", "file to write the docker-archive tarball to (default: print the cached tarball's path)")
	ref := flag.String("ref", images.FairleadRef, "name of the fairlead image")
	binDir := flag.String("bin", "", "fairlead image: directory to build the static binaries into (default: a temporary one)")
	flag.Parse()
	if err := run(context.Background(), *image, *out, *ref, *binDir); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, image, out, ref, binDir string) error {
	start := time.Now()
	var path string
	var err error
	switch image {
	case "fairlead":
		if binDir == "" {
			if binDir, err = os.MkdirTemp("", "fairlead-bins-"); err != nil {
				return err
			}
			defer os.RemoveAll(binDir)
		}
		if err := images.BuildFairleadBinaries(ctx, binDir); err != nil {
			return err
		}
		images.FairleadRef = ref
		path, err = images.Fairlead(ctx, binDir)
	case "pause":
		path, err = images.Pause(ctx)
	case "agnhost":
		path, err = images.Agnhost(ctx)
	default:
		return fmt.Errorf("unknown image %q (fairlead, pause, agnhost)", image)
	}
	if err != nil {
		return err
	}
	if out == "" {
		fmt.Println(path)
		return nil
	}
	if err := copyFile(path, out); err != nil {
		return err
	}
	fi, _ := os.Stat(out)
	fmt.Fprintf(os.Stderr, "%s: %s image, %.1f MB, in %s\n", out, image, float64(fi.Size())/1e6, time.Since(start).Round(100*time.Millisecond))
	return nil
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	o, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	if err := o.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
