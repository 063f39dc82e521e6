package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// `fairleadctl status`, run as a user runs it (the binary, the lab's kubeconfig through the
// relay), shows both pools Ready with their usage, the demo's Services with their addresses
// and the node announcing the layer 2 one, and every node's BGP session.
func TestFairleadctlStatus(t *testing.T) {
	_, l2IP := demoService(t, "echo-l2")
	_, bgpIP := demoService(t, "echo-bgp")
	var out string
	kit.Eventually(t, converge, "fairleadctl status shows the lab", func(context.Context) error {
		owner, err := announcedBy("echo-l2", l2IP)
		if err == nil && len(owner) != 1 {
			err = fmt.Errorf("echo-l2 announced by %v", owner)
		}
		if err != nil {
			return err
		}
		b, err := exec.Command(filepath.Join(theLab.Bin, "fairleadctl"), "status", "--kubeconfig", theLab.Kubeconfig()).CombinedOutput()
		out = string(b)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, re := range []string{
			`(?m)^lab-bgp +True +\d+ used, \d+ free +\d+ used, [0-9.e+]+ free +203\.0\.113\.0/24`,
			`(?m)^lab-l2 +True +\d+ used, \d+ free +\d+ used, [0-9.e+]+ free +198\.51\.100\.0/24`,
			`(?m)^demo/echo-l2 .*` + regexp.QuoteMeta(l2IP+"@"+owner[0]+"/ARP(eth0)") + `.*Allocated`,
			`(?m)^demo/echo-bgp .*` + regexp.QuoteMeta(bgpIP) + `.*Allocated`,
		} {
			if !regexp.MustCompile(re).MatchString(out) {
				return fmt.Errorf("no line matching %s", re)
			}
		}
		for _, n := range allNodeNames() {
			if !regexp.MustCompile(`(?m)^router \(192\.0\.2\.1 AS64500\) +` + n + ` +Established`).MatchString(out) {
				return fmt.Errorf("no Established session for %s", n)
			}
		}
		if strings.Contains(out, "Unknown") {
			return fmt.Errorf("a pool without status")
		}
		return nil
	})
	t.Logf("fairleadctl status:\n%s", out)
}
