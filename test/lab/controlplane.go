package lab

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const apiPort = "6443"

// startControlPlane issues the certificates and starts etcd, kube-apiserver and
// kube-controller-manager in the control-plane namespace, and waits until the API answers.
func (l *Lab) startControlPlane(ctx context.Context) error {
	pki := filepath.Join(l.State, "pki")
	ca, err := newCA(pki)
	if err != nil {
		return err
	}
	if err := ca.serviceAccountKey(); err != nil {
		return err
	}
	if err := ca.issue("apiserver", "kube-apiserver", nil, "127.0.0.1", CPv4, "10.96.0.1", "localhost",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"); err != nil {
		return err
	}
	// One admin identity for the lab's own components keeps the lab about Fairlead; the Helm
	// chart's least-privilege RBAC is tested on its own.
	if err := ca.issue("admin", "fairlead-lab-admin", []string{"system:masters"}); err != nil {
		return err
	}
	if err := l.issueKubeletCerts(ca); err != nil {
		return err
	}
	for _, k := range []struct{ name, server string }{
		{"admin", "https://127.0.0.1:" + apiPort},        // inside fl-cp
		{"node", "https://" + CPv4 + ":" + apiPort},      // from the nodes, over the LAN
		{"host", "https://127.0.0.1:" + l.hostPortStr()}, // from the host, through the relay
	} {
		if _, err := ca.kubeconfigFor(k.name, "admin", k.server); err != nil {
			return err
		}
	}

	if err := l.startEtcd(); err != nil {
		return err
	}
	p := func(f string) string { return filepath.Join(pki, f) }
	if err := l.daemon(l.CP(), "kube-apiserver", filepath.Join(l.K8sBin, "kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", "0.0.0.0", "--secure-port", apiPort, "--advertise-address", CPv4,
		"--tls-cert-file", p("apiserver.crt"), "--tls-private-key-file", p("apiserver.key"),
		"--client-ca-file", p("ca.crt"),
		"--service-account-key-file", p("sa.pub"), "--service-account-signing-key-file", p("sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", ServiceV4+","+ServiceV6,
		// Node: each kubelet reaches only its own Node and what its Pods use.
		"--authorization-mode", "Node,RBAC", "--allow-privileged=true",
		// exec, logs and port-forward go to the kubelets over the LAN, both ends checked.
		"--kubelet-client-certificate", p(apiserverKubeletClient+".crt"), "--kubelet-client-key", p(apiserverKubeletClient+".key"),
		"--kubelet-certificate-authority", p("ca.crt"), "--kubelet-preferred-address-types", "InternalIP",
		"--enable-priority-and-fairness=false"); err != nil {
		return err
	}
	if err := l.waitAPI(ctx, 2*time.Minute); err != nil {
		return fmt.Errorf("kube-apiserver did not become ready (see %s): %w", filepath.Join(l.State, "logs", "kube-apiserver.log"), err)
	}
	if err := l.daemon(l.CP(), "kube-controller-manager", filepath.Join(l.K8sBin, "kube-controller-manager"),
		"--kubeconfig", p("admin.kubeconfig"),
		"--service-account-private-key-file", p("sa.key"), "--root-ca-file", p("ca.crt"),
		"--cluster-name", "fairlead-lab", "--leader-elect=false",
		"--use-service-account-credentials=false",
		"--bind-address", "127.0.0.1", "--secure-port", "10257",
		// Nodes get the pod CIDRs the lab's topology routes: the lab agent sets spec.podCIDRs,
		// and `lab up` does it for kubelets.
		"--allocate-node-cidrs=false"); err != nil {
		return err
	}
	if !l.kubelets() {
		return nil // node1's lab agent schedules
	}
	return l.daemon(l.CP(), "kube-scheduler", filepath.Join(l.K8sBin, "kube-scheduler"),
		"--kubeconfig", p("admin.kubeconfig"), "--authentication-kubeconfig", p("admin.kubeconfig"),
		"--authorization-kubeconfig", p("admin.kubeconfig"),
		"--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "10259")
}

// startEtcd runs etcd in the control-plane namespace on the lab's data directory (a restart
// finds its data there).
func (l *Lab) startEtcd() error {
	return l.daemon(l.CP(), "etcd", filepath.Join(l.K8sBin, "etcd"),
		"--name", "lab", "--data-dir", filepath.Join(l.State, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "lab=http://127.0.0.1:2380",
		// A lab is thrown away, never recovered: skipping fsync makes it several times faster.
		"--unsafe-no-fsync")
}

func (l *Lab) hostPortStr() string { return fmt.Sprint(l.HostPort) }

// RESTConfig is an admin config for the lab's apiserver, dialled from inside the control-plane
// namespace (no relay needed).
func (l *Lab) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(l.State, "pki", "admin.kubeconfig"))
	if err != nil {
		return nil, err
	}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return DialIn(ctx, l.CP(), network, addr)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

func (l *Lab) waitAPI(ctx context.Context, timeout time.Duration) error {
	cfg, err := l.RESTConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
