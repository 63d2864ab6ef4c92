#!/usr/bin/env bash
# Every check of the project: formatting, lints, and the whole test suite. `make test` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:+$HOME/.cache/orcheo-target}}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

cargo fmt --all --check
# The store and server suites run against SQLite and a real PostgreSQL.
bash scripts/ensure-postgres.sh
cargo clippy --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  # nextest runs each test in its own process and ends with one summary line.
  cargo nextest run --workspace --no-fail-fast
else
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  # One closing line with the totals of every test binary.
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { printf "%d passed, %d failed\n", p, f }' "$log"
  exit "$status"
fi
