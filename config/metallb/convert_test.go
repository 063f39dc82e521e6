package metallb

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func convertFile(t *testing.T, path string) *Result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var in Input
	if err := in.AddYAML(f, path); err != nil {
		t.Fatal(err)
	}
	res, err := Convert(&in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func convertString(t *testing.T, doc string) (*Result, error) {
	t.Helper()
	var in Input
	if err := in.AddYAML(strings.NewReader(doc), "test"); err != nil {
		return nil, err
	}
	return Convert(&in, Options{})
}

// Marshal writes objects as one YAML stream, as fairleadctl prints them.
func marshal(t *testing.T, res *Result) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteYAML(&b, res.Objects); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The documentation's examples, and a file of the BGP fields MetalLB has beyond them, convert to
// what the golden files hold (every field carried over; reviewed by hand), and the report says
// exactly what is listed here.
func TestDocumentationExamples(t *testing.T) {
	cases := map[string][]string{
		"docs-ipaddresspool": {
			"IPAddressPools cheap, first-pool: no serviceAllocation: MetalLB tries them in random order, Fairlead by name, in this order",
		},
		"docs-l2advertisement": {
			"IPAddressPools first-pool, second-pool: no serviceAllocation: MetalLB tries them in random order, Fairlead by name, in this order",
		},
		"docs-bgp": {
			"IPAddressPools first-pool, pool-a: no serviceAllocation: MetalLB tries them in random order, Fairlead by name, in this order",
			"BGPPeer metallb-system/with-bfd: spec.passwordSecret: Secret metallb-system/bgp-md5 is read where it is: grant the speakers namespace metallb-system with the chart value speaker.bgpSecretNamespaces (else the session is Invalid)",
		},
		"bgp-fields": {
			"IPAddressPools v4, v6: no serviceAllocation: MetalLB tries them in random order, Fairlead by name, in this order",
			`Community metallb-system/site: spec.communities[2]: alias "no-export" cannot be a Fairlead alias: in Fairlead it is the name of a well-known community (RFC 1997, RFC 3765); BGPAdvertisements that use it get its value 64512:99 instead (the same community is sent)`,
			`Community metallb-system/site: spec.communities[3]: alias "1st-tier" cannot be a Fairlead alias: Fairlead's alias names start with a letter and hold only letters, digits, '-', '_' and '.'; BGPAdvertisements that use it get its value 64512:1 instead (the same community is sent)`,
			"BGPPeer metallb-system/any-external: spec.passwordSecret: Secret metallb-system/bgp-md5 is read where it is: grant the speakers namespace metallb-system with the chart value speaker.bgpSecretNamespaces (else the session is Invalid)",
			`BGPPeer metallb-system/red-bfd: spec.bfdProfile "fast" cannot be carried over yet together with spec.vrf "red": Fairlead's BFD sessions are not bound to a VRF; the peer is converted without BFD (a dead session is noticed after holdTime, not BFD's detection time)`,
		},
	}
	for name, wantReport := range cases {
		t.Run(name, func(t *testing.T) {
			res := convertFile(t, filepath.Join("testdata", name+".yaml"))
			got := marshal(t, res)
			golden := filepath.Join("testdata", name+".fairlead.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s:\n%s", golden, got)
			}
			if !slices.Equal(res.Report, wantReport) {
				t.Errorf("report:\n%s\nwant:\n%s", strings.Join(res.Report, "\n"), strings.Join(wantReport, "\n"))
			}
		})
	}
}
