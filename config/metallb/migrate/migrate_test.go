package migrate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	mlb "github.com/fairlead-lb/fairlead/test/metallb"
)

// createYAML creates every object of a YAML file in the cluster.
func createYAML(t *testing.T, c client.Client, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) == 0 {
			continue
		}
		must(t, c.Create(context.Background(), u))
		objs = append(objs, u)
	}
	return objs
}

// fairleadObjects lists, as "Kind/name", what is in the cluster of Fairlead's configuration.
func fairleadObjects(t *testing.T, c client.Client) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	var pools v1alpha1.IPPoolList
	var l2 v1alpha1.L2AdvertisementList
	var peers v1alpha1.BGPPeerList
	var advs v1alpha1.BGPAdvertisementList
	var bfd v1alpha1.BFDProfileList
	var comms v1alpha1.CommunityList
	for _, l := range []client.ObjectList{&pools, &l2, &peers, &advs, &bfd, &comms} {
		must(t, c.List(ctx, l))
	}
	for _, p := range pools.Items {
		out = append(out, "IPPool/"+p.Name)
	}
	for _, p := range l2.Items {
		out = append(out, "L2Advertisement/"+p.Name)
	}
	for _, p := range peers.Items {
		out = append(out, "BGPPeer/"+p.Name)
	}
	for _, p := range advs.Items {
		out = append(out, "BGPAdvertisement/"+p.Name)
	}
	for _, p := range bfd.Items {
		out = append(out, "BFDProfile/"+p.Name)
	}
	for _, p := range comms.Items {
		out = append(out, "Community/"+p.Name)
	}
	return out
}

// fairleadctl migrate metallb on a real apiserver with MetalLB's CRDs: the documentation's
// examples, created as MetalLB objects (so MetalLB's own schemas accept them), are read back
// from the cluster and applied as Fairlead objects that Fairlead's schemas accept (with the BGP
// fields of bgp-fields.yaml: dynamicASN, routerID, connectTime, vrf, disableMP, a Secret's
// namespace, Community aliases, ipPoolSelectors); the same
// files given with -f convert to the same objects; invalid MetalLB input writes nothing.
func TestMigrateMetalLB(t *testing.T) {
	// MetalLB's module is fetched before the control plane starts: not in the fast lane either.
	kit.Heavy(t, "a kube-apiserver with MetalLB's CRDs")
	crds, err := mlb.CRDDir()
	must(t, err)
	env := controlplane.StartForTest(t, controlplane.Options{CRDDirs: []string{crds}})
	ctx := context.Background()
	c := env.Client
	for _, ns := range []string{"metallb-system", "fairlead-system"} {
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	testdata := filepath.Join(controlplane.RepoRoot(), "config/metallb/testdata")

	for _, name := range []string{"docs-ipaddresspool", "docs-l2advertisement", "docs-bgp", "bgp-fields"} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(testdata, name+".yaml")
			created := createYAML(t, c, file)
			defer func() {
				for _, u := range created {
					_ = c.Delete(ctx, u)
				}
				for _, k := range []client.Object{&v1alpha1.IPPool{}, &v1alpha1.L2Advertisement{}, &v1alpha1.BGPPeer{}, &v1alpha1.BGPAdvertisement{}, &v1alpha1.BFDProfile{}, &v1alpha1.Community{}} {
					_ = c.DeleteAllOf(ctx, k)
				}
			}()

			var fromFile, fileReport bytes.Buffer
			must(t, Run(ctx, nil, Options{Files: []string{file}}, nil, &fromFile, &fileReport))
			var applied, report bytes.Buffer
			must(t, Run(ctx, c, Options{Apply: true, Namespace: "metallb-system", Secrets: "fairlead-system"}, nil, &applied, &report))
			if report.String() != fileReport.String() {
				t.Errorf("report from the cluster:\n%s\nfrom the file:\n%s", report.String(), fileReport.String())
			}
			// Every object printed from the file was applied from the cluster, and nothing else.
			var want []string
			for _, doc := range strings.Split(fromFile.String(), "---\n")[1:] {
				u := &unstructured.Unstructured{}
				must(t, utilyaml.Unmarshal([]byte(doc), &u.Object))
				want = append(want, u.GetKind()+"/"+u.GetName())
				// The apiserver kept every field (a field its schema lacks would be pruned
				// without an error); it may add defaults.
				stored := &unstructured.Unstructured{}
				stored.SetGroupVersionKind(u.GroupVersionKind())
				if err := c.Get(ctx, client.ObjectKeyFromObject(u), stored); err != nil {
					t.Errorf("%s %s: %v", u.GetKind(), u.GetName(), err)
					continue
				}
				if path, ok := within(u.Object["spec"], stored.Object["spec"], "spec"); !ok {
					t.Errorf("%s %s: %s printed as %v, stored as %v", u.GetKind(), u.GetName(), path, u.Object["spec"], stored.Object["spec"])
				}
			}
			got := fairleadObjects(t, c)
			if strings.Join(sorted(got), " ") != strings.Join(sorted(want), " ") {
				t.Errorf("in the cluster: %v\nprinted from the file: %v", sorted(got), sorted(want))
			}
			if n := strings.Count(applied.String(), " applied\n"); n != len(want) {
				t.Errorf("%d apply lines for %d objects:\n%s", n, len(want), applied.String())
			}
			// A second run changes nothing and fails on nothing (server-side apply).
			must(t, Run(ctx, c, Options{Apply: true, Namespace: "metallb-system", Secrets: "fairlead-system"}, nil, &bytes.Buffer{}, &bytes.Buffer{}))
		})
	}

	// MetalLB's CRDs accept two overlapping pools (its webhook would refuse them): an error
	// naming the pool and the field, and nothing written, not even the valid pool.
	for _, p := range []struct{ name, cidr string }{{"a", "192.0.2.0/28"}, {"b", "192.0.2.8/29"}} {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("metallb.io/v1beta1")
		u.SetKind("IPAddressPool")
		u.SetNamespace("metallb-system")
		u.SetName(p.name)
		must(t, unstructured.SetNestedStringSlice(u.Object, []string{p.cidr}, "spec", "addresses"))
		must(t, c.Create(ctx, u))
	}
	var out bytes.Buffer
	err = Run(ctx, c, Options{Apply: true, Namespace: "metallb-system", Secrets: "fairlead-system"}, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "IPAddressPool metallb-system/b: spec.addresses") {
		t.Errorf("overlapping pools: error %v", err)
	}
	if got := fairleadObjects(t, c); len(got) != 0 || out.Len() != 0 {
		t.Errorf("after an error: in the cluster %v, output %q", got, out.String())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// within says whether every field of want is in got with the same value (got may have more
// fields: the apiserver's defaults), and if not, where it differs.
func within(want, got any, path string) (string, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, false
		}
		for k, v := range w {
			if p, ok := within(v, g[k], path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, false
		}
		for i := range w {
			if p, ok := within(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	default:
		// Numbers may come back as another Go type; their text is the same.
		return path, got != nil && fmt.Sprint(want) == fmt.Sprint(got)
	}
}
