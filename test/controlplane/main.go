package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// ControlPlane is the kube-apiserver and etcd a package's tests share.
type ControlPlane struct {
	*Env
	// Kubeconfig is a kubeconfig file for the processes the tests start.
	Kubeconfig string
	// Dir is the package's scratch directory, removed after the tests.
	Dir string

	cleanups []func()
}

// Cleanup registers f to run once the tests have run (or ready failed), before the control
// plane stops, the last registered first: for what ready started beside it (a manager, moto),
// which a TestMain cannot stop itself since Main exits.
func (cp *ControlPlane) Cleanup(f func()) { cp.cleanups = append(cp.cleanups, f) }

// Main is the TestMain of a package whose tests share one control plane: it
// starts it with opts, calls ready (to build binaries, make clients), runs the tests, stops
// the control plane and exits with the tests' code. In the fast lane it runs no test: every
// test of such a package needs the apiserver.
func Main(m *testing.M, opts Options, ready func(*ControlPlane) error) {
	if kit.Short() {
		kit.SkipPackage("a kube-apiserver")
	}
	os.Exit(runWithControlPlane(m, opts, ready))
}

func runWithControlPlane(m *testing.M, opts Options, ready func(*ControlPlane) error) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "fairlead-test-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	env, err := Start(opts)
	if err != nil {
		return fail(err)
	}
	defer func() { _ = env.Stop() }()
	cp := &ControlPlane{Env: env, Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig")}
	defer func() {
		for i := len(cp.cleanups) - 1; i >= 0; i-- {
			cp.cleanups[i]()
		}
	}()
	if err := env.Kubeconfig(cp.Kubeconfig); err != nil {
		return fail(err)
	}
	if ready != nil {
		if err := ready(cp); err != nil {
			return fail(err)
		}
	}
	return m.Run()
}

// StartForTest starts a control plane of the test's own, stopped when it ends.
func StartForTest(tb testing.TB, opts Options) *Env {
	tb.Helper()
	kit.Heavy(tb, "a kube-apiserver")
	env, err := Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = env.Stop() })
	return env
}
