// Package metallb gives tests and benchmarks MetalLB itself: its controller built from its Go
// module and its CRDs from the module's source, both cached.
package metallb

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Version is the MetalLB release compared against.
const Version = "v0.15.2"

func cacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "fairlead")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "fairlead")
}

// Controller returns the path of MetalLB's controller binary, building it from
// go.universe.tf/metallb/controller@Version the first time (minutes on two cores).
func Controller() (string, error) {
	dir := filepath.Join(cacheDir(), "tools", "metallb-"+Version)
	bin := filepath.Join(dir, "controller")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(os.Stderr, "building MetalLB's controller %s from its module (once)\n", Version)
	cmd := exec.Command("go", "install", "go.universe.tf/metallb/controller@"+Version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building MetalLB's controller: %w", err)
	}
	return bin, nil
}

// CRDDir returns a directory of MetalLB's CRDs, from its module's source, as apiservers of
// 1.37 accept them: the BGPPeer CRD declares its ASNs "format: int32" with a maximum of
// 4294967295, and kube-apiserver 1.37 refuses every BGPPeer against that schema ("Maximum
// boundary value must be of type integer with format int32"). The copy drops that format,
// and only where the maximum exceeds an int32; everything else is MetalLB's.
func CRDDir() (string, error) {
	src, err := moduleCRDDir()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(cacheDir(), "tools", "metallb-"+Version+"-crds")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return "", err
		}
		lines := strings.Split(string(b), "\n")
		var out []string
		for i, l := range lines {
			if strings.TrimSpace(l) == "format: int32" && i+1 < len(lines) && strings.TrimSpace(lines[i+1]) == "maximum: 4294967295" {
				continue
			}
			out = append(out, l)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), []byte(strings.Join(out, "\n")), 0o644); err != nil {
			return "", err
		}
	}
	return dst, nil
}

func moduleCRDDir() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", "go.universe.tf/metallb@"+Version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("downloading MetalLB's module: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", err
	}
	return filepath.Join(mod.Dir, "config", "crd", "bases"), nil
}

// ControllerArgs are the flags MetalLB's controller runs with outside a cluster: no webhook
// (it needs certificates and a Service), no metrics port. class limits it to Services of that
// loadBalancerClass; "" takes the Services without one, as an ordinary install does.
func ControllerArgs(kubeconfig, namespace, class string) []string {
	args := []string{"-kubeconfig", kubeconfig, "-namespace", namespace, "-webhook-mode", "disabled", "-port", "0"}
	if class != "" {
		args = append(args, "-lb-class", class)
	}
	return args
}
