package conformance

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ServicesFocus and ServicesLabels select every `[sig-network] Services ... [Conformance]` spec:
// 15 in v1.37.2.
const (
	ServicesFocus  = `\[sig-network\] Services`
	ServicesLabels = "Conformance"
	servicesSpecs  = 15
)

// junit is the part of Ginkgo's JUnit report read here.
type junit struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Time    string `xml:"time,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// runE2E runs e2e.test from the LAN client's namespace with the given selection and returns
// its JUnit report; its output goes to a file whose end is logged on failure.
func runE2E(t *testing.T, timeout time.Duration, args ...string) *junit {
	t.Helper()
	dir := t.TempDir()
	report := filepath.Join(dir, "junit.xml")
	ctx, cancel := context.WithTimeout(context.Background(), timeout+2*time.Minute)
	defer cancel()
	cmdArgs := append([]string{"netns", "exec", theLab.ClientL2(), filepath.Join(theLab.K8sBin, "e2e.test"),
		"--kubeconfig", theLab.LANKubeconfig(), "--provider", "local", "--report-dir", dir,
		"--ginkgo.junit-report", report, "--ginkgo.no-color", "--ginkgo.timeout", timeout.String()}, args...)
	cmd := exec.CommandContext(ctx, "ip", cmdArgs...)
	logPath := filepath.Join(dir, "e2e.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	runErr := cmd.Run()
	logFile.Close()
	t.Logf("e2e.test ran %s", time.Since(start).Round(time.Second))
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("e2e.test wrote no report (%v): %v\n%s", runErr, err, tail(logPath, 60))
	}
	var r junit
	if err := xml.Unmarshal(b, &r); err != nil {
		t.Fatalf("reading %s: %v", report, err)
	}
	if runErr != nil {
		t.Logf("e2e.test: %v; the end of its output:\n%s", runErr, tail(logPath, 40))
	}
	return &r
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestServicesConformance runs the Services conformance specs; each is a subtest that fails
// when its spec fails, with Ginkgo's failure message.
func TestServicesConformance(t *testing.T) {
	r := runE2E(t, 30*time.Minute, "--ginkgo.focus", ServicesFocus, "--ginkgo.label-filter", ServicesLabels)
	ran := 0
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			if c.Status == "skipped" {
				continue
			}
			spec := strings.HasPrefix(c.Name, "[It] ")
			if spec {
				ran++
			}
			t.Run(strings.TrimPrefix(c.Name, "[It] "), func(t *testing.T) {
				switch {
				case c.Failure != nil:
					t.Errorf("%s: %s\n%s", c.Status, c.Failure.Message, c.Failure.Text)
				case c.Error != nil:
					t.Errorf("%s: %s", c.Status, c.Error.Message)
				case c.Status != "passed":
					t.Errorf("status %q", c.Status)
				}
			})
		}
	}
	if ran != servicesSpecs {
		t.Errorf("%d specs ran; the selection has %d in v1.37.2", ran, servicesSpecs)
	}
	fmt.Printf("conformance: %d Services specs ran\n", ran)
}
