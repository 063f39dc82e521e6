package main

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/test/images"
)

const module = "github.com/fairlead-lb/fairlead"

// The image ships its binaries to users, so nothing they link may come from test/: those
// packages create network namespaces, start etcd and kubelets, build images (issue 21: the lab
// rode in fairleadctl). The check lives here rather than in test/images, whose tests all need
// root and containerd and are skipped in the fast lane; this one needs only `go list`.
func TestImageLinksNothingFromTest(t *testing.T) {
	labCmd := module + "/test/lab/cmd/fairlead-lab"
	roots := append(images.FairleadPackages(), labCmd)
	graph := importGraph(t, roots...)
	for _, pkg := range images.FairleadPackages() {
		if _, ok := graph[pkg]; !ok {
			t.Fatalf("go list did not list %s", pkg)
		}
		if path := pathTo(graph, pkg, isTest); path != nil {
			t.Errorf("the image's %s links %s: %s", short(pkg), short(path[len(path)-1]), strings.Join(mapShort(path), " → "))
		}
	}
	// The check must be able to fail: the lab's own command is made of test/ packages.
	if pathTo(graph, labCmd, func(p string) bool { return p == module+"/test/lab" }) == nil {
		t.Errorf("%s does not reach test/lab in the import graph: the check above sees nothing", short(labCmd))
	}
}

// The Dockerfile is the image's other build (make image, where Docker runs): it must build
// exactly the binaries the check above covers.
func TestDockerfileBuildsTheImageBinaries(t *testing.T) {
	b, err := os.ReadFile("../../test/images/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var built []string
	for _, f := range strings.Fields(string(b)) {
		if rest, ok := strings.CutPrefix(f, "./cmd/"); ok {
			built = append(built, rest)
		}
	}
	want := slices.Clone(images.FairleadBinaries)
	slices.Sort(built)
	slices.Sort(want)
	if !slices.Equal(built, want) {
		t.Errorf("test/images/Dockerfile builds %v, images.FairleadBinaries are %v", built, want)
	}
}

// importGraph is `go list -deps` of roots as the image builds them (static, for Linux: build
// constraints decide what is imported): each package's imports.
func importGraph(t *testing.T, roots ...string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}, roots...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.String())
	}
	graph := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	return graph
}

// pathTo is the shortest import path from pkg to a package matching target (pkg first), or nil.
func pathTo(graph map[string][]string, pkg string, target func(string) bool) []string {
	from := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if target(p) {
			var path []string
			for ; p != ""; p = from[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return path
		}
		for _, imp := range graph[p] {
			if _, seen := from[imp]; !seen {
				from[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return nil
}

func isTest(pkg string) bool { return strings.HasPrefix(pkg, module+"/test/") }

func short(pkg string) string { return strings.TrimPrefix(pkg, module+"/") }

func mapShort(pkgs []string) []string {
	out := make([]string, len(pkgs))
	for i, p := range pkgs {
		out[i] = short(p)
	}
	return out
}
