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

// The documentation's examples convert to what the golden files hold (every field carried
// over; reviewed by hand), and the report says only what the golden comments list.
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
			"Community metallb-system/communities: the Community kind cannot be carried over yet: its aliases (vpn-only, NO_ADVERTISE, big) are written out as values in the BGPAdvertisements that use them (the same communities are sent)",
			"BGPPeer metallb-system/with-bfd: spec.passwordSecret: copy Secret metallb-system/bgp-md5 to fairlead-system: Fairlead's speakers read Secrets only in their own namespace",
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
