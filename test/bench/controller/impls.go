package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	mlb "github.com/fairlead-lb/fairlead/test/metallb"
)

// fairlead builds this checkout's controller.
func fairlead(work string) (*implementation, error) {
	bin := filepath.Join(work, "fairlead-controller")
	if err := goCmd(controlplane.RepoRoot(), nil, "build", "-o", bin, "./cmd/fairlead-controller"); err != nil {
		return nil, err
	}
	return &implementation{
		name:  "fairlead",
		class: v1alpha1.LoadBalancerClass,
		pool: func(ctx context.Context, r *round) error {
			return r.env.Client.Create(ctx, &v1alpha1.IPPool{
				ObjectMeta: metav1.ObjectMeta{Name: r.namespace},
				Spec: v1alpha1.IPPoolSpec{Addresses: []string{r.prefix},
					AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{r.namespace}}},
			})
		},
		start: func(r *round) *exec.Cmd {
			// Defaults otherwise, as a user would run it; no leader election because MetalLB's
			// controller has none either (a single replica).
			args := []string{"--kubeconfig", r.kubeconfig, "--default-class=false", "--leader-elect=false",
				"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}
			return exec.Command(bin, append(args, strings.Fields(fairleadArgs)...)...)
		},
	}, nil
}

const metallbNamespace = "metallb-system"

// metallb is MetalLB's controller, built from its module (cached), with its CRDs.
func metallb(string) (*implementation, error) {
	bin, err := mlb.Controller()
	if err != nil {
		return nil, err
	}
	crds, err := mlb.CRDDir()
	if err != nil {
		return nil, err
	}
	class := "metallb.io/bench"
	return &implementation{
		name:  "metallb",
		crds:  []string{crds},
		class: class,
		pool: func(ctx context.Context, r *round) error {
			if err := ensureNamespace(ctx, r.env.Client, metallbNamespace); err != nil {
				return err
			}
			p := &unstructured.Unstructured{}
			p.SetAPIVersion("metallb.io/v1beta1")
			p.SetKind("IPAddressPool")
			p.SetNamespace(metallbNamespace)
			p.SetName(r.namespace)
			if err := unstructured.SetNestedStringSlice(p.Object, []string{r.prefix}, "spec", "addresses"); err != nil {
				return err
			}
			if err := unstructured.SetNestedStringSlice(p.Object, []string{r.namespace}, "spec", "serviceAllocation", "namespaces"); err != nil {
				return err
			}
			return r.env.Client.Create(ctx, p)
		},
		start: func(r *round) *exec.Cmd {
			return exec.Command(bin, mlb.ControllerArgs(r.kubeconfig, metallbNamespace, class)...)
		},
	}, nil
}

func ensureNamespace(ctx context.Context, c client.Client, name string) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if err := c.Create(ctx, ns); err != nil && !isAlreadyExists(err) {
		return err
	}
	return nil
}
