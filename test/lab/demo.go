package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/test/images"
)

// DemoNamespace holds the demo application.
const DemoNamespace = "demo"

// EchoImage is the demo's image: test/echo alone, imported into every kubelet node's
// containerd (nothing is ever pulled).
var EchoImage = images.EchoRef

// Demo objects: a Deployment of three echo Pods and two LoadBalancer Services over it, one
// from the layer 2 pool, one from the BGP pool.
func demoObjects() (*appsv1.Deployment, []*corev1.Service) {
	labels := map[string]string{"app": "echo"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: DemoNamespace, Name: "echo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					// Kubelet nodes run the echo image `lab up` imported (its host name is the
					// Pod's name); lab agents run test/echo whatever the container says.
					Name: "echo", Image: EchoImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"/echo", "-tcp", "8080"},
					Ports:   []corev1.ContainerPort{{Name: "echo", ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
						TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("echo")}}, PeriodSeconds: 1},
				}}},
			},
		},
	}
	svc := func(name, pool string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: DemoNamespace, Name: name,
				Annotations: map[string]string{"fairlead.dev/pool": pool}},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeLoadBalancer,
				Selector: labels,
				Ports:    []corev1.ServicePort{{Name: "echo", Port: 80, TargetPort: intstr.FromString("echo")}},
			},
		}
	}
	return d, []*corev1.Service{svc("echo-l2", "lab-l2"), svc("echo-bgp", "lab-bgp")}
}

// deployDemo creates the demo objects (idempotently) and waits until the Services have
// addresses and three ready endpoints.
func deployDemo(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DemoNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	d, svcs := demoObjects()
	if _, err := cs.AppsV1().Deployments(DemoNamespace).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for _, s := range svcs {
		if _, err := cs.CoreV1().Services(DemoNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		pending := demoPending(ctx, cs, svcs)
		if pending == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo is not ready after %s: %s", timeout, pending)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// demoPending says what the demo still waits for, or "" when it is ready.
func demoPending(ctx context.Context, cs kubernetes.Interface, svcs []*corev1.Service) string {
	for _, s := range svcs {
		got, err := cs.CoreV1().Services(DemoNamespace).Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if len(got.Status.LoadBalancer.Ingress) == 0 {
			return s.Name + " has no external address"
		}
		slices, err := cs.DiscoveryV1().EndpointSlices(DemoNamespace).List(ctx,
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + s.Name})
		if err != nil {
			return err.Error()
		}
		ready := 0
		for _, sl := range slices.Items {
			for _, e := range sl.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		if ready < 3 {
			return fmt.Sprintf("%s has %d of 3 ready endpoints", s.Name, ready)
		}
	}
	return ""
}

// printServices is `kubectl get svc -o wide` for the demo namespace.
func printServices(ctx context.Context, cs kubernetes.Interface, w io.Writer) error {
	list, err := cs.CoreV1().Services(DemoNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tCLUSTER-IP\tEXTERNAL-IP\tPORT(S)\tSELECTOR")
	for _, s := range list.Items {
		var ext, ports, sel []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			ext = append(ext, in.IP)
		}
		for _, p := range s.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
		for k, v := range s.Spec.Selector {
			sel = append(sel, k+"="+v)
		}
		if len(ext) == 0 {
			ext = []string{"<pending>"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec.Type, s.Spec.ClusterIP, strings.Join(ext, ","),
			strings.Join(ports, ","), strings.Join(sel, ","))
	}
	return tw.Flush()
}

// Request opens a TCP connection from inside namespace ns to addr and returns the line the
// echo server answers with ("<pod> <client address it saw>").
func Request(ctx context.Context, ns, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := DialIn(ctx, ns, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func hostPort(ip string, port int32) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }

// waitServing waits until each demo Service answers its client through its external address:
// a route or an ARP answer can come a moment before every node's proxy has the endpoints.
func (l *Lab) waitServing(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) {
	for _, c := range []struct{ svc, from string }{{"echo-l2", l.ClientL2()}, {"echo-bgp", l.ClientBGP()}} {
		s, err := cs.CoreV1().Services(DemoNamespace).Get(ctx, c.svc, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			continue
		}
		addr := hostPort(s.Status.LoadBalancer.Ingress[0].IP, s.Spec.Ports[0].Port)
		// Several answers in a row: with ECMP, one node's proxy may lag behind the others.
		err = waitUntil(timeout, func() error {
			for i := 0; i < 6; i++ {
				if _, err := Request(ctx, c.from, addr); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			l.say("• %s does not answer %s at %s after %s: %v", c.svc, c.from, addr, timeout, err)
		}
	}
}
