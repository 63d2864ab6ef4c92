# Orcheo: the two commands that do everything on a fresh machine are `make run` and `make test`.
# Cargo's build output is cached outside the clone so fresh clones (CI) reuse it.
CARGO_TARGET_DIR ?= $(if $(HOME),$(HOME)/.cache/orcheo-target,$(CURDIR)/target)
export CARGO_TARGET_DIR
# Where `make run` keeps its SQLite database (override: make run DATA_DIR=...).
DATA_DIR ?= $(CURDIR)/.orcheo-data
PORT ?= 8000

.PHONY: run test build bench bench-server schema docs

## Build orcheo and start the server on SQLite; it prints the URL to open (and, on the first
## start, an admin API key and a one-time login link).
run:
	cargo build --release -p orcheo
	$(CARGO_TARGET_DIR)/release/orcheo serve --data-dir $(DATA_DIR) --port $(PORT)

## Every check: formatting, lints, and the whole test suite.
test:
	bash scripts/test.sh

build:
	cargo build --release -p orcheo

## Benchmarks side by side with LangGraph (installs LangGraph into bench/.venv).
bench:
	bash bench/run.sh

## Server benchmarks: API latency, end-to-end throughput, memory, cold start (SQLite, PostgreSQL).
bench-server:
	bash bench/run-server.sh

## Regenerate the published JSON Schema copy.
docs: schema
	cargo run -q -p orcheo -- nodes --markdown > docs/nodes.md

schema:
	cargo run -q -p orcheo -- schema > docs/workflow.schema.json
