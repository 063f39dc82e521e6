// Package scrape fetches a component's metrics as Prometheus does when the chart's
// ServiceMonitors say so: over HTTPS, with a ServiceAccount's bearer token, the server's
// certificate not verified (it is self-signed). It also makes the ServiceAccounts and tokens
// the tests scrape with, on a real apiserver, so that the component's TokenReview and
// SubjectAccessReview are the apiserver's answers.
package scrape

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

// Dial opens a connection to addr; nil dials from the test's own network namespace.
type Dial func(ctx context.Context, network, addr string) (net.Conn, error)

// InNetNS dials from inside ns (nil: the test's own namespace), where a component listens on
// a namespace's loopback or LAN.
func InNetNS(ns *netns.NS) Dial {
	return func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
		do := func() error {
			conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		}
		if ns == nil {
			return conn, do()
		}
		return conn, ns.Do(do)
	}
}

// Get fetches https://addr/path with token as bearer ("" sends none) and returns the status
// and body.
func Get(ctx context.Context, dial Dial, addr, path, token string) (int, []byte, error) {
	return get(ctx, dial, "https", addr, path, token)
}

// GetPlain fetches http://addr/path, as a scraper does with --metrics-secure=false.
func GetPlain(ctx context.Context, dial Dial, addr, path string) (int, []byte, error) {
	return get(ctx, dial, "http", addr, path, "")
}

func get(ctx context.Context, dial Dial, scheme, addr, path, token string) (int, []byte, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext:     dial,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed, as the ServiceMonitors' insecureSkipVerify
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Token creates ServiceAccount ns/name if absent and returns a token of it (an hour).
func Token(ctx context.Context, cs kubernetes.Interface, ns, name string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// Grant binds ServiceAccount ns/name to ClusterRole role (by a ClusterRoleBinding of the
// same name as the account); with rule non-nil it creates the role first, with that rule.
func Grant(ctx context.Context, cs kubernetes.Interface, role string, rule *rbacv1.PolicyRule, ns, name string) error {
	if rule != nil {
		cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: []rbacv1.PolicyRule{*rule}}
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// MetricsReader is the rule a scraper needs.
var MetricsReader = &rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}

// CheckAuth asserts what the metrics endpoint at addr answers: 401 without a token, 403 with
// denied (a valid token without the right), 200 and metrics with granted. It retries while
// the endpoint is not up yet or RBAC has not caught up with a fresh binding.
func CheckAuth(t *testing.T, ctx context.Context, dial Dial, addr, granted, denied string) []byte {
	t.Helper()
	var body []byte
	for _, c := range []struct {
		name, token string
		want        int
	}{{"no token", "", http.StatusUnauthorized}, {"a token without the right", denied, http.StatusForbidden}, {"a token granted get /metrics", granted, http.StatusOK}} {
		kit.Eventually(t, 30*time.Second, fmt.Sprintf("GET https://%s/metrics with %s to answer %d", addr, c.name, c.want), func(context.Context) error {
			code, b, err := Get(ctx, dial, addr, "/metrics", c.token)
			if err != nil || code != c.want {
				return fmt.Errorf("%d %q (%v)", code, trim(b), err)
			}
			body = b
			return nil
		})
	}
	return body
}

func trim(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
