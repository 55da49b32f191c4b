# creditmeter: the two set-up commands are `make demo` and `make test`.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: demo serve test services build check stop

## services: install (apt, as root) and start Redis, ClickHouse, Prometheus and the broker
services:
	bash deploy/local/install.sh
	bash deploy/local/start.sh

build:
	$(GO) build -o bin/creditmeter ./cmd/creditmeter

## demo: the main job: the seed's prepaid-credit story on the real services
demo: services build
	bin/creditmeter doctor
	bin/creditmeter demo

## serve: run creditmeter (engine, API, console, /metrics) on the real services
serve: services build
	bin/creditmeter serve

## check: formatting, vet, and the Prometheus rules and config (promtool)
check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v promtool >/dev/null || { echo "check: promtool not found: install Debian's prometheus (bash deploy/local/install.sh)" >&2; exit 1; }
	cd deploy/prometheus && promtool check rules alerts.yml && promtool test rules rules_test.yml && promtool check config prometheus.yml

## test: every test, with the race detector, against the real services
test: services check
	CREDITMETER_REQUIRE_SERVICES=1 $(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) bench-smoke

## bench-smoke: every hot-path benchmark once (smoke only, no figures asserted)
bench-smoke:
	CREDITMETER_REQUIRE_SERVICES=1 $(GO) test -run '^$$' -bench . -benchtime=1x -count=1 ./bench/

stop:
	bash deploy/local/stop.sh
