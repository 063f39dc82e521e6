package lab

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// Two kubelet labs overlapping, as a user's `make lab` and TestKubeletLab do: the host as it
// was before the first is what comes back, and only when the last one goes down, whichever
// order they go down in. A "kubelet" here changes kernel.keys.root_maxkeys (harmless, and
// reset by the test) and creates a directory standing for /var/log/containers.
func TestHostRecordTwoLabs(t *testing.T) {
	kit.Heavy(t, "root (it writes sysctls)")
	if os.Geteuid() != 0 {
		t.Fatal("writes sysctls: run as root")
	}
	const key = "kernel.keys.root_maxkeys"
	orig, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(sysctlPath(key), orig, 0o644) })
	before, _ := strconv.Atoi(strings.TrimSpace(string(orig)))
	changed := strconv.Itoa(before + 1)

	tmp := t.TempDir()
	oldDirs, oldLabs := hostDirs, hostLabsDir
	hostDirs, hostLabsDir = []string{filepath.Join(tmp, "logs")}, filepath.Join(tmp, "labs")
	t.Cleanup(func() { hostDirs, hostLabsDir = oldDirs, oldLabs })

	kubeletRuns := func() {
		if err := os.WriteFile(sysctlPath(key), []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(hostDirs[0], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	value := func() string {
		b, _ := os.ReadFile(sysctlPath(key))
		return strings.TrimSpace(string(b))
	}
	newLab := func(name string) *Lab {
		l := &Lab{State: filepath.Join(tmp, name)}
		if err := os.MkdirAll(l.State, 0o755); err != nil {
			t.Fatal(err)
		}
		return l
	}

	for _, order := range [][2]string{{"a", "b"}, {"b", "a"}} {
		t.Run("down "+order[0]+" first", func(t *testing.T) {
			labs := map[string]*Lab{"a": newLab("a"), "b": newLab("b")}
			if err := labs["a"].recordHost(); err != nil {
				t.Fatal(err)
			}
			kubeletRuns()
			if err := labs["b"].recordHost(); err != nil { // sees the changed host
				t.Fatal(err)
			}
			kubeletRuns()
			if err := labs[order[0]].restoreHost(); err != nil {
				t.Fatal(err)
			}
			if got := value(); got != changed {
				t.Errorf("%s down while %s runs: %s = %s, want the kubelets' %s", order[0], order[1], key, got, changed)
			}
			if err := labs[order[1]].restoreHost(); err != nil {
				t.Fatal(err)
			}
			if got := value(); got != strconv.Itoa(before) {
				t.Errorf("both down: %s = %s, want %d", key, got, before)
			}
			if _, err := os.Stat(hostDirs[0]); err == nil {
				t.Errorf("%s, created by the kubelets, is left", hostDirs[0])
			}
			if entries, _ := os.ReadDir(hostLabsDir); len(entries) > 0 {
				t.Errorf("registrations left in %s: %v", hostLabsDir, entries)
			}
			// A second restore (a `lab down` after a `lab down`) changes nothing.
			_ = os.WriteFile(sysctlPath(key), []byte(changed), 0o644)
			if err := labs["a"].restoreHost(); err != nil || value() != changed {
				t.Errorf("restore without a record: %v, %s = %s", err, key, value())
			}
			_ = os.WriteFile(sysctlPath(key), orig, 0o644)
		})
	}
}
