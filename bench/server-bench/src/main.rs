//! Server benchmarks of the real `orcheo` binary, on SQLite and on PostgreSQL:
//!
//! * cold start (spawn of `orcheo serve` on an empty database until `/api/health` answers 200),
//!   a graceful stop and a warm restart on the same data;
//! * resident memory (VmRSS) when idle and after the load;
//! * API latency of `GET /api/workflows/{id}` and `POST /api/runs`, one request at a time;
//! * end-to-end throughput: runs of a five-node workflow posted over HTTP by concurrent
//!   clients, until every one of them has completed.
//!
//! Prints Markdown tables and, with `--json FILE`, writes every figure as JSON.
//! `bench/run-server.sh` builds the binaries and runs this.

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a server may take to start, and a single request to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping server gets after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Nodes in the benchmark workflow's chain.
const CHAIN_NODES: usize = 5;
/// Page size when listing runs.
const PAGE: usize = 500;

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(
    name = "orcheo-server-bench",
    about = "Cold start, memory, API latency and end-to-end throughput of `orcheo serve`"
)]
struct Args {
    /// The orcheo binary [default: $CARGO_TARGET_DIR/release/orcheo, CARGO_TARGET_DIR
    /// defaulting to ~/.cache/orcheo-target].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Backends to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Sqlite, Backend::Postgres])]
    backend: Vec<Backend>,
    /// Measured requests per latency series.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Unmeasured requests before each latency series.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Runs posted in the throughput phase.
    #[arg(long, default_value_t = 5000)]
    runs: usize,
    /// Signed webhook requests sent in the webhook phase (0 skips it).
    #[arg(long, default_value_t = 3000)]
    webhooks: usize,
    /// Concurrent HTTP clients posting runs in the throughput phase.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Also write every figure to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Longest wait for posted runs to finish, in seconds.
    #[arg(long, default_value_t = 900)]
    drain_timeout_secs: u64,
}

/// A database backend of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// SQLite in the data directory.
    Sqlite,
    /// A fresh PostgreSQL database (`orcheo_store::testing::fresh_postgres_url`).
    Postgres,
}

impl Backend {
    /// The backend's name in the JSON output.
    fn key(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system's temporary directory.
    fn new(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "orcheo-server-bench-{tag}-{}",
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating temporary directory {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `orcheo serve`; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    url: String,
    key: Option<String>,
    stopped: bool,
}

impl Server {
    /// The server's process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to [`STOP_GRACE`] for the process to exit, then kills it.
    /// Returns how long the graceful stop took.
    fn stop(&mut self) -> Result<Duration> {
        if self.stopped {
            return Ok(Duration::ZERO);
        }
        self.stopped = true;
        let t = Instant::now();
        if let Some(st) = self
            .child
            .try_wait()
            .context("checking the server process")?
        {
            bail!("orcheo serve had already exited ({st})");
        }
        let term = Command::new("kill")
            .arg(self.pid().to_string())
            .status()
            .context("running `kill` to send SIGTERM")?;
        if term.success() {
            while t.elapsed() < STOP_GRACE {
                if let Some(st) = self.child.try_wait().context("waiting for the server")? {
                    if !st.success() {
                        eprintln!("warning: orcheo serve exited with {st} after SIGTERM");
                    }
                    return Ok(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.child.kill().context("killing the server")?;
        self.child.wait().context("reaping the server")?;
        bail!(
            "orcheo serve did not stop within {} s of SIGTERM and was killed",
            STOP_GRACE.as_secs()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // Exited already; its failure was reported where it was noticed.
        }
        if let Err(e) = self.stop() {
            eprintln!("warning: stopping orcheo serve: {e:#}");
        }
    }
}

/// Where and how a backend's servers are started.
struct Setup<'a> {
    bin: &'a Path,
    work: &'a Path,
    data: PathBuf,
    log: PathBuf,
    database_url: Option<String>,
}

/// Receives the next stdout line of the server, `None` when stdout closed.
async fn next_line(
    rx: &mut UnboundedReceiver<String>,
    deadline: Instant,
) -> Result<Option<String>> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, rx.recv()).await.map_err(|_| {
        anyhow!(
            "orcheo serve printed nothing for {} s",
            START_TIMEOUT.as_secs()
        )
    })
}

/// Spawns `orcheo serve`, reads its URL (and admin key on a first start) from stdout and waits
/// until `/api/health` answers 200. Returns the server and the time from spawn to healthy.
async fn start(http: &reqwest::Client, setup: &Setup<'_>) -> Result<(Server, Duration)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&setup.log)
        .with_context(|| format!("opening {}", setup.log.display()))?;
    let mut cmd = Command::new(setup.bin);
    cmd.args(["serve", "--port", "0", "--data-dir"])
        .arg(&setup.data)
        .current_dir(setup.work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // Nothing of the caller's configuration leaks in (no orcheo.toml either: see current_dir).
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ORCHEO_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ORCHEO_LOG", "warn");
    if let Some(url) = &setup.database_url {
        cmd.env("ORCHEO_DATABASE_URL", url);
    }

    let spawned = Instant::now();
    let deadline = spawned + START_TIMEOUT;
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", setup.bin.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("the server's stdout is not piped")?;
    let mut server = Server {
        child,
        url: String::new(),
        key: None,
        stopped: false,
    };
    // A thread reads stdout for the server's whole life, so it never blocks on a full pipe;
    // lines go to `rx` until it is dropped, then are discarded.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    let _ = tx.send(l);
                }
                Err(_) => break,
            }
        }
    });

    let exited = "orcheo serve exited during start-up";
    loop {
        let line = next_line(&mut rx, deadline).await?.context(exited)?;
        if let Some(rest) = line.strip_prefix("Orcheo is running at ") {
            server.url = rest
                .split_whitespace()
                .next()
                .context("no URL after `Orcheo is running at`")?
                .to_string();
            break;
        }
    }

    let health = format!("{}/api/health", server.url);
    let healthy = loop {
        if let Ok(res) = http
            .get(&health)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            if res.status() == reqwest::StatusCode::OK {
                break spawned.elapsed();
            }
        }
        if let Some(st) = server.child.try_wait().context("checking the server")? {
            server.stopped = true;
            bail!("orcheo serve exited ({st}) before /api/health answered");
        }
        if Instant::now() > deadline {
            bail!(
                "{health} did not answer 200 within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    let mut next_is_key = false;
    loop {
        let line = next_line(&mut rx, deadline).await?.context(exited)?;
        if next_is_key {
            next_is_key = false;
            if let Some(k) = line.strip_prefix("    ") {
                server.key = Some(k.trim().to_string());
            }
        }
        if line.contains("It is shown only now") {
            next_is_key = true;
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    Ok((server, healthy))
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// A workflow of `CHAIN_NODES` `set_variables` nodes in a chain.
fn chain_workflow(name: &str) -> Value {
    let nodes: Vec<Value> = (0..CHAIN_NODES)
        .map(|i| {
            json!({"id": format!("s{i}"), "type": "set_variables",
                   "config": {"values": {format!("v{i}"): i}}})
        })
        .collect();
    let mut edges = vec![json!({"source": "__start__", "target": "s0"})];
    for i in 1..CHAIN_NODES {
        edges.push(json!({"source": format!("s{}", i - 1), "target": format!("s{i}")}));
    }
    edges.push(json!({"source": format!("s{}", CHAIN_NODES - 1), "target": "__end__"}));
    json!({"format": "orcheo.workflow/1", "name": name, "nodes": nodes, "edges": edges})
}

/// An HTTP client of one server, authenticated with its admin key.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    /// Sends a request and returns the status and the body, which must be JSON.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .with_context(|| format!("reading the body of {method} {path}"))?;
        let v = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{method} {path} → {status}: not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        Ok((status, v))
    }

    /// Like [`Api::call`], failing unless the status is `want`.
    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        want: u16,
    ) -> Result<Value> {
        let (st, v) = self.call(method.clone(), path, body).await?;
        if st.as_u16() != want {
            bail!("{method} {path} → {st} (expected {want}): {v}");
        }
        Ok(v)
    }

    /// Pushes the benchmark workflow under `id`.
    async fn push_workflow(&self, id: &str) -> Result<()> {
        let body = json!({"id": id, "document": chain_workflow(&format!("bench {CHAIN_NODES}"))});
        let (st, v) = self
            .call(reqwest::Method::POST, "/api/workflows", Some(&body))
            .await?;
        if !st.is_success() {
            bail!("POST /api/workflows → {st}: {v}");
        }
        Ok(())
    }

    /// Starts a run of `workflow` with an empty input (expects 202).
    async fn post_run(&self, workflow: &str) -> Result<()> {
        let body = json!({"workflow_id": workflow, "input": {}});
        self.expect(reqwest::Method::POST, "/api/runs", Some(&body), 202)
            .await
            .map(drop)
    }

    /// Whether any run of `workflow` is in `status`.
    async fn any_in(&self, workflow: &str, status: &str) -> Result<bool> {
        let v = self
            .expect(
                reqwest::Method::GET,
                &format!("/api/runs?workflow_id={workflow}&status={status}&limit=1"),
                None,
                200,
            )
            .await?;
        let items = v["items"]
            .as_array()
            .with_context(|| format!("no `items` in the run listing: {v}"))?;
        Ok(!items.is_empty())
    }

    /// Waits until no run of `workflow` is queued or running; returns how long that took.
    async fn drain(&self, workflow: &str, poll: Duration, timeout: Duration) -> Result<Duration> {
        let t = Instant::now();
        loop {
            if !self.any_in(workflow, "queued").await? && !self.any_in(workflow, "running").await? {
                return Ok(t.elapsed());
            }
            if t.elapsed() > timeout {
                bail!(
                    "runs of {workflow} still queued or running after {} s",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Pages through the runs of `workflow` in `status`.
    async fn runs_in(&self, workflow: &str, status: &str) -> Result<RunTally> {
        let mut tally = RunTally::default();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/runs?workflow_id={workflow}&status={status}&limit={PAGE}");
            if let Some(c) = &cursor {
                path.push_str("&cursor=");
                path.push_str(c);
            }
            let v = self.expect(reqwest::Method::GET, &path, None, 200).await?;
            let items = v["items"]
                .as_array()
                .with_context(|| format!("no `items` in the run listing: {v}"))?;
            for run in items {
                tally.count += 1;
                if let Some(t) = run["created_at"].as_str() {
                    let t = parse_time(t)?;
                    tally.first_created = Some(tally.first_created.map_or(t, |m| m.min(t)));
                }
                if let Some(t) = run["finished_at"].as_str() {
                    let t = parse_time(t)?;
                    tally.last_finished = Some(tally.last_finished.map_or(t, |m| m.max(t)));
                }
            }
            match v["next_cursor"].as_str() {
                Some(c) if !items.is_empty() => cursor = Some(c.to_string()),
                _ => return Ok(tally),
            }
        }
    }

    /// Checks that all `expected` runs of `workflow` completed; returns their tally.
    async fn verify_completed(&self, workflow: &str, expected: usize) -> Result<RunTally> {
        let done = self.runs_in(workflow, "completed").await?;
        if done.count != expected {
            let failed = self.runs_in(workflow, "failed").await?.count;
            let waiting = self.runs_in(workflow, "waiting").await?.count;
            let cancelled = self.runs_in(workflow, "cancelled").await?.count;
            bail!(
                "{workflow}: {} of {expected} runs completed ({failed} failed, {waiting} waiting, \
                 {cancelled} cancelled)",
                done.count
            );
        }
        let failed = self.runs_in(workflow, "failed").await?.count;
        if failed != 0 {
            bail!("{workflow}: {failed} runs failed");
        }
        Ok(done)
    }
}

/// Parses an RFC 3339 time.
fn parse_time(t: &str) -> Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(t)
        .with_context(|| format!("not an RFC 3339 time: {t}"))?
        .with_timezone(&Utc))
}

/// What a run listing held.
#[derive(Default)]
struct RunTally {
    count: usize,
    first_created: Option<DateTime<Utc>>,
    last_finished: Option<DateTime<Utc>>,
}

/// Latency percentiles of a series of requests, in milliseconds.
struct Latency {
    n: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

impl Latency {
    /// The figures of `samples`.
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let n = samples.len();
        // Nearest rank.
        let pct = |p: f64| -> f64 {
            if n == 0 {
                return f64::NAN;
            }
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            ms(samples[rank.clamp(1, n) - 1])
        };
        let total: Duration = samples.iter().sum();
        Latency {
            n,
            p50: pct(50.0),
            p95: pct(95.0),
            p99: pct(99.0),
            mean: if n == 0 {
                f64::NAN
            } else {
                ms(total) / n as f64
            },
            max: samples.last().map_or(f64::NAN, |d| ms(*d)),
        }
    }

    /// As JSON.
    fn json(&self) -> Value {
        json!({"n": self.n, "p50_ms": self.p50, "p95_ms": self.p95, "p99_ms": self.p99,
               "mean_ms": self.mean, "max_ms": self.max})
    }
}

/// Runs `f` `warmup` times unmeasured, then `n` times measured, one at a time.
async fn measure<F, Fut>(warmup: usize, n: usize, mut f: F) -> Result<Latency>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    for _ in 0..warmup {
        f().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed());
    }
    Ok(Latency::of(samples))
}

/// The end-to-end throughput phase's figures.
struct Throughput {
    runs: usize,
    concurrency: usize,
    /// Posting all runs (client clock).
    post_secs: f64,
    /// From the first POST (client clock) to the last run's `finished_at`.
    e2e_secs: f64,
    /// From the first run's `created_at` to the last run's `finished_at` (server clock).
    server_secs: f64,
}

impl Throughput {
    /// Runs per second posted.
    fn post_rate(&self) -> f64 {
        self.runs as f64 / self.post_secs
    }
    /// Runs per second, first POST to last finished.
    fn e2e_rate(&self) -> f64 {
        self.runs as f64 / self.e2e_secs
    }
    /// Runs per second on the server's clock.
    fn server_rate(&self) -> f64 {
        self.runs as f64 / self.server_secs
    }
}

/// Everything measured on one backend.
struct Report {
    backend: Backend,
    cold_start: Duration,
    idle_stop: Duration,
    warm_start: Duration,
    rss_idle_cold_kib: u64,
    rss_idle_kib: u64,
    rss_after_load_kib: u64,
    hwm_after_load_kib: u64,
    get_workflow: Latency,
    post_run: Latency,
    latency_drain: Duration,
    throughput: Throughput,
    webhook: Option<Webhooks>,
    loaded_stop: Duration,
    log_lines: usize,
}

/// The webhook phase's figures.
struct Webhooks {
    /// Requests sent (all accepted and completed).
    n: usize,
    /// Accepted requests per second (client clock, all senders).
    rate: f64,
    /// Accept latency of each request.
    latency: Latency,
}

impl Report {
    /// As JSON.
    fn json(&self) -> Value {
        let t = &self.throughput;
        json!({
            "backend": self.backend.key(),
            "cold_start_ms": ms(self.cold_start),
            "idle_stop_ms": ms(self.idle_stop),
            "warm_restart_ms": ms(self.warm_start),
            "rss_idle_after_cold_start_kib": self.rss_idle_cold_kib,
            "rss_idle_after_restart_kib": self.rss_idle_kib,
            "rss_after_load_kib": self.rss_after_load_kib,
            "rss_peak_kib": self.hwm_after_load_kib,
            "get_workflow": self.get_workflow.json(),
            "post_run": self.post_run.json(),
            "latency_runs_drain_ms": ms(self.latency_drain),
            "throughput": {
                "runs": t.runs,
                "concurrency": t.concurrency,
                "nodes_per_run": CHAIN_NODES,
                "post_secs": t.post_secs,
                "post_runs_per_sec": t.post_rate(),
                "e2e_secs": t.e2e_secs,
                "e2e_runs_per_sec": t.e2e_rate(),
                "server_secs": t.server_secs,
                "server_runs_per_sec": t.server_rate(),
            },
            "webhooks": self.webhook.as_ref().map(|w| json!({
                "requests": w.n, "accepted_per_sec": w.rate, "accept_latency": w.latency.json()
            })),
            "loaded_stop_ms": ms(self.loaded_stop),
            "server_log_lines": self.log_lines,
        })
    }

    /// As Markdown tables.
    fn markdown(&self, args: &Args) -> String {
        let t = &self.throughput;
        let mut s = format!("### {}\n\n", self.backend);
        s.push_str("| Measure | Value |\n|---|---:|\n");
        let mut row = |k: &str, v: String| s.push_str(&format!("| {k} | {v} |\n"));
        row(
            "Cold start (spawn → `/api/health` 200, empty database)",
            format!("{:.1} ms", ms(self.cold_start)),
        );
        row(
            "Warm restart (spawn → healthy, same data)",
            format!("{:.1} ms", ms(self.warm_start)),
        );
        row(
            "Graceful stop when idle (SIGTERM → exit)",
            format!("{:.1} ms", ms(self.idle_stop)),
        );
        row(
            "RSS idle, 1 s after cold start",
            mib(self.rss_idle_cold_kib),
        );
        row("RSS idle, 1 s after warm restart", mib(self.rss_idle_kib));
        row("RSS after the load", mib(self.rss_after_load_kib));
        row("Peak RSS (VmHWM)", mib(self.hwm_after_load_kib));
        row(
            &format!(
                "Throughput: {} runs × {CHAIN_NODES} nodes, {} clients, first POST → last finished",
                t.runs, t.concurrency
            ),
            format!("**{:.0} runs/s** ({:.2} s)", t.e2e_rate(), t.e2e_secs),
        );
        row(
            "Throughput, server clock (first created → last finished)",
            format!("{:.0} runs/s ({:.2} s)", t.server_rate(), t.server_secs),
        );
        row(
            "Posting rate (all POSTs answered)",
            format!("{:.0} runs/s ({:.2} s)", t.post_rate(), t.post_secs),
        );
        s.push_str(&format!(
            "\nAPI latency, one request at a time ({} measured after {} warm-up), ms:\n\n",
            args.requests, args.warmup
        ));
        s.push_str("| Request | p50 | p95 | p99 | mean | max |\n|---|---:|---:|---:|---:|---:|\n");
        let mut rows = vec![
            (
                "`GET /api/workflows/bench5`".to_string(),
                &self.get_workflow,
            ),
            ("`POST /api/runs` (202)".to_string(), &self.post_run),
        ];
        if let Some(w) = &self.webhook {
            s.push_str(&format!(
                "Webhooks: {} signed requests (Standard Webhooks), {} senders: **{:.0} accepted/s**, every one a completed run.\n\n",
                w.n, args.concurrency, w.rate
            ));
            rows.push((
                format!("webhook accept, {} concurrent (202)", args.concurrency),
                &w.latency,
            ));
        }
        for (name, l) in rows {
            s.push_str(&format!(
                "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                l.p50, l.p95, l.p99, l.mean, l.max
            ));
        }
        s
    }
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// KiB as MiB, for the tables.
fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The last `n` lines of a file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Measures one backend; the temporary directory and servers are cleaned up on every path.
async fn bench_backend(args: &Args, bin: &Path, backend: Backend) -> Result<Report> {
    let tmp = TempDir::new(backend.key())?;
    let log = tmp.0.join("server.log");
    let result = bench_backend_in(args, bin, backend, &tmp.0, &log).await;
    result.map_err(|e| {
        let log = tail(&log, 30);
        let log = if log.trim().is_empty() {
            "(the server logged nothing)".to_string()
        } else {
            format!("server log, last lines:\n{log}")
        };
        e.context(format!("{backend} benchmark failed; {log}"))
    })
}

/// [`bench_backend`] in the temporary directory `tmp`, the server logging to `log`.
async fn bench_backend_in(
    args: &Args,
    bin: &Path,
    backend: Backend,
    tmp: &Path,
    log: &Path,
) -> Result<Report> {
    let database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(
            orcheo_store::testing::fresh_postgres_url()
                .await
                .context("creating a fresh PostgreSQL database")?,
        ),
    };
    let setup = Setup {
        bin,
        work: tmp,
        data: tmp.join("data"),
        log: log.to_path_buf(),
        database_url,
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;

    eprintln!("== {backend}: cold start");
    let (mut server, cold_start) = start(&http, &setup).await?;
    let key = server
        .key
        .clone()
        .context("the first start printed no admin API key")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_idle_cold_kib, _) = memory_kib(server.pid())?;
    let idle_stop = server.stop()?;
    drop(server);

    eprintln!("== {backend}: warm restart");
    let (mut server, warm_start) = start(&http, &setup).await?;
    if server.key.is_some() {
        eprintln!("warning: the restarted server printed a new admin key; using the first one");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_idle_kib, _) = memory_kib(server.pid())?;

    let api = Api {
        http,
        base: server.url.clone(),
        key,
    };
    let drain_timeout = Duration::from_secs(args.drain_timeout_secs);

    eprintln!(
        "== {backend}: latency ({} + {} warm-up requests each)",
        args.requests, args.warmup
    );
    api.push_workflow("bench5").await?;
    let get_workflow = measure(args.warmup, args.requests, || async {
        api.expect(reqwest::Method::GET, "/api/workflows/bench5", None, 200)
            .await
            .map(drop)
    })
    .await?;
    let post_run = measure(args.warmup, args.requests, || api.post_run("bench5")).await?;
    let latency_drain = api
        .drain("bench5", Duration::from_millis(20), drain_timeout)
        .await?;
    api.verify_completed("bench5", args.warmup + args.requests)
        .await?;

    eprintln!(
        "== {backend}: throughput ({} runs, {} clients)",
        args.runs, args.concurrency
    );
    api.push_workflow("bench5t").await?;
    let next = Arc::new(AtomicUsize::new(0));
    let first_post = Utc::now();
    let posting = Instant::now();
    let clients: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let api = api.clone();
            let next = next.clone();
            let runs = args.runs;
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < runs {
                    if let Err(e) = api.post_run("bench5t").await {
                        // Stop the other clients too.
                        next.store(runs, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                Ok(())
            })
        })
        .collect();
    for r in futures::future::join_all(clients).await {
        r.context("a posting client panicked")??;
    }
    let post_secs = posting.elapsed().as_secs_f64();
    api.drain("bench5t", Duration::from_millis(20), drain_timeout)
        .await?;
    let done = api.verify_completed("bench5t", args.runs).await?;
    let (first_created, last_finished) = done
        .first_created
        .zip(done.last_finished)
        .context("the completed runs carry no created_at/finished_at")?;
    let secs =
        |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let throughput = Throughput {
        runs: args.runs,
        concurrency: args.concurrency.max(1),
        post_secs,
        e2e_secs: secs(first_post, last_finished),
        server_secs: secs(first_created, last_finished),
    };

    let webhook = if args.webhooks > 0 {
        eprintln!(
            "== {backend}: webhooks ({} signed requests, {} senders)",
            args.webhooks, args.concurrency
        );
        Some(webhook_phase(&api, args, drain_timeout).await?)
    } else {
        None
    };

    let (rss_after_load_kib, hwm_after_load_kib) = memory_kib(server.pid())?;
    let loaded_stop = server.stop()?;
    drop(server);
    let log_lines = std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    if log_lines > 0 {
        eprintln!(
            "note: the server logged {log_lines} lines at warn level or above; the last ones:\n{}",
            tail(log, 5)
        );
    }

    Ok(Report {
        backend,
        cold_start,
        idle_stop,
        warm_start,
        rss_idle_cold_kib,
        rss_idle_kib,
        rss_after_load_kib,
        hwm_after_load_kib,
        get_workflow,
        post_run,
        latency_drain,
        throughput,
        webhook,
        loaded_stop,
        log_lines,
    })
}

/// Signed webhooks from concurrent senders: accept rate and latency; every request must
/// become a completed run.
async fn webhook_phase(api: &Api, args: &Args, drain_timeout: Duration) -> Result<Webhooks> {
    api.push_workflow("bench5w").await?;
    let hook = api
        .expect(
            reqwest::Method::POST,
            "/api/triggers/webhook",
            Some(&json!({"workflow_id": "bench5w", "signature": {"type": "standard_webhooks"}})),
            201,
        )
        .await?;
    let url = hook["url"].as_str().context("no webhook url")?.to_string();
    let secret = hook["secret_once"]
        .as_str()
        .context("no webhook secret")?
        .to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let senders: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (http, url, secret, next) =
                (api.http.clone(), url.clone(), secret.clone(), next.clone());
            let n = args.webhooks;
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(samples);
                    }
                    let body = format!(r#"{{"n": {i}}}"#);
                    let id = format!("msg_{i}");
                    let now = Utc::now().timestamp();
                    let sig = orcheo_server::triggers::signature::standard_sign(
                        &secret,
                        &id,
                        now,
                        body.as_bytes(),
                    )
                    .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
                    let t = Instant::now();
                    let res = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("webhook-id", &id)
                        .header("webhook-timestamp", now.to_string())
                        .header("webhook-signature", sig)
                        .body(body)
                        .send()
                        .await
                        .context("posting a webhook")?;
                    let status = res.status();
                    let _ = res.bytes().await;
                    samples.push(t.elapsed());
                    if status.as_u16() != 202 {
                        bail!("webhook {i} → {status}");
                    }
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    for r in futures::future::join_all(senders).await {
        samples.extend(r.context("a webhook sender panicked")??);
    }
    let secs = started.elapsed().as_secs_f64();
    api.drain("bench5w", Duration::from_millis(20), drain_timeout)
        .await?;
    api.verify_completed("bench5w", args.webhooks).await?;
    Ok(Webhooks {
        n: args.webhooks,
        rate: args.webhooks as f64 / secs,
        latency: Latency::of(samples),
    })
}

/// The output of a command, trimmed, or `unknown`.
fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The CPU model from /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// `$CARGO_TARGET_DIR/release/orcheo`, CARGO_TARGET_DIR defaulting to ~/.cache/orcheo-target.
fn default_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".cache/orcheo-target")
        });
    target.join("release/orcheo")
}

/// A row of the summary table: its name and how to get a backend's figure.
type SummaryRow = (&'static str, fn(&Report) -> String);

/// The summary table, one column per backend.
fn summary(reports: &[Report]) -> String {
    let mut s = String::from("| | ");
    s.push_str(
        &reports
            .iter()
            .map(|r| r.backend.to_string())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    s.push_str(" |\n|---|");
    s.push_str(&"---:|".repeat(reports.len()));
    s.push('\n');
    let rows: [SummaryRow; 10] = [
        ("Cold start", |r| format!("{:.1} ms", ms(r.cold_start))),
        ("Warm restart", |r| format!("{:.1} ms", ms(r.warm_start))),
        ("Idle RSS", |r| mib(r.rss_idle_kib)),
        ("RSS after load", |r| mib(r.rss_after_load_kib)),
        ("Peak RSS", |r| mib(r.hwm_after_load_kib)),
        ("GET workflow p50 / p99", |r| {
            format!("{:.3} / {:.3} ms", r.get_workflow.p50, r.get_workflow.p99)
        }),
        ("POST run p50 / p99", |r| {
            format!("{:.3} / {:.3} ms", r.post_run.p50, r.post_run.p99)
        }),
        ("Runs/s end to end (client clock)", |r| {
            format!("{:.0}", r.throughput.e2e_rate())
        }),
        ("Runs/s (server clock)", |r| {
            format!("{:.0}", r.throughput.server_rate())
        }),
        ("Node executions/s end to end", |r| {
            format!("{:.0}", r.throughput.e2e_rate() * CHAIN_NODES as f64)
        }),
    ];
    for (name, f) in rows {
        s.push_str(&format!("| {name} |"));
        for r in reports {
            s.push_str(&format!(" {} |", f(r)));
        }
        s.push('\n');
    }
    s
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = args.bin.clone().unwrap_or_else(default_bin);
    if !bin.is_file() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p orcheo` or pass --bin",
            bin.display()
        );
    }
    let mut backends: Vec<Backend> = Vec::new();
    for b in &args.backend {
        if !backends.contains(b) {
            backends.push(*b);
        }
    }
    if backends.is_empty() {
        bail!("no backend to measure");
    }

    let commit = {
        let c = command_output("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = Command::new("git")
            .args(["diff", "--quiet", "HEAD", "--", "crates"])
            .status()
            .map(|s| s.code() == Some(1))
            .unwrap_or(false);
        if dirty {
            format!("{c} (crates/ modified)")
        } else {
            c
        }
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let nproc_cmd = command_output("nproc", &[]);
    let date = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let version = command_output(&bin.to_string_lossy(), &["--version"]);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: String = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");

    let mut header = String::from("## Orcheo server benchmark\n\n");
    for (k, v) in [
        ("date", date.clone()),
        ("commit", commit.clone()),
        ("nproc", nproc_cmd.clone()),
        ("cpu", cpu_model()),
        ("binary", format!("{} ({version})", bin.display())),
        ("load before", load.clone()),
        (
            "parameters",
            format!(
                "--requests {} --warmup {} --runs {} --concurrency {}",
                args.requests, args.warmup, args.runs, args.concurrency
            ),
        ),
    ] {
        header.push_str(&format!("- {k}: {v}\n"));
    }
    println!("{header}");

    let mut reports = Vec::new();
    for backend in backends {
        let r = bench_backend(&args, &bin, backend).await?;
        println!("{}", r.markdown(&args));
        reports.push(r);
    }
    println!("### Summary\n\n{}", summary(&reports));

    if let Some(path) = &args.json {
        let out = json!({
            "date": date,
            "commit": commit,
            "nproc": nproc_cmd.parse::<u64>().unwrap_or(nproc as u64),
            "cpu": cpu_model(),
            "binary": bin.display().to_string(),
            "version": version,
            "load_before": load,
            "params": {"requests": args.requests, "warmup": args.warmup, "runs": args.runs,
                       "concurrency": args.concurrency, "nodes_per_run": CHAIN_NODES},
            "backends": reports.iter().map(|r| (r.backend.key().to_string(), r.json()))
                .collect::<serde_json::Map<_, _>>(),
        });
        let text = serde_json::to_string_pretty(&out).context("serializing the results")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
