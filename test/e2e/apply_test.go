package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/test/kit"
)

// The lab's realism: an ordinary Deployment and LoadBalancer Service, applied with kubectl as
// on any cluster (no Fairlead annotation: the default pool), get Pods, endpoints and an
// external address that the LAN client reaches.
func TestKubectlApplyOrdinaryApp(t *testing.T) {
	manifest := `apiVersion: v1
kind: Namespace
metadata: {name: e2e-apply}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: e2e-apply}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web:1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: e2e-apply}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
`
	path := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl("apply", "-f", path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := kubectl("delete", "-f", path, "--wait=false"); err != nil {
			t.Error(err)
		}
	})
	var ip string
	kit.Eventually(t, converge, "Service e2e-apply/web gets an address", func(context.Context) error {
		s, err := cs.CoreV1().Services("e2e-apply").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("pending: %v", s.Status.Conditions)
		}
		ip = s.Status.LoadBalancer.Ingress[0].IP
		return nil
	})
	kit.Eventually(t, converge, "both web Pods answer through "+ip, func(context.Context) error {
		got, err := answering(theLab.ClientL2(), addr80(ip), 20)
		if err != nil {
			return err
		}
		if len(got) != 2 || !strings.HasPrefix(got[0], "web-") || !strings.HasPrefix(got[1], "web-") {
			return fmt.Errorf("answering: %v", got)
		}
		return nil
	})
}
