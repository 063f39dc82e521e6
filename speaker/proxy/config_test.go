package proxy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kube-proxy's --config file fills the settings whose flags the command line left alone, in
// the copy of the Options that New is given (the flags are bound to the one AddFlags was
// called on). TestKubeProxyConfigFile runs the same through the binary.
func TestConfigFileFillsFlagsNotGiven(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.conf")
	if err := os.WriteFile(file, []byte(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: 10.244.0.0/16
nodePortAddresses: [192.0.2.0/24, 2001:db8::/64]
masqueradeAll: true
metricsBindAddress: 0.0.0.0:10249
detectLocalMode: BridgeInterface
detectLocal:
  bridgeInterface: cbr0
conntrack:
  maxPerCore: 0
  min: 1000
  tcpEstablishedTimeout: 2h0m0s
  tcpCloseWaitTimeout: 20m0s
  tcpBeLiberal: true
nftables:
  minSyncPeriod: 3s
iptables:
  syncPeriod: 30s
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var o Options
	fs := flag.NewFlagSet("speaker", flag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--config", file, "--conntrack-tcp-timeout-close-wait", "40m", "--cluster-cidr", "10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	c := o
	if err := c.readConfigFile(); err != nil {
		t.Fatal(err)
	}
	want := o
	want.ClusterCIDR = "10.0.0.0/8" // the command line's
	want.NodePortAddresses = "192.0.2.0/24,2001:db8::/64"
	want.MasqueradeAll = true
	want.MetricsBindAddress = "0.0.0.0:10249"
	want.DetectLocalMode, want.PodBridgeInterface = "BridgeInterface", "cbr0"
	want.Conntrack = ConntrackOptions{Min: 1000, TCPEstablished: 2 * time.Hour, TCPCloseWait: 40 * time.Minute, TCPBeLiberal: true}
	want.MinSyncInterval = 3 * time.Second
	if c != want {
		t.Errorf("after --config:\n%+v\nwant\n%+v", c, want)
	}
	if o.MasqueradeAll || o.Conntrack.Min != 0 {
		t.Errorf("the file changed the Options AddFlags bound, not (only) their copy: %+v", o)
	}
	// Read again (a second New): the command line still wins.
	if err := c.readConfigFile(); err != nil || c != want {
		t.Errorf("read twice: %v\n%+v", err, c)
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"missing", "", "--config: open "},
		{"configmap", "apiVersion: v1\nkind: ConfigMap\n",
			`apiVersion "v1" kind "ConfigMap": want kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration`},
		{"duration", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack:\n  udpTimeout: forever\n",
			`conntrack-udp-timeout "forever": parse error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name)
			if tc.content != "" {
				if err := os.WriteFile(file, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var o Options
			fs := flag.NewFlagSet("speaker", flag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse([]string{"--config", file}); err != nil {
				t.Fatal(err)
			}
			if err := o.readConfigFile(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
