# Understudy. `make run` serves the demo models; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
ORT_LIB := $(shell scripts/fetch-ort.sh)
export UNDERSTUDY_ORT_LIB := $(ORT_LIB)
LDFLAGS := -X main.defaultORTLib=$(ORT_LIB)
ADDR ?= 127.0.0.1:8080

.PHONY: all build run test bench demo models ort clean

all: build

ort:
	@scripts/fetch-ort.sh >/dev/null

build: ort
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/understudy ./cmd/understudy

run: build
	./bin/understudy serve --models-dir models --primary iris-v1 --addr $(ADDR) --log-format console

test: ort
	$(GO) test -count=1 -timeout 20m ./...

bench: build
	$(GO) run ./cmd/understudy-bench

# Serves the demo models, replays the held-out rows with labels, and keeps
# serving so that /report can be read.
demo: build
	scripts/demo.sh

# Regenerates the demo models and held-out data from testdata/iris.csv.
models:
	$(GO) run ./cmd/mkdemo

clean:
	rm -rf bin understudy.db understudy.db-wal understudy.db-shm
