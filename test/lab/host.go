package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A kubelet lab changes a few things outside its namespaces and its state directory: kubelet
// writes host-wide sysctls (setupKernelTunables), and kubelet, containerd's shims and the CNI
// library create directories of their own in fixed places. The lab records how they were before
// its first kubelet starts and puts them back when it goes down, also a lab that crashed (the
// next `lab up` or `lab down` of it does).
//
// Two kubelet labs may run at once (a user's `make lab` and a test's): the first one records
// the host as it was, a later one copies that record, and only the last one down restores it.
// Each lab registers its state directory in hostLabsDir for as long as it holds a record.

// kubeletSysctls are the host-wide sysctls kubelet 1.37 sets when protectKernelDefaults is off.
var kubeletSysctls = []string{"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes"}

// hostDirs are the directories outside the lab's state that its kubelets, containerds and CNI
// plugins create when missing: container log links, the shims' sockets, the CNI result cache,
// and the device-plugin directory kubelet hard-codes whatever its --root-dir.
var hostDirs = []string{"/var/log/containers", "/run/containerd/s", "/run/containerd", "/var/lib/cni/results", "/var/lib/cni",
	devicePluginDir, "/var/lib/kubelet"}

// devicePluginDir holds what each kubelet puts there, whichever started last: its
// registration socket and its device checkpoint.
const devicePluginDir = "/var/lib/kubelet/device-plugins"

var devicePluginFiles = []string{"kubelet.sock", "kubelet_internal_checkpoint"}

// hostLabsDir registers the state directories of the kubelet labs holding a host record.
var hostLabsDir = "/run/fairlead-labs"

// hostRecord is the host as it was before a kubelet lab changed it.
type hostRecord struct {
	Recorded time.Time         `json:"recorded"`
	Sysctls  map[string]string `json:"sysctls"` // name (dotted) → value
	Missing  []string          `json:"missing"` // directories of hostDirs that did not exist
}

func (l *Lab) hostRecordPath() string { return filepath.Join(l.State, "host.json") }

func readHostRecord(path string) (*hostRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r hostRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// otherHostRecords returns the records of the other kubelet labs registered in hostLabsDir,
// and drops registrations whose lab no longer holds a record.
func (l *Lab) otherHostRecords() []*hostRecord {
	entries, _ := os.ReadDir(hostLabsDir)
	var out []*hostRecord
	for _, e := range entries {
		link := filepath.Join(hostLabsDir, e.Name())
		state, err := os.Readlink(link)
		if err != nil {
			continue
		}
		if state == l.State {
			continue
		}
		r, err := readHostRecord(filepath.Join(state, "host.json"))
		if err != nil {
			_ = os.Remove(link)
			continue
		}
		out = append(out, r)
	}
	return out
}

func (l *Lab) hostLabLink() string {
	return filepath.Join(hostLabsDir, strings.ReplaceAll(strings.Trim(l.State, "/"), "/", "_"))
}

// recordHost writes the lab's host record (before any kubelet starts): a copy of another
// running kubelet lab's, or the host as it is now.
func (l *Lab) recordHost() error {
	var r *hostRecord
	if others := l.otherHostRecords(); len(others) > 0 {
		slices.SortFunc(others, func(a, b *hostRecord) int { return a.Recorded.Compare(b.Recorded) })
		r = others[0]
	} else {
		r = &hostRecord{Recorded: time.Now(), Sysctls: map[string]string{}}
		for _, name := range kubeletSysctls {
			v, err := os.ReadFile(sysctlPath(name))
			if err != nil {
				return fmt.Errorf("reading sysctl %s: %w", name, err)
			}
			r.Sysctls[name] = strings.TrimSpace(string(v))
		}
		for _, d := range hostDirs {
			if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
				r.Missing = append(r.Missing, d)
			}
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.hostRecordPath(), b, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(hostLabsDir, 0o755); err != nil {
		return err
	}
	_ = os.Remove(l.hostLabLink())
	return os.Symlink(l.State, l.hostLabLink())
}

// restoreHost puts back what the lab's record says, unless another kubelet lab still runs on
// the same changes (it restores them when it goes down). Without a record it does nothing.
func (l *Lab) restoreHost() error {
	if l.State == "" {
		return nil
	}
	r, err := readHostRecord(l.hostRecordPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_ = os.Remove(l.hostLabLink())
	defer os.Remove(l.hostRecordPath())
	if len(l.otherHostRecords()) > 0 {
		return nil
	}
	_ = os.Remove(hostLabsDir) // only when empty
	var errs []error
	for _, name := range kubeletSysctls {
		v, ok := r.Sysctls[name]
		if !ok {
			continue
		}
		if err := os.WriteFile(sysctlPath(name), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s=%s: %w", name, v, err))
		}
	}
	// hostDirs lists children before their parents. A directory still holding something is
	// someone else's now, and stays.
	for _, d := range hostDirs {
		if slices.Contains(r.Missing, d) {
			if d == devicePluginDir {
				for _, f := range devicePluginFiles {
					_ = os.Remove(filepath.Join(d, f))
				}
			}
			_ = os.Remove(d)
		}
	}
	return errors.Join(errs...)
}

// sysctlPath is the /proc/sys file of a dotted sysctl name.
func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// HostSnapshot is what a kubelet lab changes on the host, as it is at one moment (for tests:
// Leftovers compares with it).
type HostSnapshot struct {
	Sysctls map[string]string // name (dotted) → value
	Dirs    []string          // those of hostDirs that exist
}

// SnapshotHost reads the sysctls kubelet changes and which of the lab's host directories exist.
func SnapshotHost() (*HostSnapshot, error) {
	h := &HostSnapshot{Sysctls: map[string]string{}}
	for _, name := range kubeletSysctls {
		v, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			return nil, err
		}
		h.Sysctls[name] = strings.TrimSpace(string(v))
	}
	for _, d := range hostDirs {
		if _, err := os.Stat(d); err == nil {
			h.Dirs = append(h.Dirs, d)
		}
	}
	return h, nil
}
