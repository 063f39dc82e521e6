package chart

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
)

// binary returns ./cmd/<name>, built once per source (kit.Build).
func binary(t *testing.T, name string) string {
	t.Helper()
	return kit.Binary(t, "./cmd/"+name, kit.BuildOptions{})
}

// proc is a Fairlead binary the test runs on the host (the controller needs no network of
// its own), killed when the test ends; its output is logged if the test failed.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop kills the process and waits for it.
func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

// startController runs fairlead-controller as the chart's ServiceAccount with the args of
// the chart's Deployment (plus a kubeconfig, and no listening ports unless extra asks for them).
func startController(t *testing.T, env *controlplane.Env, dep *appsv1.Deployment, extra ...string) *proc {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "controller.kubeconfig")
	writeImpersonating(t, env, kubeconfig, saUser(dep.Spec.Template.Spec.ServiceAccountName))
	args := append([]string{"--kubeconfig", kubeconfig}, dep.Spec.Template.Spec.Containers[0].Args...)
	args = append(args, "--metrics-bind-address=0", "--health-probe-bind-address=0")
	args = append(args, extra...) // the last of a repeated flag wins
	return startProc(t, "controller", binary(t, "fairlead-controller"), args...)
}

func saUser(name string) string {
	return fmt.Sprintf("system:serviceaccount:%s:%s", namespace, name)
}

// applyObjects creates each object, or updates it when it exists: what `kubectl apply` or an
// install does, never a dry run.
func applyObjects(t *testing.T, c client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		if o.GetKind() == "ServiceMonitor" || o.GetKind() == "PrometheusRule" {
			continue // the Prometheus Operator's CRDs are not part of this apiserver
		}
		err := c.Create(ctx, o.DeepCopy())
		if apierrors.IsAlreadyExists(err) {
			cur := o.DeepCopy()
			if err = c.Get(ctx, client.ObjectKeyFromObject(o), cur); err == nil {
				upd := o.DeepCopy()
				upd.SetResourceVersion(cur.GetResourceVersion())
				err = c.Update(ctx, upd)
			}
		}
		if err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// find converts the rendered object of kind and name into out.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string, out any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			mustConvert(t, o, out)
			return
		}
	}
	t.Fatalf("the chart rendered no %s %s", kind, name)
}
