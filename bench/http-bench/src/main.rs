//! HTTP node throughput: a one-node workflow whose `http_request` node GETs a small JSON
//! document from a local axum server, run `--runs` times with `--concurrency` runs in flight.
//! Prints one JSON line: runs/s and per-run latency percentiles. `--serve` only runs the server
//! (for the LangGraph side, bench/http_langgraph.py, to call the same server).

use anyhow::Context;
use clap::Parser;
use orcheo_core::engine::{Engine, RunOptions};
use orcheo_core::Workflow;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Runs to measure.
    #[arg(long, default_value_t = 5000)]
    runs: usize,
    /// Runs in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Only serve the JSON document and print the URL.
    #[arg(long)]
    serve: bool,
    /// Call this server instead of starting one.
    #[arg(long)]
    url: Option<String>,
}

async fn server() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/item",
        axum::routing::get(|| async {
            axum::Json(json!({"id": 42, "name": "widget", "price": 9.5}))
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/item", l.local_addr()?);
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok(url)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.serve {
        let url = server().await?;
        println!("{url}");
        futures::future::pending::<()>().await;
    }
    let url = match a.url {
        Some(u) => u,
        None => server().await?,
    };
    let mut catalog = orcheo_nodes::catalog();
    catalog.register(orcheo_nodes::HttpRequest::new(
        orcheo_nodes::net::GuardedClient::from_allowlist(&["127.0.0.1"])
            .map_err(anyhow::Error::msg)?,
    ));
    let engine = Engine::builder(Arc::new(catalog)).build();
    let doc: Workflow = serde_json::from_value(json!({
        "format": "orcheo.workflow/1", "name": "http bench",
        "nodes": [{"id": "get", "type": "http_request", "config": {"url": url, "retries": 0}}],
        "edges": [{"source": "__start__", "target": "get"}, {"source": "get", "target": "__end__"}]
    }))?;
    let wf = engine
        .compile(doc)
        .map_err(|p| anyhow::anyhow!("{p:?}"))
        .context("compiling")?;
    // Warm up the connection pool and caches.
    for _ in 0..200 {
        engine.start(&wf, json!({}), RunOptions::default()).await?;
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        let permit = sem.clone().acquire_owned().await?;
        let (engine, wf) = (engine.clone(), wf.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = engine.start(&wf, json!({}), RunOptions::default()).await;
            drop(permit);
            (t.elapsed(), r.map(|o| o.error.is_none()).unwrap_or(false))
        }));
    }
    let mut lat = Vec::with_capacity(a.runs);
    let mut failed = 0;
    for t in tasks {
        let (d, ok) = t.await?;
        lat.push(d);
        if !ok {
            failed += 1;
        }
    }
    let total = started.elapsed();
    lat.sort();
    println!(
        "{}",
        json!({
            "side": "orcheo", "runs": a.runs, "concurrency": a.concurrency, "failed": failed,
            "runs_per_s": (a.runs as f64 / total.as_secs_f64()).round(),
            "p50_ms": pct(&lat, 0.50), "p95_ms": pct(&lat, 0.95), "p99_ms": pct(&lat, 0.99)
        })
    );
    Ok(())
}
