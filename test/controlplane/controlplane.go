// Package controlplane starts a real kube-apiserver and etcd for tests (controller-runtime's
// envtest, pointed at binaries built from k8s.io/kubernetes and go.etcd.io/etcd by
// test/tools/build-control-plane.sh) with Fairlead's CRDs installed.
package controlplane

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/fairlead-lb/fairlead/config/scheme"
)

// Options tune the control plane.
type Options struct {
	// ServiceCIDRs overrides --service-cluster-ip-range; two CIDRs make the cluster dual-stack.
	ServiceCIDRs string
	// ExtraArgs are appended to kube-apiserver's flags (name → value).
	ExtraArgs map[string]string
	// CRDDirs are installed besides Fairlead's own CRDs (e.g. MetalLB's, for benchmarks).
	CRDDirs []string
}

// Env is a running control plane.
type Env struct {
	env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	Scheme *k8sruntime.Scheme
}

// RepoRoot is the checkout this package lives in.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir returns the directory holding kube-apiserver and etcd, building them if needed
// (make sets FAIRLEAD_K8S_BIN after building; go test alone builds on first use).
func BinDir() (string, error) {
	if d := os.Getenv("FAIRLEAD_K8S_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err == nil {
			return d, nil
		}
	}
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "test/tools/build-control-plane.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the control plane: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Start brings up etcd and kube-apiserver and installs the CRDs from charts/fairlead/crds.
func Start(opts Options) (*Env, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	sch := scheme.New()
	e := &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     append([]string{filepath.Join(RepoRoot(), "charts/fairlead/crds")}, opts.CRDDirs...),
		ErrorIfCRDPathMissing: true,
		Scheme:                sch,
		// envtest's 20 s default is too short on two busy cores (a cold apiserver takes longer).
		ControlPlaneStartTimeout: 2 * time.Minute,
	}
	api := e.ControlPlane.GetAPIServer()
	args := api.Configure()
	if opts.ServiceCIDRs != "" {
		args.Set("service-cluster-ip-range", opts.ServiceCIDRs)
	}
	for k, v := range opts.ExtraArgs {
		args.Set(k, v)
	}
	cfg, err := e.Start()
	if err != nil {
		// envtest leaves etcd and the apiserver running when a later step (the CRDs) fails.
		_ = e.Stop()
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", bin, err)
	}
	// Tests create objects fast; client-go's default 5 QPS would make them measure the limiter.
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: sch})
	if err != nil {
		_ = e.Stop()
		return nil, err
	}
	return &Env{env: e, Config: cfg, Client: c, Scheme: sch}, nil
}

// Stop shuts the control plane down and removes its data.
func (e *Env) Stop() error { return e.env.Stop() }

// Kubeconfig writes a kubeconfig for an admin user to path, for processes the test starts.
func (e *Env) Kubeconfig(path string) error {
	u, err := e.env.ControlPlane.AddUser(envtest.User{Name: "fairlead-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	data, err := u.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// UserConfig returns a rest.Config authenticated as the given user and groups, to test RBAC.
func (e *Env) UserConfig(name string, groups ...string) (*rest.Config, error) {
	u, err := e.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	cfg := u.Config()
	cfg.QPS, cfg.Burst = 500, 1000
	return cfg, nil
}

// EtcdURL is etcd's client address, for tests that write storage directly (a backlog the API
// would take hours to create).
func (e *Env) EtcdURL() *url.URL { return e.env.ControlPlane.Etcd.URL }
