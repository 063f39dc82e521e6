package controlplane_test

import (
	"context"
	"path/filepath"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fairlead-lb/fairlead/test/controlplane"
)

// The kubeconfig authenticates as the ServiceAccount, and RBAC holds it to its ClusterRole.
func TestServiceAccountKubeconfig(t *testing.T) {
	env := controlplane.StartForTest(t, controlplane.Options{})
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	// Not "view": without kube-controller-manager nothing aggregates its rules.
	reader := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "service-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list"}}}}
	if err := env.Client.Create(ctx, reader); err != nil {
		t.Fatal(err)
	}
	if err := env.ServiceAccountKubeconfig(ctx, path, "bench", "reader", reader.Name); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := review.Status.UserInfo.Username; got != "system:serviceaccount:bench:reader" {
		t.Errorf("authenticated as %q", got)
	}
	if _, err := cs.CoreV1().Services("bench").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("cannot list Services: %v", err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := cs.CoreV1().Services("bench").Create(ctx, svc, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("created a Service with a role that only reads: err %v, want Forbidden", err)
	}
}
