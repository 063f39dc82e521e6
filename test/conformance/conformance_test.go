// Package conformance runs Kubernetes' own end-to-end tests for Services (e2e.test, built from
// k8s.io/kubernetes/test/e2e) against a lab of real kubelets where Fairlead, installed by its
// chart, is the only service proxy: no kube-proxy runs anywhere. The suite runs from the LAN
// client's namespace, as an operator's machine would.
//
// The lab's namespaces are named flcf-<pid>-* and its state is in /run/fairlead-cf-<pid>
// (lab.Suite).
package conformance

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/fairlead-lb/fairlead/test/images"
	"github.com/fairlead-lb/fairlead/test/lab"
)

// The lab every test uses (set in the child process that runs the tests).
var theLab *lab.Lab

var suite = lab.Suite{
	Name:     "cf",
	NodeMode: lab.KubeletNodes,
	Static:   true,
	K8s:      "kube-apiserver etcd kube-controller-manager kubectl kubelet kube-scheduler coredns e2e.test agnhost",
	Ready:    importTestImages,
}

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, func(l *lab.Lab) error {
		theLab = l
		return nil
	}))
}

// importTestImages puts the images e2e.test's specs run (agnhost, under the name its manifest
// gives) into every node's containerd: nothing is ever pulled.
func importTestImages(ctx context.Context, l *lab.Lab) error {
	agnhost, err := images.Agnhost(ctx)
	if err != nil {
		return fmt.Errorf("the agnhost image: %w", err)
	}
	for _, n := range l.Nodes() {
		if err := images.Import(ctx, l.ContainerdSocket(n), agnhost); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}
