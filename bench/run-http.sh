#!/usr/bin/env bash
# HTTP node throughput, Orcheo side by side with LangGraph + httpx, both calling one local
# server (started by orcheo-http-bench --serve). Prints both JSON lines and the ratio.
#
#   bash bench/run-http.sh            # RUNS=5000 CONCURRENCY=16 by default
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS="${RUNS:-5000}"
CONCURRENCY="${CONCURRENCY:-16}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orcheo-target}"
VENV="$ROOT/bench/.venv"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import langgraph, httpx" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet -r "$ROOT/bench/requirements.txt"
fi
cargo build --release -p orcheo-http-bench
BIN="$CARGO_TARGET_DIR/release/orcheo-http-bench"
"$BIN" --serve > /tmp/orcheo-http-bench.url &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s /tmp/orcheo-http-bench.url ] && break; sleep 0.1; done
URL="$(head -1 /tmp/orcheo-http-bench.url)"
O="$("$BIN" --url "$URL" --runs "$RUNS" --concurrency "$CONCURRENCY")"
L="$("$VENV/bin/python" "$ROOT/bench/http_langgraph.py" --url "$URL" --runs "$RUNS" --concurrency "$CONCURRENCY")"
echo "$O"
echo "$L"
python3 - "$O" "$L" <<'PY'
import json, sys
o, l = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"runs/s: orcheo {o['runs_per_s']:.0f}, langgraph {l['runs_per_s']:.0f} -> {o['runs_per_s']/l['runs_per_s']:.1f}x")
print(f"p50 ms: orcheo {o['p50_ms']:.2f}, langgraph {l['p50_ms']:.2f}; p95 ms: orcheo {o['p95_ms']:.2f}, langgraph {l['p95_ms']:.2f}")
PY
