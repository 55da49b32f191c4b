# creditmeter: the two set-up commands are `make demo` and `make test`.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
# Stamped into the binary (creditmeter version, creditmeter_build_info): Go's
# own VCS stamping needs a .git directory, absent in worktrees and images.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
COMMIT_TIME ?= $(shell git log -1 --format=%cI 2>/dev/null)
# staticcheck, run by `make check`; a pinned version that supports this Go.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck
LDFLAGS := -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.commitTime=$(COMMIT_TIME)

.PHONY: demo serve test services build check stop docker

## services: install (apt, as root) and start Redis, ClickHouse, Prometheus and the broker
services:
	bash deploy/local/install.sh
	bash deploy/local/start.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/creditmeter ./cmd/creditmeter

## docker: the image of the Dockerfile (static binary on distroless)
docker:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t creditmeter:$(VERSION) .

## demo: the main job: the seed's prepaid-credit story on the real services
demo: services build
	bin/creditmeter doctor
	bin/creditmeter demo

## serve: run creditmeter (engine, API, console, /metrics) on the real services
serve: services build
	bin/creditmeter serve

## check: formatting, vet, staticcheck (pinned; installed into GOPATH/bin if
## missing or another version), the Prometheus rules and config (promtool), and the
## deployment files: the Dockerfile's CGO_ENABLED=0 build is static, the
## systemd unit passes systemd-analyze verify, the env example validates
check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@"$(STATICCHECK)" -version 2>/dev/null | grep -qF "($(patsubst v%,%,$(STATICCHECK_VERSION)))" || GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) ./...
	@command -v promtool >/dev/null || { echo "check: promtool not found: install Debian's prometheus (bash deploy/local/install.sh)" >&2; exit 1; }
	cd deploy/prometheus && promtool check rules alerts.yml && promtool test rules rules_test.yml && promtool check config prometheus.yml
	$(GO) test -count=1 ./deploy/

## test: every test, with the race detector, against the real services
test: services check
	CREDITMETER_REQUIRE_SERVICES=1 $(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) bench-smoke

## bench-smoke: every hot-path benchmark once (smoke only, no figures asserted)
bench-smoke:
	CREDITMETER_REQUIRE_SERVICES=1 $(GO) test -run '^$$' -bench . -benchtime=1x -count=1 ./bench/

stop:
	bash deploy/local/stop.sh
