#!/usr/bin/env bash
# Engine-overhead benchmarks, Orcheo side by side with LangGraph (see BENCHMARKS.md).
#
#   bash bench/run.sh            # or: make bench
#
# Environment:
#   ROUNDS=3        how many times each side's whole suite runs; the report takes the median
#                   of the per-round medians
#   BUDGET_MS=1500  time spent measuring each (workload, checkpointer) pair per round
#   RUNTIME=multi   tokio runtime for Orcheo: multi, current or both
#   WORKLOAD=all    chain, fanout, map or all
#   OUT=/tmp/orcheo-bench  where the raw JSON lines and the table are written
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"
BUDGET_MS="${BUDGET_MS:-1500}"
RUNTIME="${RUNTIME:-multi}"
WORKLOAD="${WORKLOAD:-all}"
OUT="${OUT:-${TMPDIR:-/tmp}/orcheo-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orcheo-target}"
VENV="$ROOT/bench/.venv"

# LangGraph in a local virtualenv, at the version pinned in bench/requirements.txt.
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import langgraph" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r "$ROOT/bench/requirements.txt"
fi

cargo build --release -p orcheo-bench
BIN="$CARGO_TARGET_DIR/release/orcheo-bench"

mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"
: > "$RAW"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)')"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "rustc: $(rustc --version)"
  echo "python: $("$VENV/bin/python" --version 2>&1)"
  echo "langgraph: $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("langgraph"))')"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"

if [ "$WORKLOAD" = all ]; then WORKLOADS="chain fanout map"; else WORKLOADS="$WORKLOAD"; fi
# Each workload runs on both sides back to back, so that both see the same machine conditions.
for round in $(seq 1 "$ROUNDS"); do
  for w in $WORKLOADS; do
    echo "== round $round/$ROUNDS, $w: orcheo" >&2
    "$BIN" --runtime "$RUNTIME" --workload "$w" --budget-ms "$BUDGET_MS" \
      | sed "s/^{/{\"round\":$round,/" | tee -a "$RAW"
    echo "== round $round/$ROUNDS, $w: langgraph" >&2
    "$VENV/bin/python" "$ROOT/bench/langgraph_bench.py" --workload "$w" --budget-ms "$BUDGET_MS" \
      | sed "s/^{/{\"round\": $round, /" | tee -a "$RAW"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"

python3 "$ROOT/bench/compare.py" "$RAW" | tee "$OUT/table.md"
