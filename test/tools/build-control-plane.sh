#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests and the lab run: kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl from k8s.io/kubernetes,
# etcd from go.etcd.io/etcd/server/v3, agnhost (k8s.io/kubernetes/test/images/agnhost, the
# e2e suite's test server, for test/images) and e2e.test (k8s.io/kubernetes/test/e2e, Kubernetes'
# own end-to-end suite, for the conformance run, with the ginkgo CLI that runs it in parallel), and coredns (github.com/coredns/coredns, with
# the plugins a cluster's DNS needs, for the lab's kubelet nodes); WANT names those to build.
# They are built in throwaway modules outside the repo (k8s.io/kubernetes is not meant to be
# required as a library, it needs a replace per staging repo) and cached under
# $XDG_CACHE_HOME/fairlead/bin/<version>, so a second run only checks that they are there.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.5}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/fairlead
OUT=${1:-$CACHE/bin/k8s-$K8S_VERSION}
WANT=${WANT:-kube-apiserver etcd}

mkdir -p "$OUT"
missing=()
for b in $WANT; do [ -x "$OUT/$b" ] || missing+=("$b"); done
[ ${#missing[@]} -eq 0 ] && { echo "$OUT"; exit 0; }

# One build at a time: `make test` and a test binary started by hand both land here on a cold
# cache, and two of them writing one module directory break it. The second waits, then finds
# the binaries built.
mkdir -p "$CACHE"
exec 9>"$CACHE/.build-control-plane.lock"
flock 9
missing=()
for b in $WANT; do [ -x "$OUT/$b" ] || missing+=("$b"); done
[ ${#missing[@]} -eq 0 ] && { echo "$OUT"; exit 0; }

build_etcd() {
  local dir=$CACHE/src/etcd-$ETCD_VERSION
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" &&
    { [ -f go.mod ] || go mod init fairlead.local/etcd >/dev/null 2>&1; } &&
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null &&
    go mod tidy >/dev/null &&
    CGO_ENABLED=0 go build -trimpath -o "$OUT/etcd.tmp" . &&
    mv "$OUT/etcd.tmp" "$OUT/etcd")
}

COREDNS_VERSION=${COREDNS_VERSION:-1.15.0}

build_coredns() {
  local dir=$CACHE/src/coredns-$COREDNS_VERSION
  mkdir -p "$dir"
  # coremain with only the plugins a cluster's Corefile uses: importing them registers them.
  cat >"$dir/main.go" <<'GO'
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
GO
  (cd "$dir" &&
    { [ -f go.mod ] || go mod init fairlead.local/coredns >/dev/null 2>&1; } &&
    go get "github.com/coredns/coredns@v$COREDNS_VERSION" >/dev/null &&
    go mod tidy >/dev/null &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/coredns.tmp" . &&
    mv "$OUT/coredns.tmp" "$OUT/coredns")
}

build_k8s() { # args: binaries to build (cmd names)
  local dir=$CACHE/src/kubernetes-$K8S_VERSION
  mkdir -p "$dir"
  # A go.mod without the require line is what an interrupted build left: start over.
  if ! grep -q "^require k8s.io/kubernetes v$K8S_VERSION\$" "$dir/go.mod" 2>/dev/null; then
    rm -f "$dir/go.mod" "$dir/go.sum" "$dir/tools.go" "$dir/tools.done"
    local minor=${K8S_VERSION#*.}; minor=${minor%%.*}
    # Every ./staging replace of k8s.io/kubernetes becomes a replace to the published v0.X module.
    local gomod
    gomod=$(cd "$dir" && GOFLAGS=-mod=mod GO111MODULE=on go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
      echo "module fairlead.local/k8s"
      echo
      echo "go $(go env GOVERSION | sed 's/^go//')"
      echo
      echo "require k8s.io/kubernetes v$K8S_VERSION"
      grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$gomod" |
        awk -v v="v0.$minor.${K8S_VERSION##*.}" '{print "replace " $1 " => " $1 " " v}'
    } >"$dir/go.mod.tmp"
    mv "$dir/go.mod.tmp" "$dir/go.mod"
  fi
  # Importing the app packages lets `go mod tidy` resolve everything the commands need. The file
  # is rewritten on every build so a cache made before a command was added is completed.
  # agnhost's main package cannot be imported: its imports are, read from its source.
  local kdir
  kdir=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  local agnhost_imports
  agnhost_imports=$(sed -n '/^import (/,/^)/p' "$kdir/test/images/agnhost/agnhost.go" |
    grep -o '"[^"]*\.[^"]*"' | sort -u | sed 's/^/\t_ /')
  [ -n "$agnhost_imports" ] || { echo "no imports found in $kdir/test/images/agnhost/agnhost.go" >&2; return 1; }
  # The same for e2e.test: its test file's imports (the test sources) must be in go.sum too.
  local e2e_imports
  e2e_imports=$(sed -n '/^import (/,/^)/p' "$kdir/test/e2e/e2e_test.go" |
    grep -o '"[^"]*\.[^"]*"' | sort -u | sed 's/^/\t_ /')
  [ -n "$e2e_imports" ] || { echo "no imports found in $kdir/test/e2e/e2e_test.go" >&2; return 1; }
  local tools="//go:build tools

package tools

import (
	_ \"k8s.io/kubernetes/cmd/kube-apiserver/app\"
	_ \"k8s.io/kubernetes/cmd/kube-controller-manager/app\"
	_ \"k8s.io/kubernetes/cmd/kube-proxy/app\"
	_ \"k8s.io/kubernetes/cmd/kube-scheduler/app\"
	_ \"k8s.io/kubernetes/cmd/kubelet/app\"
	_ \"k8s.io/kubectl/pkg/cmd\"
$agnhost_imports
$e2e_imports
)"
  # tools.done records the imports a finished tidy resolved (an interrupted one leaves no mark).
  if [ "$(cat "$dir/tools.done" 2>/dev/null)" != "$tools" ]; then
    printf '%s\n' "$tools" >"$dir/tools.go"
    (cd "$dir" && go mod tidy >/dev/null)
    printf '%s\n' "$tools" >"$dir/tools.done"
  fi
  local major=${K8S_VERSION%%.*} minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  for b in "$@"; do
    local pkg=k8s.io/kubernetes/cmd/$b
    [ "$b" = agnhost ] && pkg=k8s.io/kubernetes/test/images/agnhost
    # The ginkgo CLI runs e2e.test in parallel processes; built from the version e2e.test uses.
    [ "$b" = ginkgo ] && pkg=github.com/onsi/ginkgo/v2/ginkgo
    # The "invalid conntrack state" spec's server (the e2e manifest's regression-issue-74839).
    [ "$b" = regression-issue-74839 ] && pkg=k8s.io/kubernetes/test/images/regression-issue-74839
    if [ "$b" = e2e.test ]; then
      (cd "$dir" && CGO_ENABLED=0 go test -c -trimpath -ldflags "$ld" -o "$OUT/$b.tmp" k8s.io/kubernetes/test/e2e && mv "$OUT/$b.tmp" "$OUT/$b")
      continue
    fi
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$OUT/$b.tmp" "$pkg" && mv "$OUT/$b.tmp" "$OUT/$b")
  done
}

k8s=()
for b in "${missing[@]}"; do
  case $b in
    etcd) echo "building etcd v$ETCD_VERSION (once, cached in $OUT)" >&2; build_etcd ;;
    coredns) echo "building coredns v$COREDNS_VERSION (once, cached in $OUT)" >&2; build_coredns ;;
    *) k8s+=("$b") ;;
  esac
done
if [ ${#k8s[@]} -gt 0 ]; then
  echo "building ${k8s[*]} v$K8S_VERSION from k8s.io/kubernetes (once, ~10 min cold, cached in $OUT)" >&2
  build_k8s "${k8s[@]}"
fi
echo "$OUT"
