// Package kit is the tests' shared support: one way to wait for a condition (Eventually), one
// way to get a Fairlead binary (Binary and Build: built once per source, shared by every test
// binary and worktree on the machine), one TestMain for packages whose tests share a control
// plane (controlplane.Main, beside the control plane it starts), and the line between the
// fast lane and the rest (Heavy).
//
// `make unit` runs `go test -short`: everything that needs root, a built binary, a
// kube-apiserver or another server (moto, FRR, a lab) says so through Heavy or one of the
// helpers that call it (netns.Require, Binary, controlplane.Main and StartForTest,
// awsapi.Env), and is skipped there. Without -short nothing is skipped: a missing
// prerequisite fails the test.
package kit

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// Short reports whether the tests run in the fast lane (-short). It is safe in a TestMain,
// before m.Run has parsed the flags.
func Short() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	return testing.Short()
}

// Heavy skips tb in the fast lane: it needs what `make unit` does not give (why says what).
func Heavy(tb testing.TB, why string) {
	tb.Helper()
	if Short() {
		tb.Skipf("needs %s: not in the fast lane (-short)", why)
	}
}

// SkipPackage ends a TestMain in the fast lane when every test of the package is heavy.
func SkipPackage(why string) {
	fmt.Fprintf(os.Stderr, "every test here needs %s: none runs in the fast lane (-short)\n", why)
	os.Exit(0)
}
