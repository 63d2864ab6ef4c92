#!/usr/bin/env python3
"""code_python start-up and per-call latency (not part of the test suite).

    cargo build --release -p orcheo
    python3 bench/code_python.py [--calls 200] [--bin target/release/orcheo]

Start-up: wall time of `orcheo run` of a one-node code_python workflow (process start, the
sandbox probe at first use, one call), median of 5. Per call: a code_python node mapped over
N items one at a time; each item's latency is node_started -> node_completed of that item
(spawn, sandbox set-up, interpreter start, runner, JSON in/out), reported as p50/p95.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--bin", default=os.path.join(target, "release", "orcheo"))
    a = ap.parse_args()
    code = "import math\nresult = {'n': item, 'sqrt': math.sqrt(item)}"
    one = {"format": "orcheo.workflow/1", "name": "py1",
           "nodes": [{"id": "py", "type": "code_python", "config": {"code": "result = 1"}}],
           "edges": [{"source": "__start__", "target": "py"}]}
    many = {"format": "orcheo.workflow/1", "name": "pyN",
            "nodes": [{"id": "py", "type": "code_python", "config": {"code": code},
                       "map": {"over": "{{ input.items }}", "as": "item", "concurrency": 1}}],
            "edges": [{"source": "__start__", "target": "py"}]}
    with tempfile.TemporaryDirectory() as d:
        f1, fn = os.path.join(d, "one.json"), os.path.join(d, "many.json")
        json.dump(one, open(f1, "w"))
        json.dump(many, open(fn, "w"))
        starts = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([a.bin, "run", f1, "--no-checkpoint"], check=True, capture_output=True)
            starts.append((time.perf_counter() - t0) * 1000)
        out = subprocess.run([a.bin, "run", fn, "--no-checkpoint", "--json", "--input",
                              json.dumps({"items": list(range(a.calls))})],
                             check=True, capture_output=True, text=True).stdout
        began, took = {}, []
        for line in out.splitlines():
            e = json.loads(line)
            if e.get("node") != "py" or "index" not in e:
                continue
            if e["type"] == "node_started":
                began[e["index"]] = ts(e["ts"])
            elif e["type"] == "node_completed":
                took.append((ts(e["ts"]) - began[e["index"]]) * 1000)
        took.sort()
        p = lambda q: took[min(len(took) - 1, int(q * len(took)))]
        print(f"start-up (orcheo run, one call, median of 5): {statistics.median(starts):.1f} ms")
        print(f"per call over {len(took)} calls: p50 {p(0.50):.1f} ms, p95 {p(0.95):.1f} ms, "
              f"max {took[-1]:.1f} ms")


if __name__ == "__main__":
    main()
