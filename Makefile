# Flotilla's build. `make demo` and `make test` are the README's quickstart.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := build

# Tool versions, pinned; each is built from the Go module proxy into bin/.
BUF_VERSION            := v1.75.0
PROTOC_GEN_GO_VERSION  := v1.36.12

BIN        := $(CURDIR)/bin
TEST_BINS  := $(BIN)/k8s
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -X github.com/flotilla-dev/flotilla/internal/version.Version=$(VERSION)
GO_TEST_FLAGS ?= -count=1 -timeout 40m

.PHONY: build
build: ## Build hub, agent and the flotilla CLI into bin/.
	go build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

.PHONY: test-bins
test-bins: ## Build kube-apiserver, etcd, controller-manager, scheduler and kwok into bin/k8s (idempotent).
	test/k8sbin/build.sh $(TEST_BINS)

.PHONY: test
test: test-bins proto-check vet ## Run every test against real apiservers, NATS and git.
	FLOTILLA_TEST_BINS=$(TEST_BINS) go test $(GO_TEST_FLAGS) ./...

.PHONY: vet
vet:
	go vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

.PHONY: proto
proto: $(BIN)/buf $(BIN)/protoc-gen-go ## Lint and regenerate the Go code of proto/.
	$(BIN)/buf lint
	$(BIN)/buf generate

.PHONY: proto-check
proto-check: proto ## Fail when the committed generated code is stale.
	@git diff --exit-code -- proto/ || { echo "proto/: generated code is stale: run 'make proto' and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- proto/); \
	if [ -n "$$untracked" ]; then echo "proto/: generated files not committed: $$untracked"; exit 1; fi

.PHONY: demo
demo: build test-bins ## Run the hub, two agents and a local apiserver on the example repo.
	go run ./test/demo

.PHONY: help
help:
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-12s %s\n", $$1, $$2}'
