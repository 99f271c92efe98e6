# The quick start: `make run` serves the bridge, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
# Loopback: the dev defaults are refused on any other interface (HOST=0.0.0.0 needs real secrets).
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: run test lint typecheck demo bench bench-http drills migrate clean install lock

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/channel-bridge migrate
	$(BIN)/channel-bridge serve --host $(HOST) --port $(PORT)

migrate: $(STAMP)
	$(BIN)/channel-bridge migrate

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

demo: $(STAMP)
	$(BIN)/channel-bridge demo

# Whole-bridge benchmarks (wrk from Debian's packages; results in bench/results/<date>.md), the
# relay drain against a bare forwarder, then the relay-only benchmark.
# `make bench BENCH_ARGS=--quick` for short runs; `make bench-http` compares outbound HTTP stacks.
bench: $(STAMP)
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/bridge_bench.py $(BENCH_ARGS)
	$(BIN)/python bench/relay_drain_bench.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick)
	$(BIN)/python bench/relay_bench.py

bench-http: $(STAMP)
	$(BIN)/python bench/forwarder_bench.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick)

# Full-size drills (5,000 webhooks killed mid-stream, 20,000 over two replicas, a 30 s database
# outage); `make test` runs the same drills at BRIDGE_DRILL_SCALE=1 (a tenth of that).
drills: $(STAMP)
	BRIDGE_DRILL_SCALE=$${BRIDGE_DRILL_SCALE:-10} $(BIN)/pytest -q tests/drills

# constraints.txt from pyproject.toml (runtime + dev), every file's sha256 included; pip-tools
# runs from a throwaway venv so it is no dependency of the project. Keeps pinned versions
# unless pyproject.toml needs others; `make lock LOCK_ARGS=--upgrade` moves everything.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet pip-tools
	sed -n '/^#/p;/^$$/q' constraints.txt > .venv-lock/header
	.venv-lock/bin/pip-compile --quiet --generate-hashes --strip-extras --no-header --no-annotate \
	  --no-emit-index-url --no-emit-find-links --extra dev $(LOCK_ARGS) \
	  --output-file constraints.txt pyproject.toml
	{ cat .venv-lock/header; echo; cat constraints.txt; } > .venv-lock/constraints.txt
	mv .venv-lock/constraints.txt constraints.txt && rm -rf .venv-lock

clean:
	rm -rf $(VENV) var .pytest_cache
