package metallb

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/pool"
)

// Whatever MetalLB configuration a user feeds `fairleadctl migrate metallb`, the converter
// either refuses it or emits objects Fairlead itself accepts (a converted configuration that
// the speakers or the controller then reject would fail at the moment of the switch), and it
// says the same thing twice.
func FuzzConvert(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, path := range seeds {
		if strings.HasSuffix(path, ".fairlead.yaml") {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/28, 2001:db8::1-2001:db8::9]}\n")
	f.Add("apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.1}\n")

	f.Fuzz(func(t *testing.T, doc string) {
		first, err := convert(doc)
		if err != nil {
			return
		}
		again, err := convert(doc)
		if err != nil {
			t.Fatalf("converted once, refused the second time: %v", err)
		}
		var a, b bytes.Buffer
		if err := WriteYAML(&a, first.Objects); err != nil {
			t.Fatalf("emitted objects that do not marshal: %v", err)
		}
		_ = WriteYAML(&b, again.Objects)
		if a.String() != b.String() {
			t.Fatalf("two conversions of one input differ:\n%s\n---\n%s", a.String(), b.String())
		}
		for _, o := range first.Objects {
			switch o := o.(type) {
			case *v1alpha1.IPPool:
				if _, err := pool.ParseRanges(o.Spec.Addresses); err != nil {
					t.Errorf("IPPool %s: emitted addresses Fairlead refuses: %v", o.Name, err)
				}
			case *v1alpha1.L2Advertisement:
				if _, err := o.Compile(); err != nil {
					t.Errorf("L2Advertisement %s: emitted, but Fairlead refuses it: %v", o.Name, err)
				}
			case *v1alpha1.BGPPeer:
				if err := o.Validate(); err != nil {
					t.Errorf("BGPPeer %s: emitted, but Fairlead refuses it: %v", o.Name, err)
				}
			}
		}
	})
}

func convert(doc string) (*Result, error) {
	var in Input
	if err := in.AddYAML(strings.NewReader(doc), "fuzz"); err != nil {
		return nil, err
	}
	return Convert(&in, Options{})
}
