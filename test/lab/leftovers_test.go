package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A daemon that names the state directory only as an argument (the relay, prometheus-sd) is a
// leftover; one of another lab whose state directory merely starts the same way is not.
func TestLeftoversFindsDaemonsByState(t *testing.T) {
	state := filepath.Join(t.TempDir(), "fairlead-x")
	l := &Lab{Prefix: fmt.Sprintf("fllo%d-", os.Getpid()), State: state}
	var pids []int
	for _, arg := range []string{state, state + "2"} {
		cmd := exec.Command("sh", "-c", "sleep 30", "daemon", "--state", arg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	left := strings.Join(l.Leftovers(nil), "\n")
	if !strings.Contains(left, fmt.Sprintf("process %d:", pids[0])) {
		t.Errorf("the daemon with --state %s is not listed:\n%s", state, left)
	}
	if strings.Contains(left, fmt.Sprintf("process %d:", pids[1])) {
		t.Errorf("the daemon of %s2 is listed:\n%s", state, left)
	}
}
