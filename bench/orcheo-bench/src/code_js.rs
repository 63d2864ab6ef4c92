//! `code-js-bench`: start-up and per-call overhead of the `code_js` node. Each call builds a
//! fresh QuickJS runtime and context (the isolation the node promises), so the per-call figure
//! is the start-up cost plus the JSON crossing. Prints p50/p95 of:
//!
//! - `sandbox_trivial`: `run_js` of `return 1` (runtime + context + console + compile + call),
//! - `sandbox_order`: `run_js` of a small scoring function over an order with 20 items,
//! - `engine_noop` / `engine_code_js`: one-node workflows through the engine (multi-thread
//!   runtime, no checkpointer), so their difference is the node's cost inside a run, including
//!   the hop to a blocking thread.
//!
//! Usage: `code-js-bench [CALLS]` (default 2000). Not part of the test suite.

use orcheo_core::checkpoint::RunStatus;
use orcheo_core::engine::{Engine, RunOptions};
use orcheo_core::event::NullSink;
use orcheo_core::Workflow;
use orcheo_nodes::{run_js, JsJob};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORDER_CODE: &str = "const o = state.order;\nconst subtotal = o.items.reduce((s, i) => s + i.qty * i.price, 0);\nreturn { subtotal, score: subtotal > 1000 ? 40 : 0, skus: o.items.map((i) => i.sku) };";

fn order() -> Value {
    let items: Vec<Value> = (0..20)
        .map(|i| json!({ "sku": format!("sku-{i}"), "qty": i % 3 + 1, "price": 9.5 + i as f64 }))
        .collect();
    json!({ "order": { "id": "A-1", "customer": { "orders": 3 }, "items": items } })
}

fn job(code: &str, state: &Value) -> JsJob {
    JsJob {
        code: code.into(),
        state: state.to_string(),
        input: "{}".into(),
        item: "null".into(),
        timeout: Duration::from_secs(1),
        memory_bytes: 32 << 20,
    }
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        json!({
            "bench": name,
            "calls": times.len(),
            "p50_us": at(0.5).as_secs_f64() * 1e6,
            "p95_us": at(0.95).as_secs_f64() * 1e6,
            "min_us": times[0].as_secs_f64() * 1e6,
        })
    );
}

fn time_sandbox(name: &str, j: &JsJob, calls: usize) {
    for _ in 0..calls / 10 + 1 {
        let _ = run_js(j, None);
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let (r, _) = run_js(j, None);
        times.push(t.elapsed());
        if let Err(e) = r {
            eprintln!("code-js-bench: {name}: {e}");
            std::process::exit(1);
        }
    }
    report(name, times);
}

fn time_engine(rt: &tokio::runtime::Runtime, name: &str, node: Value, calls: usize) {
    let engine = Engine::builder(orcheo_nodes::shared_catalog())
        .sink(Arc::new(NullSink))
        .build();
    let doc = Workflow::from_value(json!({
        "format": "orcheo.workflow/1", "name": name, "nodes": [node],
        "edges": [{ "source": "__start__", "target": "n" }]
    }))
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let wf = engine
        .compile(doc)
        .unwrap_or_else(|p| panic!("{name}: {p:?}"));
    let times = rt.block_on(async {
        let mut times = Vec::with_capacity(calls);
        for i in 0..calls + calls / 10 + 1 {
            let t = Instant::now();
            let out = engine
                .start(&wf, order(), RunOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let took = t.elapsed();
            if out.status != RunStatus::Completed {
                eprintln!("code-js-bench: {name}: {:?}", out.error);
                std::process::exit(1);
            }
            if i > calls / 10 {
                times.push(took);
            }
        }
        times
    });
    report(name, times);
}

fn main() {
    let calls: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().unwrap_or_else(|_| {
            eprintln!("usage: code-js-bench [CALLS]");
            std::process::exit(2)
        }),
        None => 2000,
    };
    let t = Instant::now();
    let (r, _) = run_js(&job("return 1;", &json!({})), None);
    println!(
        "{}",
        json!({ "bench": "first_call_cold", "us": t.elapsed().as_secs_f64() * 1e6, "ok": r.is_ok() })
    );
    time_sandbox("sandbox_trivial", &job("return 1;", &json!({})), calls);
    time_sandbox("sandbox_order", &job(ORDER_CODE, &order()), calls);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    time_engine(
        &rt,
        "engine_noop",
        json!({ "id": "n", "type": "noop" }),
        calls,
    );
    time_engine(
        &rt,
        "engine_code_js",
        json!({ "id": "n", "type": "code_js", "config": { "code": ORDER_CODE } }),
        calls,
    );
}
