package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Leftovers lists what of the lab is still on the machine (after Down, nothing should be): its
// namespaces, processes run from its state directory, mounts under it, its nodes' cgroup roots
// and the state directory itself; and the kubelet sysctls that differ from before (given by
// HostSysctls before Up; nil skips that check), unless another kubelet lab still runs.
func (l *Lab) Leftovers(sysctlsBefore map[string]string) []string {
	var out []string
	for _, ns := range l.Namespaces() {
		out = append(out, "network namespace "+ns)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), l.State+"/") {
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
	if sysctlsBefore != nil && len(l.otherHostRecords()) == 0 {
		current, _ := HostSysctls()
		for name, now := range current {
			if before, ok := sysctlsBefore[name]; ok && before != now {
				out = append(out, fmt.Sprintf("sysctl %s = %s (was %s)", name, now, before))
			}
		}
	}
	return out
}
