"""The LangGraph side of the HTTP node benchmark: a one-node graph whose node GETs the same
JSON document with httpx (one shared AsyncClient, so connections are reused as on Orcheo's
side), invoked --runs times with --concurrency invocations in flight. Prints one JSON line."""

import argparse
import asyncio
import json
import time
from typing import TypedDict

import httpx
from langgraph.graph import END, START, StateGraph


class S(TypedDict, total=False):
    body: dict


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--runs", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=16)
    a = ap.parse_args()
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=a.concurrency))

    async def get(_state: S) -> S:
        r = await client.get(a.url)
        r.raise_for_status()
        return {"body": r.json()}

    g = StateGraph(S)
    g.add_node("get", get)
    g.add_edge(START, "get")
    g.add_edge("get", END)
    app = g.compile()
    for _ in range(200):
        await app.ainvoke({})
    sem = asyncio.Semaphore(a.concurrency)
    lat: list[float] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with sem:
            t = time.perf_counter()
            try:
                await app.ainvoke({})
            except Exception:
                failed += 1
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(a.runs)))
    total = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return lat[round((len(lat) - 1) * p)] * 1000

    print(json.dumps({"side": "langgraph", "runs": a.runs, "concurrency": a.concurrency,
                      "failed": failed, "runs_per_s": round(a.runs / total),
                      "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99)}))
    await client.aclose()


asyncio.run(main())
