# pullthrough — a pull-through cache for container registries.
.DEFAULT_GOAL := help
SHELL := /bin/bash

GO        ?= go
ARCH      ?= arm64
BUILD     := build
FUZZTIME  ?= 10s
TOOLS     ?= $(HOME)/.cache/pullthrough/tools
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export PULLTHROUGH_TOOLS := $(TOOLS)

.PHONY: help
help: ## List targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run a local mirror of Docker Hub on 127.0.0.1:5000 over a filesystem store
	$(GO) build -o $(BUILD)/pullthrough ./functions/registry
	exec $(BUILD)/pullthrough

.PHONY: warm
warm: ## Pre-warm the configured store: make warm IMAGE=alpine:3.20 [PLATFORMS=linux/amd64]
	@test -n "$(IMAGE)" || { echo "usage: make warm IMAGE=alpine:3.20 [PLATFORMS=linux/amd64,linux/arm64]" >&2; exit 2; }
	$(GO) run ./functions/registry warm -platform "$(PLATFORMS)" $(IMAGE)

.PHONY: sweep
sweep: ## Delete cached content unused for PULLTHROUGH_RETENTION: make sweep RETENTION=30d [DRY_RUN=1]
	@test -n "$(RETENTION)" || { echo "usage: make sweep RETENTION=30d [DRY_RUN=1]" >&2; exit 2; }
	PULLTHROUGH_RETENTION=$(RETENTION) $(GO) run ./functions/registry sweep $(if $(DRY_RUN),--dry-run)

.PHONY: tools
tools: ## Install the pinned test servers and clients into $(TOOLS)
	bash scripts/tools.sh

.PHONY: test
test: tools lint test-go test-packaging fuzz infra-test release-check ## Run every test (installs what they need first)

.PHONY: test-go
test-go: ## Go tests against real S3, registry and Lambda-runtime stand-ins
	$(GO) test -race -count=1 -timeout 30m ./...

.PHONY: test-packaging
test-packaging: ## The image (built twice, run), the DaemonSet (strict API types, its script) and the systemd unit (systemd-analyze)
	cd packaging && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...
	bash packaging/systemd/verify.sh

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 10s)
	$(GO) test -run '^$$' -fuzz '^FuzzParseRoute$$' -fuzztime $(FUZZTIME) ./internal/proxy
	$(GO) test -run '^$$' -fuzz '^FuzzParseChallenge$$' -fuzztime $(FUZZTIME) ./internal/upstream
	$(GO) test -run '^$$' -fuzz '^FuzzImageReference$$' -fuzztime $(FUZZTIME) ./internal/proxy
	$(GO) test -run '^$$' -fuzz '^FuzzParseByteRange$$' -fuzztime $(FUZZTIME) ./internal/proxy
	$(GO) test -run '^$$' -fuzz '^FuzzNextLink$$' -fuzztime $(FUZZTIME) ./internal/upstream
	$(GO) test -run '^$$' -fuzz '^FuzzSchema1Payload$$' -fuzztime $(FUZZTIME) ./internal/oci

.PHONY: bench
bench: tools ## Side-by-side pulls vs distribution's proxy and direct (BENCH_SCALE=0.1 for a quick run), then Go benchmarks
	PULLTHROUGH_BENCH=1 $(GO) test ./bench -run '^TestBench$$' -v -count=1 -timeout 30m
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

.PHONY: package
package: ## Build the Lambda zip (ARCH=arm64|x86_64) under build/lambda, reproducibly (see scripts/release.sh)
	@case "$(ARCH)" in arm64) goarch=arm64;; x86_64) goarch=amd64;; *) echo "ARCH must be arm64 or x86_64" >&2; exit 2;; esac; \
	mkdir -p $(BUILD)/lambda/$(ARCH) && \
	GOOS=linux GOARCH=$$goarch CGO_ENABLED=0 GOFLAGS=-buildvcs=false $(GO) build -tags lambda.norpc -trimpath \
		-ldflags='-s -w -buildid= -X main.version=$(VERSION)' \
		-o $(BUILD)/lambda/$(ARCH)/bootstrap ./functions/registry && \
	chmod 0755 $(BUILD)/lambda/$(ARCH)/bootstrap && touch -d @$(SOURCE_DATE_EPOCH) $(BUILD)/lambda/$(ARCH)/bootstrap && \
	rm -f $(BUILD)/lambda/pullthrough-$(ARCH).zip && \
	(cd $(BUILD)/lambda/$(ARCH) && TZ=UTC zip -q -X -D ../pullthrough-$(ARCH).zip bootstrap) && \
	ls -l $(BUILD)/lambda/pullthrough-$(ARCH).zip | awk '{printf "%s: %.1f MiB\n", $$9, $$5/1048576}'

IMAGE_DIR       ?= $(BUILD)/image
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64

.PHONY: image
image: ## Build the local server's OCI image (no Docker) as an OCI layout in build/image/oci; push: crane push build/image/oci REF
	@set -e; bins=; for p in $(IMAGE_PLATFORMS); do \
		arch=$${p#linux/}; mkdir -p $(IMAGE_DIR)/bin/$$arch; \
		GOOS=linux GOARCH=$$arch CGO_ENABLED=0 GOFLAGS=-buildvcs=false $(GO) build -tags lambda.norpc -trimpath \
			-ldflags='-s -w -buildid= -X main.version=$(VERSION)' -o $(IMAGE_DIR)/bin/$$arch/pullthrough ./functions/registry; \
		bins="$$bins -binary $$p=$(abspath $(IMAGE_DIR))/bin/$$arch/pullthrough"; \
	done; \
	cd packaging && $(GO) run ./image -out $(abspath $(IMAGE_DIR))/oci -version $(VERSION) -epoch $(SOURCE_DATE_EPOCH) $$bins

.PHONY: release
release: ## Build pullthrough-<version>-{arm64,x86_64}.zip and SHA256SUMS under build/release (byte-identical on rebuild)
	VERSION=$(VERSION) SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) bash scripts/release.sh $(BUILD)/release

.PHONY: release-check
release-check: ## Build the release twice (another path, empty build cache) and compare checksums
	VERSION=$(VERSION) bash scripts/release-check.sh

.PHONY: infra-test
infra-test: package ## Terraform fmt/validate/test, then apply, re-plan and destroy against moto + versitygw
	PULLTHROUGH_TF_HOOK='$(GO) test -count=1 -run TestBootstrapWithTerraformEnvironment ./functions/registry' \
		bash infra/test/run.sh

.PHONY: localstack-up localstack-deploy localstack-smoke localstack-down
localstack-up: ## Start LocalStack (needs Docker and LOCALSTACK_AUTH_TOKEN)
	bash localstack/up.sh
localstack-deploy: package ## Apply infra/terraform/examples/basic to LocalStack
	bash localstack/deploy.sh
localstack-smoke: ## Pull an image through the LocalStack function URL
	bash localstack/smoke.sh
localstack-down: ## Stop LocalStack
	bash localstack/down.sh

.PHONY: fmt
fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## go vet and a gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
