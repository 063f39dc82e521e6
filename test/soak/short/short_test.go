// Package short runs a short soak (test/soak) on a lab of its own as part of `make test`:
// every kind of fault once, the apiserver paused 30 s, with clients and Service churn going
// on, and fails on any changed, duplicate or double-announced address, on a fault the lab
// does not recover from, and on a lost connection where the design promises none.
//
// The lab's namespaces are flsoak-<pid>-*, its state /run/fairlead-soak-<pid> (lab.Suite).
package short

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/lab"
	"github.com/fairlead-lb/fairlead/test/soak"
)

var theLab *lab.Lab

// Two controller replicas, as the chart runs them: the fault kills the leader.
var suite = lab.Suite{Name: "soak", NodeMode: lab.AgentNodes, ControllerReplicas: 2, K8s: "kube-apiserver etcd kube-controller-manager kubectl"}

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, func(l *lab.Lab) error { theLab = l; return nil }))
}

// SOAK_SEED replays a run; without it each run draws another order of faults and nodes (the
// seed is in the log).
func seed(t *testing.T) int64 {
	if s := os.Getenv("SOAK_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED=%q: %v", s, err)
		}
		return n
	}
	return time.Now().UnixNano() % 1_000_000
}

func TestShortSoak(t *testing.T) {
	s := seed(t)
	var out strings.Builder
	r, err := soak.Run(context.Background(), soak.Options{Lab: theLab, Seed: s, Schedule: soak.ShortSchedule, Out: &logWriter{t}})
	if err != nil {
		t.Fatalf("seed %d: %v", s, err)
	}
	r.Write(&out)
	t.Logf("seed %d:\n%s", s, out.String())
	if len(r.Results) != len(soak.Kinds) {
		t.Errorf("%d faults ran, want each of the %d kinds once", len(r.Results), len(soak.Kinds))
	}
	for _, f := range r.Failures() {
		t.Errorf("seed %d (replay with SOAK_SEED=%d): %s", s, s, f)
	}
}

// logWriter sends the run's progress to the test's log as it goes.
type logWriter struct{ t *testing.T }

func (w *logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
