// Package routers runs real routers, FRR (zebra + bgpd) and BIRD 2, inside a test's network
// namespace, configured by text the test writes, and reads their RIBs back as JSON (vtysh) or
// text (birdc). Each router gets its own config, pid and socket directory, and is killed when
// the test ends.
package routers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

// FRR is a zebra + bgpd pair in one namespace.
type FRR struct {
	ns  *netns.NS
	dir string
	t   testing.TB
}

// StartFRR starts zebra and bgpd in ns with bgpdConf as bgpd's configuration (zebra gets an
// empty one) and waits until vtysh answers.
func StartFRR(t testing.TB, ns *netns.NS, bgpdConf string) *FRR {
	t.Helper()
	return startFRR(t, ns, bgpdConf, "")
}

// StartFRRWithBFD is StartFRR plus bfdd with bfddConf (BFD profiles; bgpd's `neighbor X bfd`
// registers the sessions through zebra).
func StartFRRWithBFD(t testing.TB, ns *netns.NS, bgpdConf, bfddConf string) *FRR {
	t.Helper()
	return startFRR(t, ns, bgpdConf, bfddConf)
}

func startFRR(t testing.TB, ns *netns.NS, bgpdConf, bfddConf string) *FRR {
	t.Helper()
	bins := []string{"/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "vtysh"}
	if bfddConf != "" {
		bins = append(bins, "/usr/lib/frr/bfdd")
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: run `make packages` (FRR)", bin)
		}
	}
	// FRR drops privileges to the frr user, which must reach its files: a world-traversable
	// directory owned by frr, not t.TempDir (0700, root).
	dir, err := os.MkdirTemp("", "fl-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &FRR{ns: ns, dir: dir, t: t}
	write(t, filepath.Join(dir, "zebra.conf"), "hostname "+ns.Name+"\n")
	write(t, filepath.Join(dir, "bgpd.conf"), bgpdConf)
	if bfddConf != "" {
		write(t, filepath.Join(dir, "bfdd.conf"), bfddConf)
	}
	chownFRR(t, dir)
	common := []string{"-u", "frr", "-g", "frr", "--vty_socket", dir, "-z", filepath.Join(dir, "zserv.api"), "--log", "stdout"}
	zebra := ns.Start("/usr/lib/frr/zebra", append([]string{"-f", filepath.Join(dir, "zebra.conf"), "-i", filepath.Join(dir, "zebra.pid")}, common...)...)
	stopOnCleanup(t, "zebra", zebra)
	kit.Eventually(t, 20*time.Second, "zebra's socket", func(context.Context) error { _, err := os.Stat(filepath.Join(dir, "zserv.api")); return err })
	if bfddConf != "" {
		bfdd := ns.Start("/usr/lib/frr/bfdd", append([]string{"-f", filepath.Join(dir, "bfdd.conf"), "-i", filepath.Join(dir, "bfdd.pid"),
			"--bfdctl", filepath.Join(dir, "bfdd.sock")}, common...)...)
		stopOnCleanup(t, "bfdd", bfdd)
		kit.Eventually(t, 20*time.Second, "bfdd's vty", func(context.Context) error { _, err := os.Stat(filepath.Join(dir, "bfdd.vty")); return err })
	}
	bgpd := ns.Start("/usr/lib/frr/bgpd", append([]string{"-f", filepath.Join(dir, "bgpd.conf"), "-i", filepath.Join(dir, "bgpd.pid")}, common...)...)
	stopOnCleanup(t, "bgpd", bgpd)
	kit.Eventually(t, 20*time.Second, "bgpd's vty", func(context.Context) error { _, err := f.Vtysh("show bgp summary json"); return err })
	return f
}

// stopOnCleanup stops an FRR daemon with SIGTERM at the end of the test (before the namespace's
// SIGKILL), so it removes its /var/tmp/frr/<daemon>.<pid> directory itself; what a kill leaves
// there is removed too.
func stopOnCleanup(t testing.TB, daemon string, p *netns.Proc) {
	t.Cleanup(func() {
		pid := p.Cmd.Process.Pid
		p.Signal(syscall.SIGTERM)
		if ok, _ := p.Wait(3 * time.Second); !ok {
			p.Kill()
		}
		// nsenter execs the daemon, so the pid is the daemon's.
		_ = os.RemoveAll(fmt.Sprintf("/var/tmp/frr/%s.%d", daemon, pid))
	})
}

// Vtysh runs vtysh commands (each one -c) against this FRR.
func (f *FRR) Vtysh(cmds ...string) (string, error) {
	args := []string{"--vty_socket", f.dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return f.ns.Run("vtysh", args...)
}

// JSON runs one `show ... json` command and decodes its output into v.
func (f *FRR) JSON(cmd string, v any) error {
	out, err := f.Vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: %v: %s", cmd, err, out)
	}
	return nil
}

// BIRD is a BIRD 2 daemon in one namespace.
type BIRD struct {
	ns   *netns.NS
	sock string
}

// StartBIRD starts bird in the foreground in ns with conf and waits until birdc answers.
func StartBIRD(t testing.TB, ns *netns.NS, conf string) *BIRD {
	t.Helper()
	if _, err := exec.LookPath("bird"); err != nil {
		t.Fatal("bird not found: run `make packages` (bird2)")
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bird.conf"), conf)
	b := &BIRD{ns: ns, sock: filepath.Join(dir, "bird.ctl")}
	ns.Start("bird", "-f", "-c", filepath.Join(dir, "bird.conf"), "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"))
	kit.Eventually(t, 20*time.Second, "birdc", func(context.Context) error { _, err := b.Birdc("show status"); return err })
	return b
}

// Birdc runs one birdc command and returns its output.
func (b *BIRD) Birdc(cmd string) (string, error) {
	out, err := b.ns.Run("birdc", append([]string{"-s", b.sock}, strings.Fields(cmd)...)...)
	if err == nil && strings.Contains(out, "Unable to connect") {
		err = fmt.Errorf("birdc: %s", out)
	}
	return out, err
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func chownFRR(t testing.TB, dir string) {
	t.Helper()
	u, err := user.Lookup("frr")
	if err != nil {
		t.Fatalf("user frr: %v (run `make packages`)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
