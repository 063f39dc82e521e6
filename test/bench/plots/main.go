// Command plots draws the benchmarks as SVG files: the service proxy's full and partial sync
// time against the number of Services (Fairlead and kube-proxy), the controller's allocation
// (Fairlead and MetalLB) as bars and as a latency CDF, and the failover time distributions
// (layer 2, and BGP with and without BFD).
//
// The proxy and controller bars come from README.md's tables (make plots: the figures show the
// numbers the README quotes), or with -readme "" from the benchmarks' sample files (make bench:
// what was just measured). The CDF and the distributions need every sample, so they are
// always drawn from sample files; a figure whose file is missing is skipped and said so.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"

	"github.com/fairlead-lb/fairlead/test/bench/samples"
)

func main() {
	readme := flag.String("readme", "README.md", "The README whose proxy and controller tables are drawn as bars; empty: draw them from -samples.")
	dir := flag.String("samples", "test/bench/plots/data", "Directory of the benchmarks' sample files (proxy-sync.json, controller-latency.json, l2-failover.json, bgp-linkcut.json).")
	out := flag.String("out", "test/bench/plots", "Directory the SVG files are written to.")
	flag.Parse()
	var md []byte
	if *readme != "" {
		var err error
		if md, err = os.ReadFile(*readme); err != nil {
			log.Fatal(err)
		}
	}
	written, skipped, err := drawAll(string(md), *dir, *out)
	for _, p := range written {
		fmt.Println("wrote", p)
	}
	for _, s := range skipped {
		fmt.Println("skipped", s)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// The sample files the benchmarks write (samples.File.Write's names).
const (
	proxyFile      = "proxy-sync"
	controllerFile = "controller-latency"
	l2File         = "l2-failover"
	bgpFile        = "bgp-linkcut"
)

// drawAll writes every figure it has the numbers for into out, and names the ones it skipped.
// With md empty, the proxy and controller bars are drawn from the sample files too.
func drawAll(md, dir, out string) (written, skipped []string, err error) {
	files := map[string]*samples.File{}
	for _, name := range []string{proxyFile, controllerFile, l2File, bgpFile} {
		f, err := samples.Read(filepath.Join(dir, name+".json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		files[name] = f
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, nil, err
	}
	save := func(name string, fig *figure, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		path := filepath.Join(out, name)
		if err := fig.save(path); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		written = append(written, path)
		return nil
	}

	if md == "" && files[proxyFile] == nil {
		skipped = append(skipped, "proxy-sync.svg: no README and no "+proxyFile+".json in "+dir)
	} else {
		proxy, caption, err := proxyData(md, files[proxyFile])
		if err != nil {
			return written, skipped, err
		}
		fig, err := drawProxy(proxy, caption)
		if err := save("proxy-sync.svg", fig, err); err != nil {
			return written, skipped, err
		}
	}

	if md == "" && files[controllerFile] == nil {
		skipped = append(skipped, "controller-allocation.svg: no README and no "+controllerFile+".json in "+dir)
	} else {
		ctrl, caption, err := controllerData(md, files[controllerFile])
		if err != nil {
			return written, skipped, err
		}
		fig, err := drawController(ctrl, caption)
		if err := save("controller-allocation.svg", fig, err); err != nil {
			return written, skipped, err
		}
	}

	if f := files[controllerFile]; f != nil {
		fig, err := drawLatencyCDF(f)
		if err := save("allocation-latency-cdf.svg", fig, err); err != nil {
			return written, skipped, err
		}
	} else {
		skipped = append(skipped, "allocation-latency-cdf.svg: no "+controllerFile+".json in "+dir)
	}

	if files[l2File] != nil || files[bgpFile] != nil {
		fig, err := drawFailover(files[l2File], files[bgpFile])
		if err := save("failover.svg", fig, err); err != nil {
			return written, skipped, err
		}
	} else {
		skipped = append(skipped, "failover.svg: neither "+l2File+".json nor "+bgpFile+".json in "+dir)
	}
	return written, skipped, nil
}

// caption says when and where sample-based numbers were measured, under the figure, in two
// lines that fit under a single panel.
func caption(f *samples.File) string {
	return fmt.Sprintf("%s, measured %s\non %s; 1-minute load average %.1f at start, %.1f at end",
		f.Benchmark, f.Measured.Format("2006-01-02 15:04 MST"), f.Machine, f.LoadStart, f.LoadEnd)
}
