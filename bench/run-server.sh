#!/usr/bin/env bash
# Server benchmarks of the release `orcheo` binary on SQLite and PostgreSQL: cold start, idle
# memory, API latency and end-to-end run throughput (bench/server-bench).
#
#   bash bench/run-server.sh                      # or: make bench-server
#   bash bench/run-server.sh --backend sqlite --requests 300 --runs 1000 --json out.json
#
# Arguments go to orcheo-server-bench (see its --help). PostgreSQL is expected on
# 127.0.0.1:5432 with trust auth (scripts/ensure-postgres.sh starts one when it can; set
# ORCHEO_TEST_POSTGRES to use another server).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orcheo-target}"

bash scripts/ensure-postgres.sh
cargo build --release -p orcheo -p orcheo-server-bench
"$CARGO_TARGET_DIR/release/orcheo-server-bench" "$@"
