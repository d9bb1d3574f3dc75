# jumpmesh: every target CI, issues and people rely on. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := bin
# Tools pinned in proto/tools.mod, built once into a cache outside the tree.
TOOLS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/jumpmesh/tools
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/jumpmesh/jumpmesh/cmd/jmp/version.Version=$(VERSION)

.PHONY: help build deps test demo e2e test-k8s bench proto crds lint dist clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/jmp (and the j link)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/jmp ./cmd/jmp
	ln -sf jmp $(BIN)/j

proto: ## regenerate Go from proto/ with the pinned buf and plugins
	$(GO) build -modfile=proto/tools.mod -o $(TOOLS)/ github.com/bufbuild/buf/cmd/buf google.golang.org/protobuf/cmd/protoc-gen-go connectrpc.com/connect/cmd/protoc-gen-connect-go
	cd proto && PATH=$(TOOLS):$$PATH buf lint && PATH=$(TOOLS):$$PATH buf generate \
		&& if [ -d jumpmesh/coordinator ]; then PATH=$(TOOLS):$$PATH buf generate --template buf.gen.connect.yaml --path jumpmesh/coordinator; fi

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt -w on the files above"; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

deps: ## install or build what the tests need, once (Debian packages, a Kubernetes API server)
	./test/install-netsim-deps.sh
	./test/k8s/build-apiserver.sh >/dev/null

test: lint deps ## everything CI runs: lint, unit tests with -race, kernel lab, Kubernetes and end-to-end tests
	export JUMPMESH_K8S_ASSETS=$$(./test/k8s/build-apiserver.sh) && \
	$(GO) test -race -count=1 -timeout 30m ./... && \
	$(E2E_K8S)

e2e: deps ## end-to-end tests: the kernel network lab, and real processes on loopback
	$(GO) test -race -count=1 ./netsim/kernel/... ./test/e2e/...

# The coordinator's end-to-end tests again, on the Kubernetes store.
E2E_K8S = JUMPMESH_E2E_STORE=kubernetes $(GO) test -race -count=1 -timeout 15m -run '^TestCoordinator' ./test/e2e/

test-k8s: ## the Kubernetes store, and the coordinator end to end on it, against a real kube-apiserver and etcd
	export JUMPMESH_K8S_ASSETS=$$(./test/k8s/build-apiserver.sh) && \
	$(GO) test -race -count=1 ./coordinator/kubestore/... && \
	$(E2E_K8S)

crds: ## regenerate deploy/crds and the deepcopy code from coordinator/kubestore/api
	$(GO) generate ./coordinator/kubestore/api/...

demo: build ## a scripted session on the virtual board
	./examples/demo.sh

bench: ## benchmarks, with baselines measured in the same run
	$(GO) test -run '^$$' -bench . -benchmem ./...

dist: ## static binaries for linux/amd64, linux/arm64, linux/arm/v7
	for p in amd64:: arm64:: arm:7; do \
		IFS=: read -r arch arm _ <<< "$$p"; \
		out=$(BIN)/dist/jmp-linux-$$arch$${arm:+v$$arm}; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/jmp || exit 1; \
		echo "built $$out"; \
	done

clean:
	rm -rf $(BIN)
