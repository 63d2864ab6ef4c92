"""LangGraph side of the engine-overhead benchmarks (see BENCHMARKS.md).

The same three workloads as bench/orcheo-bench, built with StateGraph and compiled with
MemorySaver or without a checkpointer, invoked synchronously. Prints one JSON line per
(workload, checkpointer) with the same fields as the Rust bench.

Usage: python langgraph_bench.py [--workload chain|fanout|map|all] [--checkpointer on|off|both]
                                 [--budget-ms N] [--min-runs N] [--max-runs N] [--warmup N]
"""

import argparse
import json
import operator
import statistics
import sys
import time
import uuid
from typing import Annotated, TypedDict

import langgraph
from langgraph.checkpoint.memory import MemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

try:
    from importlib.metadata import version as _version

    LANGGRAPH_VERSION = _version("langgraph")
except Exception:  # pragma: no cover
    LANGGRAPH_VERSION = getattr(langgraph, "__version__", "unknown")

CHAIN_LEN = 100
FANOUT = 50
MAP_ITEMS = 10_000


# (a) START -> n0 -> ... -> n99, each n = n + 1.
class ChainState(TypedDict):
    n: int


def build_chain():
    g = StateGraph(ChainState)
    for i in range(CHAIN_LEN):
        g.add_node(f"n{i}", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "n0")
    for i in range(1, CHAIN_LEN):
        g.add_edge(f"n{i - 1}", f"n{i}")
    g.add_edge(f"n{CHAIN_LEN - 1}", END)
    return g


def check_chain(s):
    assert s["n"] == CHAIN_LEN, s


# (b) START -> fan -> b0..b49 -> join (waits for all 50), each branch total += 1.
class FanState(TypedDict):
    total: Annotated[int, operator.add]
    result: int


def build_fanout():
    g = StateGraph(FanState)
    g.add_node("fan", lambda s: {})
    branches = [f"b{i}" for i in range(FANOUT)]
    for b in branches:
        g.add_node(b, lambda s: {"total": 1})
    g.add_node("join", lambda s: {"result": s["total"]})
    g.add_edge(START, "fan")
    for b in branches:
        g.add_edge("fan", b)
    g.add_edge(branches, "join")
    g.add_edge("join", END)
    return g


def check_fanout(s):
    assert s["result"] == FANOUT, s


# (c) START -(10,000 Sends)-> work (out += [item * 2]) -> done.
class MapState(TypedDict):
    items: list
    out: Annotated[list, operator.add]
    count: int


class WorkItem(TypedDict):
    item: int


def build_map():
    g = StateGraph(MapState)
    g.add_node("work", lambda s: {"out": [s["item"] * 2]})
    g.add_node("done", lambda s: {"count": len(s["out"])})
    g.add_conditional_edges(
        START, lambda s: [Send("work", {"item": x}) for x in s["items"]], ["work"]
    )
    g.add_edge("work", "done")
    g.add_edge("done", END)
    return g


def check_map(s):
    assert s["count"] == MAP_ITEMS, s["count"]
    assert s["out"][-1] == 2 * (MAP_ITEMS - 1) or sorted(s["out"])[-1] == 2 * (MAP_ITEMS - 1)


WORKLOADS = {
    "chain_100": (build_chain, lambda: {"n": 0}, CHAIN_LEN, check_chain),
    "fanout_50": (build_fanout, lambda: {"total": 0}, FANOUT + 2, check_fanout),
    "map_10000": (
        build_map,
        lambda: {"items": list(range(MAP_ITEMS)), "out": []},
        MAP_ITEMS + 1,
        check_map,
    ),
}


def one_run(app, saver, make_input, check):
    config = {"recursion_limit": 1000}
    thread_id = None
    if saver is not None:
        thread_id = str(uuid.uuid4())
        config["configurable"] = {"thread_id": thread_id}
    inp = make_input()
    t = time.perf_counter()
    out = app.invoke(inp, config)
    elapsed = time.perf_counter() - t
    check(out)
    if saver is not None:
        # Outside the timed region: keep stored checkpoints from piling up across runs.
        saver.delete_thread(thread_id)
    return elapsed


def pct(times, q):
    """Nearest-rank percentile."""
    v = sorted(times)
    return v[round((len(v) - 1) * q)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="all")
    ap.add_argument("--checkpointer", default="both", choices=["on", "off", "both"])
    ap.add_argument("--budget-ms", type=float, default=1500)
    ap.add_argument("--min-runs", type=int, default=3)
    ap.add_argument("--max-runs", type=int, default=100_000)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    names = {
        "chain": ["chain_100"],
        "fanout": ["fanout_50"],
        "map": ["map_10000"],
        "all": list(WORKLOADS),
    }.get(a.workload, [a.workload])
    cps = {"on": [True], "off": [False], "both": [False, True]}[a.checkpointer]
    for name in names:
        build, make_input, steps, check = WORKLOADS[name]
        for cp in cps:
            saver = MemorySaver() if cp else None
            app = build().compile(checkpointer=saver)
            # Warm up with --warmup runs, spending at most half the budget (at least one run).
            t = time.perf_counter()
            for i in range(max(1, a.warmup)):
                if i > 0 and time.perf_counter() - t > a.budget_ms / 2e3:
                    break
                one_run(app, saver, make_input, check)
            times = []
            start = time.perf_counter()
            while len(times) < a.max_runs and (
                len(times) < a.min_runs or time.perf_counter() - start < a.budget_ms / 1e3
            ):
                times.append(one_run(app, saver, make_input, check))
            med = statistics.median(times)
            print(
                json.dumps(
                    {
                        "impl": "langgraph",
                        "version": LANGGRAPH_VERSION,
                        "runtime": "python_sync_invoke",
                        "workload": name,
                        "checkpointer": cp,
                        "runs": len(times),
                        "steps_per_run": steps,
                        "median_ms": med * 1e3,
                        "min_ms": min(times) * 1e3,
                        "p10_ms": pct(times, 0.1) * 1e3,
                        "p90_ms": pct(times, 0.9) * 1e3,
                        "us_per_step": med * 1e6 / steps,
                        "steps_per_s": steps / med,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
