// Command table runs a selection of Kubernetes' Service and proxy e2e specs on the kubelet lab
// twice, once with Fairlead as the only proxy and once with kube-proxy (nftables), and prints
// each spec's result for both as a Markdown table (the README's conformance table). It is what
// `make conformance` runs; it needs root, like the lab.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

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
	proxies := flag.String("proxies", "fairlead,kube-proxy", "Proxies to run the selection with, in order.")
	bin := flag.String("bin", "bin", "Directory with Fairlead's binaries, built static (CGO_ENABLED=0), and test/echo.")
	k8sBin := flag.String("k8s-bin", "", "Directory with the Kubernetes binaries (make control-plane builds them).")
	out := flag.String("out", "", "Also write the table to this file.")
	only := flag.String("focus", focus, "The specs to run (Ginkgo focus).")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Split(*proxies, ","), *bin, *k8sBin, *only, *out); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

type result struct {
	proxy  lab.ProxyMode
	report *conformance.Report
}

func run(ctx context.Context, proxies []string, bin, k8sBin, focus, out string) error {
	root := lab.RepoRoot()
	if k8sBin == "" {
		var err error
		if k8sBin, err = lab.K8sBin(root, conformance.K8s+" kube-proxy"); err != nil {
			return err
		}
	}
	var results []result
	for _, p := range proxies {
		mode, err := lab.ParseProxyMode(p)
		if err != nil {
			return err
		}
		r, err := runWith(ctx, mode, bin, k8sBin, focus)
		if err != nil {
			return fmt.Errorf("with %s: %w", mode, err)
		}
		results = append(results, result{mode, r})
	}
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

// runWith brings up the kubelet lab with the given proxy, runs the selection and takes the lab
// down.
func runWith(ctx context.Context, mode lab.ProxyMode, bin, k8sBin, focus string) (*conformance.Report, error) {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	l := &lab.Lab{Prefix: "flct-", State: "/run/fairlead-conformance", Bin: bin, K8sBin: k8sBin,
		CRDs: filepath.Join(lab.RepoRoot(), "charts/fairlead/crds"), NodeMode: lab.KubeletNodes, Proxy: mode, HostPort: 6449}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: taking the lab down:", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "conformance: bringing up the kubelet lab with %s\n", mode)
	var log strings.Builder
	l.Out = &log
	if err := l.Up(ctx); err != nil {
		return nil, fmt.Errorf("lab up: %w\n%s", err, log.String())
	}
	if err := conformance.ImportTestImages(ctx, l); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "fairlead-conformance-"+string(mode)+"-")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "conformance: running e2e.test with %s (output in %s)\n", mode, dir)
	r, err := conformance.RunE2E(ctx, l, dir, 90*time.Minute, "--ginkgo.focus", focus, "--ginkgo.skip", skip)
	if err != nil {
		return nil, err
	}
	return r, nil
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
		fmt.Fprintf(w, "%s: %d passed, %d failed, %d skipped in %s. ", r.proxy, passed, failed, skipped, r.report.Took.Round(time.Second))
	}
	fmt.Fprintln(w)
}
