# creditmeter: the two set-up commands are `make demo` and `make test`.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: demo test services build check stop

## services: install (apt, as root) and start Redis, ClickHouse, Prometheus and the broker
services:
	bash deploy/local/install.sh
	bash deploy/local/start.sh

build:
	$(GO) build -o bin/creditmeter ./cmd/creditmeter

## demo: the main job, on the real services
demo: services build
	bin/creditmeter doctor
	bin/creditmeter serve

## check: formatting and vet
check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## test: every test, with the race detector, against the real services
test: services check
	CREDITMETER_REQUIRE_SERVICES=1 $(GO) test -race -count=1 -timeout 30m ./...

stop:
	bash deploy/local/stop.sh
