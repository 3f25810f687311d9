# Understudy. `make run` serves the demo models; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
ORT_LIB := $(shell scripts/fetch-ort.sh)
export UNDERSTUDY_ORT_LIB := $(ORT_LIB)
LDFLAGS := -X main.defaultORTLib=$(ORT_LIB)
ADDR ?= 127.0.0.1:8080

.PHONY: all build run test race bench demo models ort clean proto proto-check

all: build

ort:
	@scripts/fetch-ort.sh >/dev/null

build: ort
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/understudy ./cmd/understudy

run: build
	./bin/understudy serve --models-dir models --primary iris-v1 --addr $(ADDR) --log-format console

# The Go tests run with a throwaway PostgreSQL cluster (UNDERSTUDY_TEST_POSTGRES);
# without PostgreSQL installed its tests skip, unless UNDERSTUDY_REQUIRE_POSTGRES=1.
test: ort
	scripts/pg-throwaway.sh -- $(GO) test -count=1 -timeout 20m ./...

# The request path's packages under the race detector: it shares buffers,
# slots and counters between concurrent requests, and only the detector
# sees some misuses of them. CI runs it after make test.
race: ort
	$(GO) test -race -count=1 -timeout 10m ./pkg/httpapi ./pkg/serving ./pkg/onnx ./pkg/registry

# The store and report sections measure SQLite and PostgreSQL side by side,
# on a throwaway cluster as the tests use (without PostgreSQL, SQLite alone).
bench: build
	scripts/pg-throwaway.sh -- $(GO) run ./cmd/understudy-bench

# Serves the demo models, replays the held-out rows with labels, and keeps
# serving so that /report can be read.
demo: build
	scripts/demo.sh

# Regenerates the demo models and held-out data from testdata/iris.csv.
models:
	$(GO) run ./cmd/mkdemo

clean:
	rm -rf bin understudy.db understudy.db-wal understudy.db-shm

# Regenerates the OIP (KServe v2) gRPC stubs. Needs protoc on PATH (Debian's
# protobuf-compiler); the Go plugins are the versions pinned by go.mod's tool
# directives: `go tool -n` builds each one and prints its path for protoc.
PROTO_DIR := pkg/oip/inferencepb
PROTO_SRC := $(PROTO_DIR)/grpc_predict_v2.proto
PROTO_GEN := grpc_predict_v2.pb.go grpc_predict_v2_grpc.pb.go

# $(call protoc_gen,OUTDIR): one shell command writing the stubs under OUTDIR.
protoc_gen = { command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }; } && \
	gen_go=$$($(GO) tool -n protoc-gen-go) && gen_grpc=$$($(GO) tool -n protoc-gen-go-grpc) && \
	protoc -I . \
	  --plugin=protoc-gen-go="$$gen_go" --plugin=protoc-gen-go-grpc="$$gen_grpc" \
	  --go_out=$(1) --go_opt=paths=source_relative \
	  --go-grpc_out=$(1) --go-grpc_opt=paths=source_relative \
	  $(PROTO_SRC)

proto:
	@$(call protoc_gen,.)

# Fails if the committed stubs differ from what `make proto` would write.
proto-check:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(call protoc_gen,"$$tmp") && \
	for f in $(PROTO_GEN); do \
	  if ! diff -u "$(PROTO_DIR)/$$f" "$$tmp/$(PROTO_DIR)/$$f"; then \
	    echo "proto-check: $(PROTO_DIR)/$$f differs from what protoc generates; run 'make proto' and commit the result" >&2; \
	    exit 1; \
	  fi; \
	done && echo "proto-check: generated stubs are up to date"
