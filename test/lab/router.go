package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The router's hold time: a node killed without closing its session (the lab's failover
// demo) loses its next hop after this long. Both ends offer it; BGP uses the smaller one.
const routerHoldTime = 9 * time.Second

// frrDir holds the router's configuration, pid files and sockets.
func (l *Lab) frrDir() string { return filepath.Join(l.State, "frr") }

// routerConfig is bgpd's configuration: one eBGP session per node, carrying IPv4 and IPv6
// (MP-BGP; IPv6 paths carry the node's IPv6 address as next hop), equal-cost multipath so
// that every node announcing an address becomes a next hop, and nothing sent back to the
// nodes (they only announce).
func (l *Lab) routerConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname %s\n", l.Router())
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n", ASNEdge, RouterV4)
	// FRR refuses to exchange eBGP routes without policies; the only policy the lab needs is
	// the outbound deny below.
	b.WriteString(" no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n")
	fmt.Fprintf(&b, " neighbor nodes peer-group\n neighbor nodes remote-as %d\n", ASNLab)
	fmt.Fprintf(&b, " neighbor nodes timers %d %d\n neighbor nodes timers connect 1\n",
		int(routerHoldTime.Seconds())/3, int(routerHoldTime.Seconds()))
	for _, n := range l.Nodes() {
		fmt.Fprintf(&b, " neighbor %s peer-group nodes\n", n.V4)
	}
	for _, af := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n  neighbor nodes activate\n  neighbor nodes route-map to-nodes out\n", af)
		fmt.Fprintf(&b, "  maximum-paths %d\n exit-address-family\n", Nodes)
	}
	b.WriteString("route-map to-nodes deny 10\n")
	return b.String()
}

// startRouter runs FRR (zebra and bgpd) in the router namespace as lab daemons. zebra puts
// what bgpd learns into the namespace's kernel table, which is how the client behind the
// router reaches BGP-announced addresses.
func (l *Lab) startRouter() error {
	for _, bin := range []string{"/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "vtysh"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found: install FRR (make packages)", bin)
		}
	}
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("user frr: %w (install FRR: make packages)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// FRR drops privileges to the frr user (vtysh insists on it), which must reach its own
	// directory. The state directory becomes traversable, not listable; pki stays 0700.
	if err := os.Chmod(l.State, 0o711); err != nil {
		return err
	}
	// Hash flows on ports too (the kernel's default hashes addresses only): one client's
	// connections then spread over the nodes, as on a router doing ECMP in the field.
	if err := script(l.Router(), "sysctl -qw net.ipv4.fib_multipath_hash_policy=1",
		"sysctl -qw net.ipv6.fib_multipath_hash_policy=1"); err != nil {
		return err
	}
	dir := l.frrDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{"zebra.conf": "hostname " + l.Router() + "\n", "bgpd.conf": l.routerConfig()}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	for _, p := range []string{dir, filepath.Join(dir, "zebra.conf"), filepath.Join(dir, "bgpd.conf")} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	zserv := filepath.Join(dir, "zserv.api")
	// -P 0: vtysh talks to the daemons over their unix sockets; no TCP vty port.
	common := []string{"-u", "frr", "-g", "frr", "--vty_socket", dir, "-z", zserv, "-P", "0", "--log", "stdout"}
	if err := l.daemon(l.Router(), "frr-zebra", "/usr/lib/frr/zebra",
		append([]string{"-f", filepath.Join(dir, "zebra.conf"), "-i", filepath.Join(dir, "zebra.pid")}, common...)...); err != nil {
		return err
	}
	if err := waitUntil(20*time.Second, func() error { _, err := os.Stat(zserv); return err }); err != nil {
		return fmt.Errorf("zebra did not start (see %s): %w", l.logPath("frr-zebra"), err)
	}
	if err := l.daemon(l.Router(), "frr-bgpd", "/usr/lib/frr/bgpd",
		append([]string{"-f", filepath.Join(dir, "bgpd.conf"), "-i", filepath.Join(dir, "bgpd.pid")}, common...)...); err != nil {
		return err
	}
	if err := waitUntil(20*time.Second, func() error { _, err := l.Vtysh("show bgp summary json"); return err }); err != nil {
		return fmt.Errorf("bgpd did not start (see %s): %w", l.logPath("frr-bgpd"), err)
	}
	return nil
}

// stopRouter stops FRR with SIGTERM, as its init scripts do: killed, its daemons would leave
// their crash-log directories (/var/tmp/frr/<daemon>.<pid>) behind.
func (l *Lab) stopRouter() {
	for _, d := range []string{"bgpd", "zebra"} {
		b, err := os.ReadFile(filepath.Join(l.State, "pids", "frr-"+d+".pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		running := func() bool {
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			return err == nil && exe == "/usr/lib/frr/"+d // a recycled pid, or a zombie, is not ours
		}
		if err != nil || pid <= 1 || !running() {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if waitUntil(5*time.Second, func() error {
			if running() {
				return fmt.Errorf("%s still running", d)
			}
			return nil
		}) != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = os.RemoveAll(fmt.Sprintf("/var/tmp/frr/%s.%d", d, pid))
	}
}

func (l *Lab) logPath(daemon string) string { return filepath.Join(l.State, "logs", daemon+".log") }

// Vtysh runs vtysh commands (each one -c) against the lab router's FRR.
func (l *Lab) Vtysh(cmds ...string) (string, error) {
	args := []string{"--vty_socket", l.frrDir()}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return run(l.Router(), "vtysh", args...)
}

// RouterNextHops returns the next hops of the router's route to prefix that are installed in
// its kernel (none when it has no such route).
func (l *Lab) RouterNextHops(prefix netip.Prefix) ([]netip.Addr, error) {
	return fibNextHops(l.Vtysh, prefix)
}

// fibNextHops asks FRR (through vtysh) for its route to prefix and returns the next hops that
// are in the kernel.
func fibNextHops(vtysh func(...string) (string, error), prefix netip.Prefix) ([]netip.Addr, error) {
	cmd := "show ip route " + prefix.String() + " longer-prefixes json"
	if prefix.Addr().Is6() {
		cmd = "show ipv6 route " + prefix.String() + " longer-prefixes json"
	}
	out, err := vtysh(cmd)
	if err != nil {
		return nil, err
	}
	var table map[string][]struct {
		Installed bool `json:"installed"`
		Nexthops  []struct {
			FIB bool   `json:"fib"`
			IP  string `json:"ip"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal([]byte(out), &table); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, out)
	}
	var hops []netip.Addr
	for _, r := range table[prefix.String()] {
		if !r.Installed {
			continue
		}
		for _, h := range r.Nexthops {
			if a, err := netip.ParseAddr(h.IP); err == nil && h.FIB {
				hops = append(hops, a)
			}
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops, nil
}

// waitUntil polls check until it succeeds or timeout passes, returning its last error.
func waitUntil(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
