package conformance

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/lab"
)

// The lab every test uses (set in the child process that runs the tests).
var theLab *lab.Lab

var suite = lab.Suite{Name: "cf", NodeMode: lab.KubeletNodes, Static: true, K8s: K8s, Ready: ImportTestImages}

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, func(l *lab.Lab) error {
		theLab = l
		return nil
	}))
}

// TestServicesConformance runs the Services conformance specs; each is a subtest that fails
// when its spec fails, with Ginkgo's failure message.
func TestServicesConformance(t *testing.T) {
	r, err := RunE2E(context.Background(), theLab, t.TempDir(), 30*time.Minute, 1,
		Selection{Focus: ServicesFocus, Labels: ServicesLabels})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("e2e.test ran %s", r.Took.Round(time.Second))
	if r.RunErr != nil {
		t.Logf("e2e.test: %v; the end of its output:\n%s", r.RunErr, r.LogTail)
	}
	ran := 0
	for _, c := range r.Cases {
		if !c.Selected() {
			continue
		}
		if c.Spec() != "" {
			ran++
		}
		t.Run(strings.TrimPrefix(c.Name, "[It] "), func(t *testing.T) {
			if c.Status != "passed" {
				t.Errorf("%s: %s", c.Status, c.Why())
			}
		})
	}
	if ran != ServicesSpecs {
		t.Errorf("%d specs ran; the selection has %d in v1.37.2", ran, ServicesSpecs)
	}
}
