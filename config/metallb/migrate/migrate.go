// Package migrate is `fairleadctl migrate metallb`: it reads MetalLB's objects from files or
// from a cluster, converts them (config/metallb) and prints Fairlead's or applies them.
package migrate

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/metallb"
)

// FieldManager owns what `migrate --apply` writes.
const FieldManager = "fairleadctl-migrate"

// Options are the flags of `fairleadctl migrate metallb`.
type Options struct {
	Files     []string // files or directories; none: read the cluster
	Apply     bool
	Namespace string // MetalLB's
	Secrets   string // Fairlead's speakers' namespace
}

// metallbKinds are the kinds read from a cluster, in the versions MetalLB v0.13-v0.15 serve.
// BGPPeer is read as v1beta2 (stored since v0.13), v1beta1 where v1beta2 is not served.
var metallbKinds = []struct {
	kind     string
	versions []string
}{
	{"IPAddressPool", []string{"v1beta1"}},
	{"L2Advertisement", []string{"v1beta1"}},
	{"BGPAdvertisement", []string{"v1beta1"}},
	{"BGPPeer", []string{"v1beta2", "v1beta1"}},
	{"Community", []string{"v1beta1"}},
	{"BFDProfile", []string{"v1beta1"}},
}

// Run reads, converts, and prints or applies. The report goes to report, one line each,
// so that out can be piped to kubectl. Nothing is written unless the whole conversion
// succeeded and the apiserver accepted every object in a dry run.
func Run(ctx context.Context, c client.Client, o Options, stdin io.Reader, out, report io.Writer) error {
	var in metallb.Input
	if len(o.Files) > 0 {
		if err := readFiles(&in, o.Files, stdin); err != nil {
			return err
		}
	} else if err := readCluster(ctx, c, o.Namespace, &in); err != nil {
		return err
	}
	res, err := metallb.Convert(&in, metallb.Options{Namespace: o.Namespace, SecretNamespace: o.Secrets})
	if err != nil {
		return fmt.Errorf("nothing converted: %w", err)
	}
	for _, l := range res.Report {
		fmt.Fprintln(report, l)
	}
	if !o.Apply {
		return metallb.WriteYAML(out, res.Objects)
	}
	objs := make([]*unstructured.Unstructured, len(res.Objects))
	for i, obj := range res.Objects {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{Object: m}
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		objs[i] = u
	}
	// A dry run of everything first: an object the apiserver refuses (a CRD rule MetalLB did
	// not have) stops the migration before anything is written.
	for _, u := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(FieldManager), client.ForceOwnership, client.DryRunAll); err != nil {
			return fmt.Errorf("nothing applied: %s %s: %w", u.GetKind(), objName(u), err)
		}
	}
	for _, u := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("%s %s: %w", u.GetKind(), objName(u), err)
		}
		fmt.Fprintf(out, "%s %s applied\n", strings.ToLower(u.GetKind()), objName(u))
	}
	return nil
}

func objName(u *unstructured.Unstructured) string {
	if u.GetNamespace() != "" {
		return u.GetNamespace() + "/" + u.GetName()
	}
	return u.GetName()
}

func readFiles(in *metallb.Input, paths []string, stdin io.Reader) error {
	for _, p := range paths {
		if p == "-" {
			if err := in.AddYAML(stdin, "stdin"); err != nil {
				return err
			}
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		files := []string{p}
		if st.IsDir() {
			files = nil
			entries, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			for _, e := range entries {
				switch filepath.Ext(e.Name()) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						files = append(files, filepath.Join(p, e.Name()))
					}
				}
			}
			sort.Strings(files)
		}
		for _, f := range files {
			r, err := os.Open(f)
			if err != nil {
				return err
			}
			err = in.AddYAML(r, f)
			r.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// readCluster lists MetalLB's objects in its namespace, and every Service (the report says
// which ones Fairlead would not keep as they are). A kind whose CRD is not installed (BGP
// parts of an old MetalLB) is skipped.
func readCluster(ctx context.Context, c client.Client, ns string, in *metallb.Input) error {
	for _, k := range metallbKinds {
		var list *unstructured.UnstructuredList
		for _, v := range k.versions {
			l := &unstructured.UnstructuredList{}
			l.SetGroupVersionKind(schema.GroupVersionKind{Group: metallb.Group, Version: v, Kind: k.kind + "List"})
			err := c.List(ctx, l, client.InNamespace(ns))
			if meta.IsNoMatchError(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("listing MetalLB's %ss: %w", k.kind, err)
			}
			list = l
			break
		}
		if list == nil {
			continue
		}
		for i := range list.Items {
			u := &list.Items[i]
			unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
			js, err := u.MarshalJSON()
			if err != nil {
				return err
			}
			if err := in.AddJSON(js); err != nil {
				return err
			}
		}
	}
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs); err != nil {
		return fmt.Errorf("listing Services: %w", err)
	}
	in.Services = append(in.Services, svcs.Items...)
	return nil
}
