"""Side-by-side table from the JSON lines of orcheo-bench and langgraph_bench.py.

For every (workload, checkpointer) pair: the median over rounds of each side's median time per
run, steps/second from it, and ratio = Orcheo steps/s / LangGraph steps/s. The last column is the
same ratio from each side's 10th-percentile run time, which a busy machine disturbs less.
Usage: python3 compare.py raw.jsonl
"""

import json
import statistics
import sys
from collections import defaultdict

ORDER = ["chain_100", "fanout_50", "map_10000"]


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    med = defaultdict(list)  # (impl, runtime, workload, cp) -> [median_ms per round]
    p10 = defaultdict(list)  # same key -> [p10_ms per round]
    steps = {}
    runs = defaultdict(int)
    for r in rows:
        key = (r["impl"], r["runtime"], r["workload"], r["checkpointer"])
        med[key].append(r["median_ms"])
        p10[key].append(r.get("p10_ms", r["median_ms"]))
        steps[r["workload"]] = r["steps_per_run"]
        runs[key] += r["runs"]
    runtimes = sorted({k[1] for k in med if k[0] == "orcheo"})
    lg_rt = sorted({k[1] for k in med if k[0] == "langgraph"})
    out = []
    out.append(
        "| workload | checkpointer | Orcheo runtime | Orcheo ms/run | Orcheo steps/s "
        "| LangGraph ms/run | LangGraph steps/s | ratio | ratio (p10) |"
    )
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for w in sorted({k[2] for k in med}, key=lambda x: ORDER.index(x) if x in ORDER else 99):
        for cp in (False, True):
            lg = [k for k in med if k[0] == "langgraph" and k[2] == w and k[3] == cp]
            lg_ms = statistics.median(med[lg[0]]) if lg else None
            lg_p10 = statistics.median(p10[lg[0]]) if lg else None
            for rt in runtimes:
                o = med.get(("orcheo", rt, w, cp))
                if not o:
                    continue
                o_ms = statistics.median(o)
                o_p10 = statistics.median(p10[("orcheo", rt, w, cp)])
                o_sps = steps[w] / (o_ms / 1e3)
                if lg_ms is not None:
                    lg_sps = steps[w] / (lg_ms / 1e3)
                    lg_cells = (
                        f"{lg_ms:.3f} | {lg_sps:,.0f} | **{o_sps / lg_sps:,.1f}×** "
                        f"| {lg_p10 / o_p10:,.1f}×"
                    )
                else:
                    lg_cells = "– | – | – | –"
                out.append(
                    f"| {w} | {'on' if cp else 'off'} | {rt} | {o_ms:.3f} | {o_sps:,.0f} | {lg_cells} |"
                )
    rounds = max((len(v) for v in med.values()), default=0)
    out.append("")
    out.append(
        f"Medians over {rounds} round(s); each round's figure is the median time per run. "
        f"LangGraph runtime: {', '.join(lg_rt) or '–'}. Steps = node executions per run "
        f"({', '.join(f'{w}: {steps[w]}' for w in ORDER if w in steps)})."
    )
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
