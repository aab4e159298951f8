# Conclave — see README.md. `make demo` runs a local cluster; `make test` runs every test.
SHELL      := /bin/bash
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X main.version=$(VERSION)
BIN        := $(CURDIR)/bin
CMDS       := conclaved conclavectl conclave-agent fakebbb
GO         ?= go
FUZZTIME   ?= 10s
BENCH_OUT  ?= $(BIN)/bench.md

.PHONY: all build test deps tools unit fuzz e2e demo bench images vet fmt clean

all: build

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
	  if [ -f cmd/$$c/main.go ]; then CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$c ./cmd/$$c || exit 1; fi; \
	done

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Every test: unit, multi-process, brief fuzzing, and the container tests.
test: deps build vet unit fuzz e2e

# What the tests need (Chromium, Docker with Compose): installed when root, else named in one line.
deps:
	@./scripts/test-deps.sh

# The S3-compatible server the recstore tests run against (test/harness/s3.go
# builds the same version when it is missing).
VERSITYGW_VERSION := v1.8.0

tools: $(BIN)/tools/versitygw

$(BIN)/tools/versitygw:
	GOBIN=$(BIN)/tools $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

unit: tools
	CONCLAVE_BIN_DIR=$(BIN) CONCLAVE_VERSITYGW=$(BIN)/tools/versitygw $(GO) test -count=1 -timeout 20m ./...

# Fuzz targets run briefly on each `make test`; longer: make fuzz FUZZTIME=5m
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./bbb FuzzVerify
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./fsm FuzzApply
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./gateway FuzzBBBRequest
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./gateway FuzzGetRecordingsPaging
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./gateway FuzzAdminAPI
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./gateway/internal/xmlscan FuzzScanXMLMatchesEncodingXML -fuzzminimizetime 2s
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./gateway FuzzCallback
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./gateway/central FuzzCheckOffer
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh ./gateway/central FuzzByteRange

# Container tests (three peers on their own addresses, faults, DNS round-robin).
e2e:
	@if [ -d test/e2e ]; then CONCLAVE_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout 15m -tags e2e ./test/e2e/; \
	else echo "e2e: no container tests yet"; fi

demo: build
	@BIN=$(BIN) ./scripts/demo.sh

# Micro-benchmarks, then the scenario runner (a three-peer cluster on loopback).
bench: build
	$(GO) test ./bbb ./fsm ./gateway/... -run '^$$' -bench . -benchmem -benchtime 1s
	rm -f $(BENCH_OUT)
	BENCH_OUT=$(abspath $(BENCH_OUT)) CONCLAVE_BIN_DIR=$(BIN) $(GO) test -tags bench ./test/bench -run 'TestScenarios|TestScale|TestOverload|TestGetMeetingsNodeLoad|TestTransferThroughput' -count=1 -v -timeout 20m
	@echo "tables written to $(BENCH_OUT)"

images: build
	@if [ -x scripts/images.sh ]; then BIN=$(BIN) ./scripts/images.sh; else echo "images: not yet"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) demo-data
