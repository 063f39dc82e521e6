// Command soak brings up a lab of its own (agent nodes: namespaces flsoak-<pid>-*, state in
// /run/fairlead-soak-<pid>, a free relay port), soaks it (test/soak) for -duration under the
// fault schedule drawn from -seed, prints the report's tables, takes the lab down and checks
// that nothing is left. It exits 1 when the run failed (test/soak's Report.Failures) or left
// something behind. `make soak` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fairlead-lb/fairlead/test/lab"
	"github.com/fairlead-lb/fairlead/test/soak"
)

func main() {
	duration := flag.Duration("duration", 20*time.Minute, "How long the faults go on (whole rounds of every kind; at least one).")
	seed := flag.Int64("seed", 0, "Seed of the fault schedule and the Service churn; 0 draws one (printed, to replay the run).")
	kinds := flag.String("kinds", "", "Comma-separated kinds of fault the rounds hold (say pause-apiserver, to study the pauses alone); empty: every kind.")
	pauseMin := flag.Duration("pause-min", 0, "Shortest apiserver pause (0: the schedule's default).")
	pauseMax := flag.Duration("pause-max", 0, "Longest apiserver pause (0: the schedule's default).")
	flag.StringVar(&keepLogs, "logs", "", "Directory to copy the lab's logs to before it goes down (the lab's state goes with it).")
	flag.Parse()
	if *seed == 0 {
		*seed = time.Now().UnixNano() % 1_000_000
	}
	// The seed first: a run that dies half-way is still replayable.
	fmt.Printf("soak: seed %d, duration %s\n", *seed, *duration)
	sched := soak.LongSchedule(*duration)
	if *kinds != "" {
		for _, k := range strings.Split(*kinds, ",") {
			k := soak.Kind(strings.TrimSpace(k))
			if !slices.Contains(soak.Kinds, k) {
				fmt.Fprintf(os.Stderr, "soak: -kinds: unknown kind %q (known: %v)\n", k, soak.Kinds)
				os.Exit(2)
			}
			sched.Kinds = append(sched.Kinds, k)
		}
	}
	if *pauseMin > 0 {
		sched.PauseMin = *pauseMin
	}
	if *pauseMax > 0 {
		sched.PauseMax = *pauseMax
	}
	if sched.PauseMax < sched.PauseMin {
		sched.PauseMax = sched.PauseMin
	}
	os.Exit(run(*seed, sched))
}

var keepLogs string

func run(seed int64, sched soak.ScheduleOptions) (code int) {
	fail := func(args ...any) int {
		fmt.Fprintln(os.Stderr, append([]any{"soak:"}, args...)...)
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("the lab creates network namespaces: run as root")
	}
	root := lab.RepoRoot()
	tmp, err := os.MkdirTemp("", "fairlead-soak-bin-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	l := &lab.Lab{Prefix: fmt.Sprintf("flsoak-%d-", os.Getpid()), State: fmt.Sprintf("/run/fairlead-soak-%d", os.Getpid()),
		Bin: tmp, CRDs: filepath.Join(root, "charts/fairlead/crds"), NodeMode: lab.AgentNodes,
		ControllerReplicas: 2} // as the chart runs it: the fault kills the leader
	if l.K8sBin, err = lab.K8sBin(root, "kube-apiserver etcd kube-controller-manager kubectl"); err != nil {
		return fail(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp+"/",
		"./cmd/fairlead-controller", "./cmd/fairlead-speaker", "./test/lab/cmd/fairlead-lab", "./test/echo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fail(fmt.Sprintf("building the binaries: %v\n%s", err, out))
	}
	if l.HostPort, err = freePort(); err != nil {
		return fail(err)
	}
	if l.PrometheusPort, err = freePort(); err != nil {
		return fail(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "soak: %v: stopping, then taking the lab down\n", sig)
		cancel()
	}()
	host, _ := lab.SnapshotHost()
	defer func() {
		if keepLogs != "" {
			if out, err := exec.Command("cp", "-a", filepath.Join(l.State, "logs"), keepLogs).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "soak: keeping the logs: %v\n%s", err, out)
			}
		}
		if err := l.Down(); err != nil {
			fmt.Fprintf(os.Stderr, "soak: taking the lab down: %v\n", err)
			code = 1
		}
		if left := l.Leftovers(host); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "soak: the lab left behind:\n  %s\n", strings.Join(left, "\n  "))
			code = 1
		}
	}()
	var out strings.Builder
	l.Out = &out
	t := time.Now()
	if err := l.Up(ctx); err != nil {
		lab.DumpLogs(l)
		return fail(fmt.Sprintf("lab up failed: %v\n%s", err, out.String()))
	}
	l.Out = nil
	fmt.Printf("soak: lab up in %s\n", time.Since(t).Round(time.Millisecond))

	r, err := soak.Run(ctx, soak.Options{Lab: l, Seed: seed, Schedule: sched, Out: os.Stdout})
	if err != nil {
		lab.DumpLogs(l)
		return fail(err)
	}
	fmt.Println()
	r.Write(os.Stdout)
	if f := r.Failures(); len(f) > 0 {
		lab.DumpLogs(l)
		fmt.Fprintf(os.Stderr, "\nsoak: FAILED (replay with -seed %d):\n  %s\n", seed, strings.Join(f, "\n  "))
		return 1
	}
	fmt.Printf("\nsoak: passed (seed %d)\n", seed)
	return 0
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
