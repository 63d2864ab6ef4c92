# Orcheo: the two commands that do everything on a fresh machine are `make run` and `make test`.
# Cargo's build output is cached outside the clone so fresh clones (CI) reuse it.
CARGO_TARGET_DIR ?= $(if $(HOME),$(HOME)/.cache/orcheo-target,$(CURDIR)/target)
export CARGO_TARGET_DIR
EXAMPLE ?= examples/order-routing.json
INPUT ?= {"order_id": "A-1001", "country": "DE", "total": 1250}

.PHONY: run test build bench schema docs

## Build and run an example workflow locally (the server arrives with the next milestone).
run:
	cargo build --release -p orcheo
	$(CARGO_TARGET_DIR)/release/orcheo run $(EXAMPLE) --input '$(INPUT)' --no-checkpoint

## Every check: formatting, lints, and the whole test suite.
test:
	bash scripts/test.sh

build:
	cargo build --release -p orcheo

## Benchmarks side by side with LangGraph (installs LangGraph into bench/.venv).
bench:
	bash bench/run.sh

## Regenerate the published JSON Schema copy.
docs: schema
	cargo run -q -p orcheo -- nodes --markdown > docs/nodes.md

schema:
	cargo run -q -p orcheo -- schema > docs/workflow.schema.json
