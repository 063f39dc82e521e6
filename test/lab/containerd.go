package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/fairlead-lb/fairlead/test/images"
)

// Each kubelet node runs a containerd of its own (Debian's 1.6), started in the node's network
// namespace so that hostNetwork Pods land there, with every directory it writes under the node's
// directory in the lab's state: root, state, runc's state, its socket, the Pods' network
// namespaces. Only the shims' sockets go to containerd 1.6's fixed /run/containerd/s (named by
// a hash that includes this containerd's socket, so nodes do not collide; `lab down` sweeps
// them).

// Binaries of the kubelet nodes that come from Debian packages (make packages installs them).
const (
	containerdBin = "/usr/bin/containerd"
	runcBin       = "/usr/sbin/runc"
	cniBinDir     = "/usr/lib/cni"
)

func (l *Lab) nodeDir(n Node) string        { return filepath.Join(l.State, "nodes", n.Name) }
func (l *Lab) containerdRoot(n Node) string { return filepath.Join(l.nodeDir(n), "containerd", "root") }
func (l *Lab) containerdState(n Node) string {
	return filepath.Join(l.nodeDir(n), "containerd", "state")
}
func (l *Lab) containerdSocket(n Node) string {
	return filepath.Join(l.nodeDir(n), "containerd", "containerd.sock")
}
func (l *Lab) cniConfDir(n Node) string { return filepath.Join(l.nodeDir(n), "cni", "net.d") }
func (l *Lab) cniNetwork(n Node) string { return n.NS } // names the CNI result cache files
func (l *Lab) containerdConfig(n Node) string {
	return filepath.Join(l.nodeDir(n), "containerd", "config.toml")
}
func (l *Lab) containerdAddress(n Node) string { return "unix://" + l.containerdSocket(n) }

// ContainerdSocket is node n's containerd socket (for `ctr --address`).
func (l *Lab) ContainerdSocket(n Node) string { return l.containerdSocket(n) }

// containerdTOML is node n's containerd configuration: the CRI plugin with runc on cgroupfs
// (the kubelet's driver), the lab's sandbox image, CNI from Debian's plugins, and nothing in
// containerd's default places.
func (l *Lab) containerdTOML(n Node) string {
	state := l.containerdState(n)
	return fmt.Sprintf(`version = 2
root = %q
state = %q
temp = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Lowering an oom_score_adj takes CAP_SYS_RESOURCE, which some hosts (containers, some VMs)
  # do not give even to root: runc then fails every sandbox (its pause container asks for
  # -998). Restricted, no container asks for less than containerd has.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
        Root = %q
        SystemdCgroup = false
`, l.containerdRoot(n), state, filepath.Join(state, "tmp"), l.containerdSocket(n),
		filepath.Join(state, "opt"), images.PauseRef, cniBinDir, l.cniConfDir(n), runcBin, filepath.Join(state, "runc"))
}

// cniConflist is node n's Pod network: Debian's bridge plugin on the node's cbr0 (the
// topology made it, with the first address of each pod CIDR as the Pods' gateway) and
// host-local addresses from both pod CIDRs, its allocations kept under the node's directory.
// Other nodes' pod CIDRs are routed over the LAN by the node's namespace (topology).
func (l *Lab) cniConflist(n Node) ([]byte, error) {
	gw, gw6 := n.PodV4.Addr().Next(), n.PodV6.Addr().Next()
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       l.cniNetwork(n),
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "cbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": filepath.Join(l.nodeDir(n), "cni", "ipam"),
					"ranges": [][]map[string]string{
						{{"subnet": n.PodV4.String(), "gateway": gw.String()}},
						{{"subnet": n.PodV6.String(), "gateway": gw6.String()}},
					},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}},
				},
			},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// startContainerd writes node n's containerd and CNI configuration and starts containerd in
// the node's namespace; it returns once containerd answers on its socket.
func (l *Lab) startContainerd(ctx context.Context, n Node) error {
	for _, d := range []string{l.containerdRoot(n), l.containerdState(n), l.cniConfDir(n)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	conflist, err := l.cniConflist(n)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.cniConfDir(n), "10-lab.conflist"), conflist, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(l.containerdConfig(n), []byte(l.containerdTOML(n)), 0o644); err != nil {
		return err
	}
	if err := l.daemon(n.NS, "containerd-"+n.Name, containerdBin, "--config", l.containerdConfig(n)); err != nil {
		return err
	}
	return waitUntil(30*time.Second, func() error {
		if ctx.Err() != nil {
			return nil
		}
		c, err := net.DialTimeout("unix", l.containerdSocket(n), time.Second)
		if err != nil {
			return fmt.Errorf("containerd of %s does not answer (see %s): %w", n.Name, l.logPath("containerd-"+n.Name), err)
		}
		return c.Close()
	})
}
