# Fairlead. The two commands a user needs: `make lab` and `make test`. Everything they need is
# installed or built here and cached under $(CACHE), so a second run is fast.

SHELL := /bin/bash
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/fairlead
K8S_VERSION ?= 1.37.2
K8S_BIN := $(CACHE)/bin/k8s-$(K8S_VERSION)
TOOLS := $(CACHE)/tools
CONTROLLER_GEN := $(TOOLS)/controller-gen-v0.23.0
STATICCHECK := $(TOOLS)/staticcheck-v0.8.2
BIN := $(CURDIR)/bin
GO_TEST_FLAGS ?=

export FAIRLEAD_K8S_BIN := $(K8S_BIN)

.PHONY: all build test unit vet generate verify-generated control-plane packages bench plots image image-tar lab conformance soak clean

all: build

build:
	go build -o $(BIN)/ ./cmd/...

## test: vet, format and generated-code checks, then every test (unit and integration) against a
## real kube-apiserver + etcd built from source.
test: vet verify-generated packages control-plane
	go test -count=1 -timeout 30m $(GO_TEST_FLAGS) ./...

## unit: the fast lane, which CI runs first: the tests that need neither root, nor a built
## binary, nor an apiserver or another server. `go test -short`: the heavy tests say so through
## test/kit (kit.Heavy, netns.Require, kit.Binary, controlplane.Main and StartForTest,
## awsapi.Env) and skip themselves there, so a package's pure tests run even where others are
## heavy.
unit:
	go test -short -count=1 -timeout 5m $(GO_TEST_FLAGS) ./...

## vet: go vet, staticcheck and gofmt. ST1005 (error strings start lower-case) is off: ours
## start with the Kubernetes kind they are about ("Service ns/name ..."), as the apiserver's do.
vet: $(STATICCHECK)
	go vet ./...
	$(STATICCHECK) -checks inherit,-ST1005 ./...
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi

## packages: the Debian tools the network tests drive (nftables, conntrack, FRR, BIRD, ...) and
## moto, the AWS emulator the AWS provider tests talk to.
packages:
	@bash test/tools/install-packages.sh
	@bash test/tools/install-moto.sh

## control-plane: kube-apiserver and etcd for envtest; kube-controller-manager and kubectl for
## the labs the e2e suites run; kubelet, kube-scheduler, CoreDNS, agnhost and e2e.test for the
## conformance suite's kubelet lab (test/conformance). Built from their Go modules once.
CONTROL_PLANE := kube-apiserver etcd kube-controller-manager kubectl
KUBELET_LAB := kubelet kube-scheduler coredns
CONFORMANCE := agnhost e2e.test regression-issue-74839
control-plane:
	@WANT="$(CONTROL_PLANE) $(KUBELET_LAB) $(CONFORMANCE)" bash test/tools/build-control-plane.sh $(K8S_BIN) >/dev/null

$(STATICCHECK):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	mv $(TOOLS)/staticcheck $@

$(CONTROLLER_GEN):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
	mv $(TOOLS)/controller-gen $@

## generate: deepcopy code and CRD YAML (into charts/fairlead/crds) from config/v1alpha1.
generate: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object paths=./config/...
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./config/... output:crd:artifacts:config=charts/fairlead/crds
	$(CONTROLLER_GEN) rbac:roleName=fairlead-controller paths=./controllers/... output:rbac:artifacts:config=charts/fairlead/files/rbac/controller
	$(CONTROLLER_GEN) rbac:roleName=fairlead-speaker paths=./speaker/... output:rbac:artifacts:config=charts/fairlead/files/rbac/speaker

## verify-generated: fail when the committed generated files (CRDs, RBAC rules) are not what
## the code produces.
verify-generated: $(CONTROLLER_GEN)
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	  $(CONTROLLER_GEN) crd:crdVersions=v1 paths=./config/... output:crd:artifacts:config=$$tmp/crds && \
	  $(CONTROLLER_GEN) rbac:roleName=fairlead-controller paths=./controllers/... output:rbac:artifacts:config=$$tmp/rbac/controller && \
	  $(CONTROLLER_GEN) rbac:roleName=fairlead-speaker paths=./speaker/... output:rbac:artifacts:config=$$tmp/rbac/speaker && \
	  for d in crds files/rbac/controller files/rbac/speaker; do \
	    mkdir -p $$tmp/$${d#files/} charts/fairlead/$$d; \
	    diff -r $$tmp/$${d#files/} charts/fairlead/$$d >/dev/null || { echo "charts/fairlead/$$d is stale: run make generate"; diff -r $$tmp/$${d#files/} charts/fairlead/$$d | head -20; exit 1; }; \
	  done

## bench: Go benchmarks and the scenario runners; prints the tables the README quotes. The
## runners also write every sample they took to $(BENCH_OUT) (controller-latency.json,
## l2-failover.json, bgp-linkcut.json, proxy-sync.json, scale.json), and the last step draws them there as
## SVG plots. To publish a run: copy the JSON files to test/bench/plots/data, update the
## README's tables and figure notes, then `make plots`.
BENCH_OUT ?= $(BIN)/bench
bench: export FAIRLEAD_BENCH_OUT = $(BENCH_OUT)
bench: control-plane
	go test -run '^$$' -bench . -benchmem ./providers/...
	go test -run '^$$' -bench ComputeScale -benchmem ./speaker/l2/plan/
	go run ./test/bench/controller -services 1000,5000
	go test -run '^$$' -bench Scale -benchtime 1x -timeout 5h ./test/bench/scale/ -args -sizes 500,5000,50000
	go test -run '^$$' -bench FRR100 -benchtime 1x ./speaker/bgp/
	go test -run '^$$' -bench FRRLinkCut -benchtime 1x -timeout 30m ./speaker/bgp/
	go test -run '^$$' -bench Failover -benchtime 1x ./speaker/l2/e2e/
	go test -run '^$$' -bench Sync10k -benchtime 1x ./speaker/proxy/nftsync/
	@WANT="kube-proxy" bash test/tools/build-control-plane.sh $(K8S_BIN) >/dev/null
	go test -run '^$$' -bench VsKubeProxy -benchtime 1x -timeout 2h ./test/bench/proxy/ -args -sizes 10,1000,10000,30000
	go run ./test/bench/plots -readme "" -samples $(BENCH_OUT) -out $(BENCH_OUT)

## plots: the README's figures, as SVG files in test/bench/plots: the proxy and controller bars
## from the README's tables, the latency CDF and failover distributions from the samples
## committed in test/bench/plots/data.
plots:
	go run ./test/bench/plots -readme README.md -samples test/bench/plots/data -out test/bench/plots

## image: the container image the chart deploys: `docker build` where a Docker engine answers,
## else image-tar. image-tar: the same image assembled in Go without Docker (test/images), written
## as a docker-archive to bin/fairlead-image.tar (`ctr -n k8s.io images import` or `docker load`).
IMAGE ?= ghcr.io/fairlead-lb/fairlead:dev
image:
	@if docker info >/dev/null 2>&1; then docker build -f test/images/Dockerfile -t $(IMAGE) .; else \
	  echo "no Docker engine answers: building $(BIN)/fairlead-image.tar in Go" >&2; $(MAKE) --no-print-directory image-tar; fi

image-tar:
	go run ./test/images/build -image fairlead -ref $(IMAGE) -bin $(BIN)/image -out $(BIN)/fairlead-image.tar

## lab: the whole system in network namespaces on this box (root): three kubelet nodes with a
## containerd each, Fairlead installed by its chart (Helm) from its image, no kube-proxy; and
## Prometheus with the chart's scrape config and alerts (`bin/fairlead-lab status` says where).
## NODES=agent runs lab agents instead (Pods as processes, Fairlead as processes: faster, what
## the e2e suite uses). `bin/fairlead-lab down` removes it. fairlead-lab is the lab's own
## command (test/lab/cmd/fairlead-lab), not part of the image's fairleadctl.
NODES ?= kubelet
lab: packages control-plane
	@WANT="$(CONTROL_PLANE) $(KUBELET_LAB)" bash test/tools/build-control-plane.sh $(K8S_BIN) >/dev/null
	CGO_ENABLED=0 go build -o $(BIN)/ ./cmd/... ./test/lab/cmd/fairlead-lab ./test/echo
	$(BIN)/fairlead-lab up --nodes $(NODES) --bin $(BIN) --k8s-bin $(K8S_BIN) --crds charts/fairlead/crds

## conformance: Kubernetes' Service and proxy e2e specs (wider than `make test`'s 15
## conformance specs) on the kubelet lab, with Fairlead and then with kube-proxy; prints the
## table the README quotes (and writes it to bin/conformance.md).
conformance: packages control-plane
	@WANT="kube-proxy ginkgo" bash test/tools/build-control-plane.sh $(K8S_BIN) >/dev/null
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/ ./cmd/... ./test/lab/cmd/fairlead-lab ./test/echo
	go run ./test/conformance/table -bin $(BIN) -k8s-bin $(K8S_BIN) -out $(BIN)/conformance.md

## soak: the lab under load and faults for SOAK_DURATION (default 20m): clients on layer 2, BGP,
## ClusterIP and NodePort addresses, Services churned, a fault schedule drawn from SOAK_SEED
## (default: a new one, printed first; set it to replay a run). Prints the table the README
## quotes; fails on a changed, duplicate or double-announced address or an unrecovered fault.
## `make test` runs a short one (test/soak/short).
SOAK_DURATION ?= 20m
SOAK_SEED ?= 0
soak: packages control-plane
	go run ./test/soak/cmd -duration $(SOAK_DURATION) -seed $(SOAK_SEED)

clean:
	rm -rf $(BIN)
