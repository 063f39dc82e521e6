package main

// The speaker's flags are an interface: the chart, the lab, the tests and people's manifests
// name them. testdata/flags.golden is `fairlead-speaker -h` (without its first line, which
// names the binary's path) with $NODE_NAME and $POD_NAMESPACE unset, as it was before the
// components took their flags into their own packages; a name, a type, a default or a help
// text changes only on purpose (go test -run TestFlags -update rewrites the file).

import (
	"flag"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/speaker/eip"
	"github.com/fairlead-lb/fairlead/test/kit"
)

var update = flag.Bool("update", false, "rewrite testdata/flags.golden from the flags")

const golden = "testdata/flags.golden"

func defaults(t *testing.T) string {
	t.Helper()
	fs := flag.NewFlagSet("fairlead-speaker", flag.ContinueOnError)
	var o options
	o.addFlags(fs)
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// compare reports the lines that differ between got and the golden file.
func compare(t *testing.T, what, got string) {
	t.Helper()
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got == string(want) {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(string(want), "\n")
	for _, l := range w {
		if !slices.Contains(g, l) {
			t.Errorf("%s lacks: %q", what, l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			t.Errorf("%s has, not in %s: %q", what, golden, l)
		}
	}
	if !t.Failed() {
		t.Errorf("%s has the lines of %s, in another order", what, golden)
	}
}

func TestFlagsAsGolden(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	t.Setenv("POD_NAMESPACE", "")
	got := defaults(t)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	compare(t, "the speaker's flags", got)
}

// Two defaults come from the Pod's environment (the chart sets both from the downward API).
func TestFlagDefaultsFromEnvironment(t *testing.T) {
	t.Setenv("NODE_NAME", "node-7")
	t.Setenv("POD_NAMESPACE", "lb-system")
	fs := flag.NewFlagSet("fairlead-speaker", flag.ContinueOnError)
	var o options
	o.addFlags(fs)
	for name, want := range map[string]string{"node-name": "node-7", "bgp-secret-namespace": "lb-system"} {
		if got := fs.Lookup(name).DefValue; got != want {
			t.Errorf("--%s defaults to %q, want %q", name, got, want)
		}
	}
	if o.node != "node-7" || o.BGPOptions.SecretNamespace != "lb-system" {
		t.Errorf("unparsed options: node %q, BGP secret namespace %q", o.node, o.BGPOptions.SecretNamespace)
	}
}

// Each flag lands in the options of the component that owns it.
func TestFlagsSetTheirComponentsOptions(t *testing.T) {
	fs := flag.NewFlagSet("fairlead-speaker", flag.ContinueOnError)
	var o options
	o.addFlags(fs)
	if err := fs.Parse([]string{"--proxy", "--l2=false", "--bgp", "--aws-eip", "--default-class=false",
		"--node-name", "n1", "--kubeconfig", "/k", "--kube-api-qps", "7", "--cleanup",
		"--metrics-bind-address", "0", "--metrics-secure=false", "--health-probe-bind-address", "127.0.0.1:1",
		"--memberlist-port", "7000", "--memberlist-secret-file", "/key",
		"--cluster-cidr", "10.244.0.0/16", "--proxy-sync-period", "1m", "--conntrack-min", "5", "--config", "/kp",
		"--bgp-secret-namespace", "lb", "--aws-region", "eu-west-1", "--aws-cluster-name", "c1"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"components", [5]bool{o.Proxy, o.L2, o.BGP, o.ElasticIPs, o.DefaultClass}, [5]bool{true, false, true, true, false}},
		{"speaker", [4]any{o.node, o.kubeconfig, o.qps, o.cleanup}, [4]any{"n1", "/k", 7.0, true}},
		{"endpoints", [3]any{o.endpoints.MetricsAddr, o.endpoints.Metrics.Secure, o.endpoints.ProbeAddr}, [3]any{"0", false, "127.0.0.1:1"}},
		{"members", [3]any{o.MemberOptions.BindAddress, o.MemberOptions.Port, o.MemberOptions.SecretFile}, [3]any{"", 7000, "/key"}},
		{"proxy", [4]any{o.ProxyOptions.ClusterCIDR, o.ProxyOptions.SyncPeriod, o.ProxyOptions.Conntrack.Min, o.ProxyOptions.ConfigFile},
			[4]any{"10.244.0.0/16", time.Minute, 5, "/kp"}},
		{"bgp", o.BGPOptions.SecretNamespace, "lb"},
		{"aws", o.AWS, eip.AWS{Region: "eu-west-1", ClusterName: "c1"}},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
}

// The binary's own -h: what main registers on the command line, and what any imported
// package registers there on its own, must be the golden list too.
func TestHelpOfTheBinaryAsGolden(t *testing.T) {
	bin := kit.Binary(t, "./cmd/fairlead-speaker", kit.BuildOptions{})
	cmd := exec.Command(bin, "-h")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "NODE_NAME=") || strings.HasPrefix(kv, "POD_NAMESPACE=")
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -h: %v\n%s", bin, err, out)
	}
	usage, rest, _ := strings.Cut(string(out), "\n")
	if usage != "Usage of "+bin+":" {
		t.Errorf("first line %q, want the usage line", usage)
	}
	compare(t, bin+" -h", rest)
}
