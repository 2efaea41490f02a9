# The verbs people type. Each is a thin wrapper over a script or go command.
GO        ?= go
BIN       ?= bin/bundle
STATICCHECK_VERSION ?= v0.8.2
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)

.PHONY: build demo test test-short bench lint fuzz clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) .

## demo: create → verify → load end to end against a registry it starts itself (no internet)
demo: build
	scripts/demo.sh

## test: the whole suite, installing what the tests need (CI runs exactly this)
test:
	scripts/test.sh

## test-short: unit tests only, no registry or daemon
test-short:
	$(GO) test -short ./...

## bench: go benchmarks, then the side-by-side comparison with crane/skopeo/docker
bench:
	scripts/bench.sh

## fuzz: every fuzz target, FUZZTIME each (default 10000x; FUZZTIME=60s for longer)
fuzz:
	scripts/fuzz.sh

lint:
	$(GO) vet ./...
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$$($(GO) env GOPATH)/bin/staticcheck ./...

clean:
	rm -rf bin
