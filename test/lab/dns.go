package lab

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/test/images"
)

// The kubelet lab's cluster DNS is CoreDNS, deployed as clusters deploy it: a Deployment in
// kube-system behind the kube-dns Service, which every Pod's resolv.conf names (kubelet's
// clusterDNS). CoreDNS reaches the apiserver through the `kubernetes` Service and Pods reach
// CoreDNS through kube-dns, both over Fairlead's proxy. There is no upstream: names outside
// cluster.local are not resolved, as nothing in the lab may reach the outside.

// ClusterDNS is kube-dns's ClusterIP, kubelet's clusterDNS.
const ClusterDNS = "10.96.0.10"

const corefile = `.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    cache 30
    loadbalance
}
`

// deployDNS creates CoreDNS's objects and waits until it answers (its Pods Ready).
func deployDNS(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	const ns, name = "kube-system", "coredns"
	labels := map[string]string{"k8s-app": "kube-dns"}
	create := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s: %w", what, err)
		}
		return nil
	}
	opts := metav1.CreateOptions{}
	meta := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	if err := create("ServiceAccount coredns", ignore(cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, opts))); err != nil {
		return err
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
	}}
	if err := create("ClusterRole system:coredns", ignore(cs.RbacV1().ClusterRoles().Create(ctx, role, opts))); err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:coredns"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}}
	if err := create("ClusterRoleBinding system:coredns", ignore(cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, opts))); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"Corefile": corefile}}
	if err := create("ConfigMap coredns", ignore(cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, opts))); err != nil {
		return err
	}
	dep := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](2),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{
				ServiceAccountName: name,
				// Its own resolv.conf would name itself.
				DNSPolicy:         corev1.DNSDefault,
				PriorityClassName: "system-cluster-critical",
				Containers: []corev1.Container{{
					Name: "coredns", Image: images.CoreDNSRef, ImagePullPolicy: corev1.PullNever,
					Args: []string{"-conf", "/etc/coredns/Corefile"},
					Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
						{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP}},
					VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns", ReadOnly: true}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/ready", Port: intstr.FromInt32(8181)}}, PeriodSeconds: 2},
					LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/health", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 10, FailureThreshold: 5},
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}},
					},
				}},
				Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
					ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}},
			},
		},
	}}
	if err := create("Deployment coredns", ignore(cs.AppsV1().Deployments(ns).Create(ctx, dep, opts))); err != nil {
		return err
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{ClusterIP: ClusterDNS, Selector: labels, Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
		}}}
	if err := create("Service kube-dns", ignore(cs.CoreV1().Services(ns).Create(ctx, svc, opts))); err != nil {
		return err
	}
	return waitUntil(timeout, func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas < *d.Spec.Replicas {
			return fmt.Errorf("coredns: %d of %d Pods Ready", d.Status.ReadyReplicas, *d.Spec.Replicas)
		}
		return nil
	})
}

// ignore drops a Create's object, keeping its error.
func ignore[T any](_ T, err error) error { return err }
