// Command table runs a selection of Kubernetes' Service and proxy e2e specs on the kubelet lab
// twice, once with Fairlead as the only proxy and once with kube-proxy (nftables), and prints
// each spec's result for both as a Markdown table (the README's conformance table). It is what
// `make conformance` runs; it needs root, like the lab.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/test/conformance"
	"github.com/fairlead-lb/fairlead/test/lab"
)

// The wider selection: every Service and proxy spec that applies to a cluster without a cloud
// provider, conformance or not. Disruptive and serial specs restart or reconfigure the whole
// cluster; SCTP needs a kernel module the lab does not load.
const (
	focus = `\[sig-network\] (Services|Conntrack|Traffic Distribution|Topology Hints|Networking Granular Checks: Services|LoadBalancers|KubeProxy|Networking should check kube-proxy urls)`
	skip  = `\[Disruptive\]|\[Serial\]|SCTP|Feature:KubeProxyNFAcct`
)

func main() {
	proxies := flag.String("proxies", "fairlead,kube-proxy", "Proxies to run the selection with, each on a lab of its own, at once.")
	bin := flag.String("bin", "bin", "Directory with Fairlead's binaries, built static (CGO_ENABLED=0), and test/echo.")
	k8sBin := flag.String("k8s-bin", "", "Directory with the Kubernetes binaries (make control-plane builds them).")
	out := flag.String("out", "", "Also write the table to this file.")
	only := flag.String("focus", focus, "The specs to run (Ginkgo focus).")
	procs := flag.Int("procs", 3, "e2e.test processes per proxy (the ginkgo CLI's --procs).")
	reports := flag.String("reports", "", "Print the table from JUnit reports of earlier runs instead (proxy=file,...).")
	flag.Parse()
	ctrllog.SetLogger(klog.NewKlogr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var results []result
	var err error
	if *reports != "" {
		results, err = readReports(*reports)
	} else {
		results, err = runAll(ctx, strings.Split(*proxies, ","), *bin, *k8sBin, *procs, *only)
	}
	if err == nil {
		err = write(results, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

type result struct {
	proxy  lab.ProxyMode
	report *conformance.Report
}

// runAll runs the selection with every proxy at once, each on a kubelet lab of its own: the
// specs mostly wait (for Pods, for timeouts), so two labs share two cores without either
// being short of CPU, and the table takes the time of one run.
func runAll(ctx context.Context, proxies []string, bin, k8sBin string, procs int, focus string) ([]result, error) {
	root := lab.RepoRoot()
	if k8sBin == "" {
		var err error
		if k8sBin, err = lab.K8sBin(root, conformance.K8s+" kube-proxy ginkgo"); err != nil {
			return nil, err
		}
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	results := make([]result, len(proxies))
	errs := make([]error, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		mode, err := lab.ParseProxyMode(p)
		if err != nil {
			return nil, err
		}
		l := &lab.Lab{Prefix: fmt.Sprintf("flct%d-", i), State: fmt.Sprintf("/run/fairlead-conformance-%d", i),
			Bin: bin, K8sBin: k8sBin, CRDs: filepath.Join(root, "charts/fairlead/crds"),
			NodeMode: lab.KubeletNodes, Proxy: mode, HostPort: 6451 + i}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := runWith(ctx, l, procs, focus)
			results[i], errs[i] = result{mode, r}, err
			if err != nil {
				errs[i] = fmt.Errorf("with %s: %w", mode, err)
			}
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// runWith brings up lab l, runs the selection and takes the lab down.
func runWith(ctx context.Context, l *lab.Lab, procs int, focus string) (*conformance.Report, error) {
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintf(os.Stderr, "conformance: taking the %s lab down: %v\n", l.Proxy, err)
		}
	}()
	fmt.Fprintf(os.Stderr, "conformance: bringing up the kubelet lab %s* with %s\n", l.Prefix, l.Proxy)
	var log strings.Builder
	l.Out = &log
	if err := l.Up(ctx); err != nil {
		return nil, fmt.Errorf("lab up: %w\n%s", err, log.String())
	}
	if err := conformance.ImportTestImages(ctx, l); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "fairlead-conformance-"+string(l.Proxy)+"-")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "conformance: running e2e.test with %s (output and JUnit report in %s)\n", l.Proxy, dir)
	return conformance.RunE2E(ctx, l, dir, 150*time.Minute, procs, conformance.Selection{Focus: focus, Skip: skip})
}

// readReports reads proxy=file pairs of JUnit reports. A proxy named again adds the later
// report's specs to its earlier ones, replacing those that ran in both (a re-run of a few).
func readReports(spec string) ([]result, error) {
	var out []result
	for _, kv := range strings.Split(spec, ",") {
		p, file, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("-reports %q: want proxy=file", kv)
		}
		mode, err := lab.ParseProxyMode(p)
		if err != nil {
			return nil, err
		}
		r, err := conformance.ReadReport(file)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(out, func(x result) bool { return x.proxy == mode })
		if i < 0 {
			out = append(out, result{mode, r})
			continue
		}
		for _, c := range r.Cases {
			if !c.Selected() {
				continue
			}
			if j := slices.IndexFunc(out[i].report.Cases, func(x conformance.Case) bool { return x.Name == c.Name }); j >= 0 {
				out[i].report.Cases[j] = c
			} else {
				out[i].report.Cases = append(out[i].report.Cases, c)
			}
		}
	}
	return out, nil
}

func write(results []result, out string) error {
	w := io.Writer(os.Stdout)
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	printTable(w, results)
	return nil
}

// printTable prints a row per spec that ran with any proxy: its result with each, and why it
// failed or was skipped where Ginkgo says.
func printTable(w io.Writer, results []result) {
	type row map[lab.ProxyMode]conformance.Case
	rows := map[string]row{}
	for _, r := range results {
		for _, c := range r.report.Cases {
			if c.Spec() == "" || !c.Selected() {
				continue
			}
			if rows[c.Spec()] == nil {
				rows[c.Spec()] = row{}
			}
			rows[c.Spec()][r.proxy] = c
		}
	}
	names := make([]string, 0, len(rows))
	for n := range rows {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintf(w, "| Spec |")
	for _, r := range results {
		fmt.Fprintf(w, " %s |", r.proxy)
	}
	fmt.Fprintf(w, "\n|---|")
	for range results {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintln(w)
	for _, n := range names {
		fmt.Fprintf(w, "| %s |", strings.ReplaceAll(strings.TrimPrefix(n, "[sig-network] "), "|", `\|`))
		for _, r := range results {
			c, ok := rows[n][r.proxy]
			switch {
			case !ok:
				fmt.Fprint(w, " – |")
			case c.Status == "passed":
				fmt.Fprintf(w, " passed (%.0f s) |", c.Time)
			default:
				why := c.Why()
				if len(why) > 90 {
					why = why[:90] + "…"
				}
				fmt.Fprintf(w, " **%s**: %s |", c.Status, strings.ReplaceAll(strings.ReplaceAll(why, "\n", " "), "|", `\|`))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\n")
	for _, r := range results {
		passed, failed, skipped := 0, 0, 0
		for _, c := range r.report.Cases {
			if c.Spec() == "" || !c.Selected() {
				continue
			}
			switch c.Status {
			case "passed":
				passed++
			case "skipped":
				skipped++
			default:
				failed++
			}
		}
		fmt.Fprintf(w, "%s: %d passed, %d failed, %d skipped", r.proxy, passed, failed, skipped)
		if r.report.Took > 0 {
			fmt.Fprintf(w, " in %s", r.report.Took.Round(time.Second))
		}
		fmt.Fprint(w, ". ")
	}
	fmt.Fprintln(w)
}
