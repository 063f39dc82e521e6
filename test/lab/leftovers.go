package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Leftovers lists what of the lab is still on the machine (after Down, nothing should be): its
// namespaces, processes run from its state directory, mounts under it, its nodes' cgroup roots
// and the state directory itself; and, unless another kubelet lab still runs, the kubelet
// sysctls that differ from before and the host directories that were not there before (before
// is SnapshotHost's before Up; nil skips these checks).
func (l *Lab) Leftovers(before *HostSnapshot) []string {
	var out []string
	for _, ns := range l.Namespaces() {
		out = append(out, "network namespace "+ns)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		// A file under the state directory, or the directory itself as an argument (the relay's
		// and prometheus-sd's --state).
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), l.State+"/") && !strings.Contains(string(b), "\x00"+l.State+"\x00") {
			continue
		}
		out = append(out, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")))
	}
	for _, m := range MountsUnder(l.State) {
		out = append(out, "mount "+m)
	}
	if mounts, err := cgroupMounts(); err == nil {
		for _, m := range mounts {
			for _, n := range l.Nodes() {
				if _, err := os.Stat(filepath.Join(m, l.cgroupRoot(n))); err == nil {
					out = append(out, "cgroup "+filepath.Join(m, l.cgroupRoot(n)))
				}
			}
		}
	}
	if _, err := os.Stat(l.State); err == nil {
		out = append(out, "state directory "+l.State)
	}
	if before != nil && len(l.otherHostRecords()) == 0 {
		if now, err := SnapshotHost(); err == nil {
			for name, v := range now.Sysctls {
				if was, ok := before.Sysctls[name]; ok && was != v {
					out = append(out, fmt.Sprintf("sysctl %s = %s (was %s)", name, v, was))
				}
			}
			for _, d := range now.Dirs {
				if !slices.Contains(before.Dirs, d) {
					out = append(out, "host directory "+d)
				}
			}
		}
	}
	return out
}
