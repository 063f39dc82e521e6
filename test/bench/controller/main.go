// Command controller benchmarks address allocation end to end: it starts a real kube-apiserver
// and etcd, runs a controller binary as its own process, creates N LoadBalancer Services with
// many parallel creators and watches until every one has an address. It measures the time to
// allocate all, the per-Service latency from the Create call to the first status with an
// address (p50/p99/max), the controller's CPU seconds and peak RSS, and checks that no address
// was handed out twice.
//
// The same run measures MetalLB's controller (go.universe.tf/metallb v0.15.2, built from its
// module) on the same apiserver, one implementation after the other so they never share the
// CPU, and prints the ratios.
//
// Addresses come from 2001:db8::/32 (a documentation range: the IPv4 ones are too small for
// 5000 Services). Nothing is sent on any network: the benchmark only allocates.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fairlead-lb/fairlead/test/bench/samples"
	"github.com/fairlead-lb/fairlead/test/controlplane"
)

func main() {
	sizes := flag.String("services", "1000,5000", "Comma-separated numbers of Services, one round each.")
	creators := flag.Int("creators", 32, "Parallel Service creators.")
	impls := flag.String("impl", "metallb,fairlead", "Implementations to measure, in this order.")
	flag.StringVar(&fairleadArgs, "fairlead-args", "", "Extra flags for fairlead-controller, space-separated (e.g. --workers=16).")
	backlog := flag.Bool("backlog", true, "After each creation round, also time each controller draining a backlog of the same size created before it starts.")
	timeout := flag.Duration("timeout", 15*time.Minute, "Give up on one round after this long.")
	flag.StringVar(&samplesDir, "samples", samples.Dir(controlplane.RepoRoot()), "Directory the per-Service latencies are written to (controller-latency.json), for the plots.")
	flag.Parse()

	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fail(fmt.Errorf("bad -services %q", *sizes))
		}
		ns = append(ns, n)
	}
	if err := run(ns, strings.Split(*impls, ","), *creators, *backlog, *timeout); err != nil {
		fail(err)
	}
}

var fairleadArgs, samplesDir string

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func run(sizes []int, impls []string, creators int, backlog bool, timeout time.Duration) error {
	work, err := os.MkdirTemp("", "fairlead-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	builders := map[string]func(string) (*implementation, error){"fairlead": fairlead, "metallb": metallb}
	var chosen []*implementation
	var crdDirs []string
	for _, name := range impls {
		b, ok := builders[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("unknown implementation %q (want fairlead or metallb)", name)
		}
		im, err := b(work)
		if err != nil {
			return fmt.Errorf("preparing %s: %w", name, err)
		}
		chosen = append(chosen, im)
		crdDirs = append(crdDirs, im.crds...)
	}

	fmt.Fprintln(os.Stderr, "starting kube-apiserver and etcd")
	env, err := controlplane.Start(controlplane.Options{
		// IPv6 ClusterIPs too, so single-stack IPv6 Services can be created; the /108 leaves room
		// for a million of them.
		ServiceCIDRs: "10.96.0.0/16,fd00:10:96::/108",
		CRDDirs:      crdDirs,
	})
	if err != nil {
		return err
	}
	defer env.Stop()
	// The creators must not be what limits the rate.
	env.Config.QPS, env.Config.Burst = 5000, 10000
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := env.Kubeconfig(kubeconfig); err != nil {
		return err
	}

	ctx := context.Background()
	file := samples.Begin("test/bench/controller")
	var results []result
	modes := []bool{false}
	if backlog {
		modes = append(modes, true)
	}
	k := 0
	for _, n := range sizes {
		for _, b := range modes {
			for _, im := range chosen {
				r := round{env: env, impl: im, n: n, creators: creators, kubeconfig: kubeconfig, backlog: b,
					namespace: fmt.Sprintf("bench-%s-%d-%d", im.name, n, k),
					prefix:    fmt.Sprintf("2001:db8:%x::/112", 0xb00+k)}
				k++
				fmt.Fprintf(os.Stderr, "%s: %d Services (backlog %v)\n", im.name, n, b)
				res, err := r.run(ctx, timeout)
				if err != nil {
					return fmt.Errorf("%s with %d Services: %w", im.name, n, err)
				}
				results = append(results, res)
			}
		}
	}
	printTable(os.Stdout, results, creators)
	for _, r := range results {
		file.AddDurations(r.latencies, "impl", r.impl, "services", strconv.Itoa(r.n), "created", mode(r.backlog), "measure", "latency")
		file.AddDurations([]time.Duration{r.wall}, "impl", r.impl, "services", strconv.Itoa(r.n), "created", mode(r.backlog), "measure", "all allocated")
	}
	path, err := file.Write(samplesDir, "controller-latency")
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "wrote", path)
	return nil
}

// implementation is a controller under test: how to configure it and start it.
type implementation struct {
	name  string
	crds  []string
	class string
	// pool creates the address pool for one round.
	pool func(ctx context.Context, r *round) error
	// start runs the controller process.
	start func(r *round) *exec.Cmd
}

func goCmd(dir string, env []string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// processStats reads a live process's CPU seconds (user+system) and peak RSS in bytes.
func processStats(pid int) (cpu float64, peak int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	const ticks = 100 // USER_HZ on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			peak = kb * 1024
		}
	}
	return (utime + stime) / ticks, peak, nil
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
