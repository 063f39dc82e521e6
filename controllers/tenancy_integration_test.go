package controllers_test

import (
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// A Service in one namespace is never told the name of a Service in another: it learns that
// the address is in use, no more. (In one namespace, naming the holder helps and is kept.)
func TestConflictsDoNotNameOtherNamespaces(t *testing.T) {
	secret := newNamespace(t, nil)
	tenant := newNamespace(t, nil)
	poolFor(t, "", "shared-tenancy", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.176/30"},
		AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{secret, tenant}}})
	create(t, lbService(secret, "hidden-holder", withAnnotations(v1alpha1.AnnotationSharingKey, "k")))
	ip := waitAnyIP(t, secret, "hidden-holder")

	for _, tc := range []struct{ name, key string }{{"grabber", ""}, {"would-share", "k"}} {
		create(t, lbService(tenant, tc.name, withPorts(8443), withAnnotations(v1alpha1.AnnotationIPs, ip, v1alpha1.AnnotationSharingKey, tc.key)))
		msg := waitFailure(t, tenant, tc.name, "IPUnavailable")
		note := waitEvent(t, tenant, tc.name, "AllocationFailed")
		for _, text := range []string{msg, note} {
			if strings.Contains(text, "hidden-holder") || strings.Contains(text, secret) {
				t.Errorf("%s: %q names the other namespace's Service", tc.name, text)
			}
			if !strings.Contains(text, ip+" is in use") {
				t.Errorf("%s: %q does not say the address is in use", tc.name, text)
			}
		}
	}
}
