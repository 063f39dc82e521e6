// Package conformance runs Kubernetes' own end-to-end tests for Services (e2e.test, built from
// k8s.io/kubernetes/test/e2e) against a lab of real kubelets where Fairlead, installed by its
// chart, is the only service proxy: no kube-proxy runs anywhere. e2e.test runs from the client
// namespace behind the router, outside the nodes' subnet, as an operator's machine would.
//
// `go test` runs the Services conformance specs (the lab's namespaces are flcf-<pid>-*);
// `make conformance` (./table) runs a wider selection on Fairlead and on kube-proxy and prints
// both results side by side.
package conformance

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fairlead-lb/fairlead/test/images"
	"github.com/fairlead-lb/fairlead/test/lab"
)

// The Services conformance specs: 15 in v1.37.2.
const (
	ServicesFocus  = `\[sig-network\] Services`
	ServicesLabels = "Conformance"
	ServicesSpecs  = 15
)

// K8s are the Kubernetes binaries a conformance run needs (build-control-plane.sh's WANT).
const K8s = "kube-apiserver etcd kube-controller-manager kubectl kubelet kube-scheduler coredns e2e.test agnhost regression-issue-74839"

// Case is one spec's result, from Ginkgo's JUnit report.
type Case struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"` // passed, failed, skipped, ...
	Time    float64 `xml:"time,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

// Selected says whether the spec was in the selection: Ginkgo reports the others as skipped
// with the bare message "skipped" (a spec that skips itself says why).
func (c Case) Selected() bool {
	return c.Status != "skipped" || (c.Skipped != nil && c.Skipped.Message != "skipped")
}

// Spec is the spec's name without Ginkgo's node prefix; "" for setup nodes.
func (c Case) Spec() string {
	if n, ok := strings.CutPrefix(c.Name, "[It] "); ok {
		return n
	}
	return ""
}

// Why is the failure's message, or "".
func (c Case) Why() string {
	switch {
	case c.Failure != nil:
		return strings.TrimSpace(c.Failure.Message)
	case c.Error != nil:
		return strings.TrimSpace(c.Error.Message)
	case c.Skipped != nil:
		return strings.TrimSpace(strings.TrimPrefix(c.Skipped.Message, "skipped - "))
	}
	return ""
}

// Report is what one run of e2e.test gave.
type Report struct {
	Cases   []Case
	Took    time.Duration
	Log     string // e2e.test's output
	RunErr  error  // its exit status
	LogTail string
}

// ImportTestImages puts the images e2e.test's specs run, under the names its manifest gives,
// into every node's containerd: nothing is ever pulled.
func ImportTestImages(ctx context.Context, l *lab.Lab) error {
	var tarballs []string
	for _, img := range []struct {
		name  string
		build func(context.Context) (string, error)
	}{{"agnhost", images.Agnhost}, {"busybox", images.BusyBox}, {"regression-issue-74839", images.Regression74839},
		{"distroless-iptables", images.DistrolessIptables}} {
		t, err := img.build(ctx)
		if err != nil {
			return fmt.Errorf("the %s image: %w", img.name, err)
		}
		tarballs = append(tarballs, t)
	}
	for _, n := range l.Nodes() {
		for _, t := range tarballs {
			if err := images.Import(ctx, l.ContainerdSocket(n), t); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// Selection says which specs a run takes (Ginkgo's focus, skip and label filter).
type Selection struct {
	Focus, Skip, Labels string
}

// RunE2E runs e2e.test from the lab's client behind the router with the given selection,
// writing its output and report into dir. With procs > 1 the ginkgo CLI runs it in that many processes, as
// upstream's hack/ginkgo-e2e.sh does (Serial specs must be left out then).
func RunE2E(ctx context.Context, l *lab.Lab, dir string, timeout time.Duration, procs int, sel Selection) (*Report, error) {
	report := filepath.Join(dir, "junit.xml")
	ctx, cancel := context.WithTimeout(ctx, timeout+2*time.Minute)
	defer cancel()
	// --num-nodes: without it the provider "local" says -1, and the specs that need two or
	// more nodes skip themselves.
	e2eArgs := []string{"--kubeconfig", l.LANKubeconfig(), "--provider", "local", "--report-dir", dir,
		"--num-nodes", fmt.Sprint(len(l.Nodes()))}
	// The ginkgo CLI puts its report under --output-dir (an absolute path included): name it
	// relative there; e2e.test alone takes the path as given.
	junit := report
	if procs > 1 {
		junit = filepath.Base(report)
	}
	ginkgoArgs := []string{"junit-report=" + junit, "no-color", "timeout=" + timeout.String()}
	for _, f := range [][2]string{{"focus", sel.Focus}, {"skip", sel.Skip}, {"label-filter", sel.Labels}} {
		if f[1] != "" {
			ginkgoArgs = append(ginkgoArgs, f[0]+"="+f[1])
		}
	}
	// From behind the router, outside the nodes' subnet: the externalTrafficPolicy Local specs
	// tell a preserved client address from a node's by the nodes' /16.
	args := []string{"netns", "exec", l.ClientBGP()}
	if procs > 1 {
		args = append(args, filepath.Join(l.K8sBin, "ginkgo"), "run", fmt.Sprintf("--procs=%d", procs), "--output-dir="+dir)
		for _, a := range ginkgoArgs {
			args = append(args, "--"+a)
		}
		args = append(append(args, filepath.Join(l.K8sBin, "e2e.test"), "--"), e2eArgs...)
	} else {
		args = append(append(args, filepath.Join(l.K8sBin, "e2e.test")), e2eArgs...)
		for _, a := range ginkgoArgs {
			args = append(args, "--ginkgo."+a)
		}
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	r := &Report{Log: filepath.Join(dir, "e2e.log")}
	logFile, err := os.Create(r.Log)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	r.RunErr = cmd.Run()
	logFile.Close()
	r.Took = time.Since(start)
	r.LogTail = tail(r.Log, 60)
	rr, err := ReadReport(report)
	if err != nil {
		return r, fmt.Errorf("%w (e2e.test: %v)\n%s", err, r.RunErr, r.LogTail)
	}
	r.Cases = rr.Cases
	return r, nil
}

// ReadReport reads the cases of a Ginkgo JUnit report.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("e2e.test's report: %w", err)
	}
	var j struct {
		Suites []struct {
			Cases []Case `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	r := &Report{}
	for _, s := range j.Suites {
		r.Cases = append(r.Cases, s.Cases...)
	}
	return r, nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
