package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
)

// The status view joins pools, Services, announcements and BGP sessions from a real apiserver.
func TestStatus(t *testing.T) {
	env := controlplane.StartForTest(t, controlplane.Options{})
	ctx := context.Background()
	c := env.Client
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.0/28"}}}
	must(t, c.Create(ctx, pool))
	pool.Status.IPv4 = &v1alpha1.FamilyStatus{Total: "16", Used: 1, Free: "15"}
	pool.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: "True", Reason: "Valid",
		Message: "Addresses are being allocated", ObservedGeneration: pool.Generation, LastTransitionTime: metav1.Now()}}
	must(t, c.Status().Update(ctx, pool))
	// A pool no controller has seen yet.
	must(t, c.Create(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "new"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"2001:db8::/64"}}}))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports: []corev1.ServicePort{{Port: 80}}}}
	must(t, c.Create(ctx, svc))
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	svc.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionIPAllocated, Status: "True", Reason: "Allocated",
		Message: "Assigned 192.0.2.1", LastTransitionTime: metav1.Now()}}
	must(t, c.Status().Update(ctx, svc))
	ann := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Status: v1alpha1.ServiceAnnouncementStatus{Announcements: []v1alpha1.Announcement{
			{IP: "192.0.2.1", Node: "node2", Protocol: "ARP", Interfaces: []string{"eth0"}}}}}
	must(t, c.Create(ctx, ann))
	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"},
		Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.254", PeerASN: 64500, LocalASN: 64512}}
	must(t, c.Create(ctx, peer))
	peer.Status.Nodes = []v1alpha1.BGPSessionStatus{{Node: "node1", State: "Established", PrefixesSent: 3}}
	must(t, c.Status().Update(ctx, peer))

	var out bytes.Buffer
	must(t, writeStatus(ctx, c, &out))
	for _, want := range []string{
		"192.0.2.0/28",
		"default/web", "192.0.2.1@node2/ARP(eth0)", "Allocated",
		"tor (192.0.2.254 AS64500)", "node1", "Established",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	for _, re := range []string{`(?m)^lan +True +1 used, 15 free +- `, `(?m)^new +Unknown \(no status yet\) +- +- +2001:db8::/64`} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("status has no line matching %s:\n%s", re, out.String())
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
