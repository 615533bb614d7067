# Flotilla's build. `make demo` and `make test` are the README's quickstart.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

# Tool versions, pinned; each is built from the Go module proxy into bin/.
BUF_VERSION            := v1.75.0
PROTOC_GEN_GO_VERSION  := v1.36.12
CONNECT_VERSION        := v1.21.1
STATICCHECK_VERSION    := v0.8.2

BIN        := $(CURDIR)/bin
TEST_BINS  := $(BIN)/k8s
GO_TEST_FLAGS ?= -count=1 -timeout 40m

# What `make demo` starts; kubectl comes with test-bins.
DEMO_BINS  := kube-apiserver kube-controller-manager kube-scheduler etcd kwok

.PHONY: test-bins
test-bins: ## Build kube-apiserver, etcd, controller-manager, scheduler, kubectl and kwok into bin/k8s (idempotent).
	test/k8sbin/build.sh $(TEST_BINS)

.PHONY: demo-bins
demo-bins: ## Build only the binaries `make demo` starts into bin/k8s (idempotent).
	test/k8sbin/build.sh $(TEST_BINS) $(DEMO_BINS)

.PHONY: test
test: test-bins proto-check vet bench-check ## Run every test against real apiservers, NATS and git.
	FLOTILLA_TEST_BINS=$(TEST_BINS) go test $(GO_TEST_FLAGS) ./...

# The soak: random faults (hub leader, a follower and its NATS node, an
# agent, an API server, each killed with SIGKILL) while commits land, then
# the fault suite's invariants and a summary (docs/benchmarks.md).
DURATION ?= 10m
.PHONY: soak
soak: test-bins ## Random faults for DURATION (default 10m) while commits land; not part of `make test`.
	FLOTILLA_TEST_BINS=$(TEST_BINS) go test -tags soak ./test/e2e -run '^TestSoak$$' -count=1 -v -timeout 6h -soak $(DURATION)

.PHONY: vet
vet: $(BIN)/staticcheck ## go vet, staticcheck and gofmt.
	go vet ./...
	go vet -tags soak ./test/e2e
	$(BIN)/staticcheck ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

$(BIN)/staticcheck:
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-connect-go:
	GOBIN=$(BIN) go install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(CONNECT_VERSION)

.PHONY: proto
proto: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go ## Lint and regenerate the Go code of proto/.
	$(BIN)/buf lint
	$(BIN)/buf generate

.PHONY: proto-check
proto-check: proto ## Fail when the committed generated code is stale.
	@git diff --exit-code -- proto/ || { echo "proto/: generated code is stale: run 'make proto' and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- proto/); \
	if [ -n "$$untracked" ]; then echo "proto/: generated files not committed: $$untracked"; exit 1; fi

BENCHSTAT_VERSION := v0.0.0-20260908200009-22c9c6c9d4da

$(BIN)/benchstat:
	GOBIN=$(BIN) go install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)

# The Flux peer is a module of its own (so Flux stays out of Flotilla's
# go.mod) that builds Flotilla's code with replace: when the main go.mod
# moves on, the peer's go.mod must follow, or `make bench` stops at it.
# bench-check fails then, and when a benchmark no longer compiles, without
# running any: its go test matches no test and no benchmark, so it only
# compiles and links. `make test` runs it; it takes seconds once cached.
.PHONY: bench-check
bench-check: ## Check that the benchmarks build and the Flux peer module (test/bench/flux) is tidy, without running them.
	go vet ./test/bench/...
	cd test/bench/flux && go mod tidy -diff
	cd test/bench/flux && go vet ./...
	cd test/bench/flux && go test -count=1 -run '^$$' -bench '^$$' ./...

.PHONY: bench
bench: test-bins $(BIN)/benchstat bench-check ## Run the benchmarks, Flux's peer run included (docs/benchmarks.md); output in bin/bench.txt.
	@: > $(BIN)/bench.txt
	@# Each benchmark in its own process, so none runs on another's heap.
	set -o pipefail; for b in $$(go test -list '^Benchmark' ./test/bench | grep '^Benchmark'); do \
		FLOTILLA_TEST_BINS=$(TEST_BINS) go test -run '^$$' -bench "^$$b$$" -benchtime 1x -count 1 -timeout 30m ./test/bench | tee -a $(BIN)/bench.txt || exit 1; \
	done
	set -o pipefail; cd test/bench/flux && FLOTILLA_TEST_BINS=$(TEST_BINS) go test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 20m . | tee -a $(BIN)/bench.txt
	$(BIN)/benchstat $(BIN)/bench.txt

# The demo runs its own binary in the recipe's place (exec), not under `go
# run`: go run exits 1 on Ctrl-C whatever the program does, and make then
# reports "Error 1". The demo stops everything it started on Ctrl-C
# (test/demo/supervise.go; TestCtrlCStopsEverything checks it).
.PHONY: demo
demo: demo-bins ## Hub, embedded NATS, two API servers and two agents on the example repo; Ctrl-C stops everything.
	go build -o $(BIN)/flotilla-demo ./test/demo
	FLOTILLA_TEST_BINS=$(TEST_BINS) exec $(BIN)/flotilla-demo

# The hub and agent images, built without Docker into the OCI image layout
# bin/images (deployments/README.md). VERSION tags them; LICENSES, an SPDX
# expression, fills their license label once the project has chosen one.
VERSION  ?= 0.1.0
LICENSES ?=

.PHONY: images
images: ca-certificates ## Build the hub and agent images (linux/amd64, linux/arm64, SBOMs) into the OCI layout bin/images.
	go run ./deployments/images -out $(BIN)/images -version $(VERSION) -licenses "$(LICENSES)"

# The images' CA bundle is made from Debian's ca-certificates package.
.PHONY: ca-certificates
ca-certificates:
	@dpkg-query -W -f='$${db:Status-Status}' ca-certificates 2>/dev/null | grep -qx installed || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates; }

.PHONY: help
help:
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-12s %s\n", $$1, $$2}'
