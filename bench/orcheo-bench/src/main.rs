//! Engine-overhead benchmarks: three workloads of trivial nodes, each with the in-memory
//! checkpointer on and off, timed run by run. Prints one JSON line per (runtime, workload,
//! checkpointer) with the median time per run and node executions ("steps") per second.
//! `bench/langgraph_bench.py` prints the same fields for LangGraph; `bench/run.sh` runs both.
//!
//! Usage: orcheo-bench [--runtime multi|current|both] [--budget-ms N] [--min-runs N]
//!                     [--workload chain|fanout|map|all] [--checkpointer on|off|both]
//!        orcheo-bench --allocs   (heap allocations and bytes per step, one run each; untimed)

use orcheo_core::checkpoint::{MemoryCheckpointer, RunStatus};
use orcheo_core::engine::{Engine, RunOptions};
use orcheo_core::event::NullSink;
use orcheo_core::{CompiledWorkflow, Workflow};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator the `orcheo` binary ships with (mimalloc), counting allocations while `COUNTING` is set (only in `--allocs`
/// mode; the timed runs pay one relaxed load per allocation).
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Allocations by size class: <=64 B, <=256 B, <=1 KiB, <=4 KiB, larger.
static SIZES: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

fn count(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
    let class = match size {
        0..=64 => 0,
        65..=256 => 1,
        257..=1024 => 2,
        1025..=4096 => 3,
        _ => 4,
    };
    SIZES[class].fetch_add(1, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            count(layout.size());
        }
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            count(new_size);
        }
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CHAIN_LEN: usize = 100;
const FANOUT: usize = 50;
const MAP_ITEMS: usize = 10_000;

/// One benchmark workload: a document, its input, the node executions per run and a check of
/// the final state (so a broken engine cannot post a fast number).
struct Workload {
    name: &'static str,
    doc: Value,
    input: Value,
    steps_per_run: u64,
    check: fn(&Value) -> Result<(), String>,
}

fn doc(name: &str, state: Value, nodes: Vec<Value>, edges: Vec<Value>) -> Value {
    json!({
        "format": "orcheo.workflow/1",
        "name": name,
        "state": state,
        "nodes": nodes,
        "edges": edges,
        // Room for every superstep; concurrency stays at its default (16).
        "settings": { "recursion_limit": 1000 }
    })
}

fn edge(source: &str, target: &str) -> Value {
    json!({ "source": source, "target": target })
}

/// (a) `__start__ -> n0 -> n1 -> ... -> n99`, each node `n = n + 1`.
fn chain() -> Workload {
    let nodes = (0..CHAIN_LEN)
        .map(|i| {
            json!({
                "id": format!("n{i}"),
                "type": "set_variables",
                "config": { "values": { "n": "{{ state.n + 1 }}" } }
            })
        })
        .collect();
    let mut edges = vec![edge("__start__", "n0")];
    edges.extend((1..CHAIN_LEN).map(|i| edge(&format!("n{}", i - 1), &format!("n{i}"))));
    Workload {
        name: "chain_100",
        doc: doc(
            "bench-chain",
            json!({ "n": { "default": 0, "type": "integer" } }),
            nodes,
            edges,
        ),
        input: json!({}),
        steps_per_run: CHAIN_LEN as u64,
        check: |s| match s["n"].as_u64() {
            Some(n) if n == CHAIN_LEN as u64 => Ok(()),
            _ => Err(format!("chain: expected n = {CHAIN_LEN}, got {}", s["n"])),
        },
    }
}

/// (b) `__start__ -> fan -> b0..b49 -> join`: each branch adds 1 to `total` (reducer add),
/// the join copies the total.
fn fanout() -> Workload {
    let mut nodes = vec![json!({ "id": "fan", "type": "noop" })];
    let mut edges = vec![edge("__start__", "fan")];
    for i in 0..FANOUT {
        let id = format!("b{i}");
        nodes.push(json!({
            "id": id,
            "type": "set_variables",
            "config": { "values": { "total": 1 } }
        }));
        edges.push(edge("fan", &id));
        edges.push(edge(&id, "join"));
    }
    nodes.push(json!({
        "id": "join",
        "type": "set_variables",
        "config": { "values": { "result": "{{ state.total }}" } }
    }));
    Workload {
        name: "fanout_50",
        doc: doc(
            "bench-fanout",
            json!({
                "total": { "reducer": "add", "default": 0, "type": "integer" },
                "result": {}
            }),
            nodes,
            edges,
        ),
        input: json!({}),
        steps_per_run: FANOUT as u64 + 2,
        check: |s| match s["result"].as_u64() {
            Some(n) if n == FANOUT as u64 => Ok(()),
            _ => Err(format!(
                "fanout: expected result = {FANOUT}, got {}",
                s["result"]
            )),
        },
    }
}

/// (c) `__start__ -> work (map over 10,000 items, out += item * 2) -> done`.
fn map() -> Workload {
    let nodes = vec![
        json!({
            "id": "work",
            "type": "set_variables",
            "map": { "over": "{{ state.items }}" },
            "config": { "values": { "out": "{{ item * 2 }}" } }
        }),
        json!({
            "id": "done",
            "type": "set_variables",
            "config": { "values": { "count": "{{ state.out | length }}" } }
        }),
    ];
    let edges = vec![edge("__start__", "work"), edge("work", "done")];
    let items: Vec<Value> = (0..MAP_ITEMS as u64).map(Value::from).collect();
    Workload {
        name: "map_10000",
        doc: doc(
            "bench-map",
            json!({
                "items": { "type": "array" },
                "out": { "reducer": "append", "default": [] },
                "count": {}
            }),
            nodes,
            edges,
        ),
        input: json!({ "items": items }),
        steps_per_run: MAP_ITEMS as u64 + 1,
        check: |s| match s["count"].as_u64() {
            Some(n)
                if n == MAP_ITEMS as u64
                    && s["out"][MAP_ITEMS - 1] == json!(2 * (MAP_ITEMS - 1)) =>
            {
                Ok(())
            }
            _ => Err(format!(
                "map: expected count = {MAP_ITEMS}, got {}",
                s["count"]
            )),
        },
    }
}

struct Args {
    runtimes: Vec<&'static str>,
    workloads: Vec<&'static str>,
    checkpointers: Vec<bool>,
    budget: Duration,
    min_runs: usize,
    max_runs: usize,
    warmup: usize,
    allocs: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: orcheo-bench [--runtime multi|current|both] [--workload chain|fanout|map|all] \
         [--checkpointer on|off|both] [--budget-ms N] [--min-runs N] [--max-runs N] [--warmup N] [--allocs]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        runtimes: vec!["multi_thread"],
        workloads: vec!["chain_100", "fanout_50", "map_10000"],
        checkpointers: vec![false, true],
        budget: Duration::from_millis(1500),
        min_runs: 3,
        max_runs: 100_000,
        warmup: 3,
        allocs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--runtime" => {
                a.runtimes = match val().as_str() {
                    "multi" | "multi_thread" => vec!["multi_thread"],
                    "current" | "current_thread" => vec!["current_thread"],
                    "both" => vec!["multi_thread", "current_thread"],
                    _ => usage(),
                }
            }
            "--workload" => {
                a.workloads = match val().as_str() {
                    "chain" | "chain_100" => vec!["chain_100"],
                    "fanout" | "fanout_50" => vec!["fanout_50"],
                    "map" | "map_10000" => vec!["map_10000"],
                    "all" => vec!["chain_100", "fanout_50", "map_10000"],
                    _ => usage(),
                }
            }
            "--checkpointer" => {
                a.checkpointers = match val().as_str() {
                    "on" => vec![true],
                    "off" => vec![false],
                    "both" => vec![false, true],
                    _ => usage(),
                }
            }
            "--budget-ms" => {
                a.budget = Duration::from_millis(val().parse().unwrap_or_else(|_| usage()))
            }
            "--min-runs" => a.min_runs = val().parse().unwrap_or_else(|_| usage()),
            "--max-runs" => a.max_runs = val().parse().unwrap_or_else(|_| usage()),
            "--warmup" => a.warmup = val().parse().unwrap_or_else(|_| usage()),
            "--allocs" => a.allocs = true,
            _ => usage(),
        }
    }
    a
}

fn engine(checkpointer: bool) -> Engine {
    static CATALOG: std::sync::LazyLock<Arc<orcheo_core::Catalog>> =
        std::sync::LazyLock::new(orcheo_nodes::shared_catalog);
    let b = Engine::builder(CATALOG.clone()).sink(Arc::new(NullSink));
    if checkpointer {
        b.checkpointer(Arc::new(MemoryCheckpointer::new())).build()
    } else {
        b.build()
    }
}

/// One timed run. A fresh engine (and so a fresh in-memory checkpointer) per run keeps stored
/// checkpoints from piling up across runs; it is built before the clock starts and dropped
/// after it stops, as LangGraph's side deletes its thread outside the timed region.
async fn one_run(
    w: &Workload,
    wf: &Arc<CompiledWorkflow>,
    checkpointer: bool,
) -> Result<Duration, String> {
    let eng = engine(checkpointer);
    let input = w.input.clone();
    let t = Instant::now();
    let out = eng
        .start(wf, input, RunOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = t.elapsed();
    if out.status != RunStatus::Completed {
        return Err(format!(
            "{}: run ended {:?}: {:?}",
            w.name, out.status, out.error
        ));
    }
    (w.check)(&out.state)?;
    drop(out);
    drop(eng);
    Ok(elapsed)
}

async fn measure(
    w: Arc<Workload>,
    wf: Arc<CompiledWorkflow>,
    checkpointer: bool,
    args: (Duration, usize, usize, usize),
) -> Result<Vec<Duration>, String> {
    let (budget, min_runs, max_runs, warmup) = args;
    // Warm up with `warmup` runs, but spend at most half the budget on it (at least one run).
    let t = Instant::now();
    for i in 0..warmup.max(1) {
        if i > 0 && t.elapsed() > budget / 2 {
            break;
        }
        one_run(&w, &wf, checkpointer).await?;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < max_runs && (times.len() < min_runs || start.elapsed() < budget) {
        times.push(one_run(&w, &wf, checkpointer).await?);
    }
    Ok(times)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// The 10th and 90th percentile run times (nearest rank).
fn percentiles(times: &[Duration]) -> (Duration, Duration) {
    let mut v = times.to_vec();
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.1), at(0.9))
}

fn main() {
    let args = parse_args();
    let all = [chain(), fanout(), map()];
    let compiler = engine(false);
    for rt_name in &args.runtimes {
        let rt = match *rt_name {
            "current_thread" => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            _ => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        }
        .expect("tokio runtime");
        for w in all.iter().filter(|w| args.workloads.contains(&w.name)) {
            let doc = Workflow::from_value(w.doc.clone()).expect("benchmark document parses");
            let wf = compiler.compile(doc).unwrap_or_else(|p| {
                panic!("benchmark document {} does not compile: {p:?}", w.name)
            });
            let w = Arc::new(Workload {
                name: w.name,
                doc: Value::Null,
                input: w.input.clone(),
                steps_per_run: w.steps_per_run,
                check: w.check,
            });
            for &cp in &args.checkpointers {
                if args.allocs {
                    let (w2, wf2) = (w.clone(), wf.clone());
                    let (allocs, bytes) = rt
                        .block_on(async move {
                            one_run(&w2, &wf2, cp).await?;
                            ALLOCS.store(0, Ordering::Relaxed);
                            BYTES.store(0, Ordering::Relaxed);
                            SIZES.iter().for_each(|c| c.store(0, Ordering::Relaxed));
                            COUNTING.store(true, Ordering::Relaxed);
                            let r = one_run(&w2, &wf2, cp).await;
                            COUNTING.store(false, Ordering::Relaxed);
                            r.map(|_| {
                                (
                                    ALLOCS.load(Ordering::Relaxed),
                                    BYTES.load(Ordering::Relaxed),
                                )
                            })
                        })
                        .unwrap_or_else(|e| {
                            eprintln!("orcheo-bench: {e}");
                            std::process::exit(1)
                        });
                    let steps = w.steps_per_run as f64;
                    println!(
                        "{}",
                        json!({
                            "impl": "orcheo",
                            "runtime": rt_name,
                            "workload": w.name,
                            "checkpointer": cp,
                            "allocs_per_run": allocs,
                            "allocs_per_step": allocs as f64 / steps,
                            "bytes_per_step": bytes as f64 / steps,
                            "per_step_by_size": {
                                "le64": SIZES[0].load(Ordering::Relaxed) as f64 / steps,
                                "le256": SIZES[1].load(Ordering::Relaxed) as f64 / steps,
                                "le1k": SIZES[2].load(Ordering::Relaxed) as f64 / steps,
                                "le4k": SIZES[3].load(Ordering::Relaxed) as f64 / steps,
                                "gt4k": SIZES[4].load(Ordering::Relaxed) as f64 / steps,
                            },
                        })
                    );
                    continue;
                }
                let knobs = (args.budget, args.min_runs, args.max_runs, args.warmup);
                let (w2, wf2) = (w.clone(), wf.clone());
                // On the multi-thread runtime the run is spawned onto a worker, as the server
                // would do, rather than polled on the main thread by block_on.
                let times = rt
                    .block_on(async move {
                        tokio::spawn(measure(w2, wf2, cp, knobs))
                            .await
                            .map_err(|e| e.to_string())?
                    })
                    .unwrap_or_else(|e| {
                        eprintln!("orcheo-bench: {e}");
                        std::process::exit(1)
                    });
                let runs = times.len();
                let min = *times.iter().min().expect("at least one run");
                let (p10, p90) = percentiles(&times);
                let med = median(times);
                let secs = med.as_secs_f64();
                println!(
                    "{}",
                    json!({
                        "impl": "orcheo",
                        "runtime": rt_name,
                        "workload": w.name,
                        "checkpointer": cp,
                        "runs": runs,
                        "steps_per_run": w.steps_per_run,
                        "median_ms": secs * 1e3,
                        "min_ms": min.as_secs_f64() * 1e3,
                        "p10_ms": p10.as_secs_f64() * 1e3,
                        "p90_ms": p90.as_secs_f64() * 1e3,
                        "us_per_step": secs * 1e6 / w.steps_per_run as f64,
                        "steps_per_s": w.steps_per_run as f64 / secs,
                    })
                );
            }
        }
    }
}
