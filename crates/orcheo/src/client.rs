//! The CLI as a client of a running server: `orcheo workflow …` and `orcheo run-status`.

use crate::exit;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Which server, with which key.
#[derive(Args, Clone)]
pub struct Remote {
    /// The server's base URL.
    #[arg(
        long,
        env = "ORCHEO_SERVER",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    pub server: String,
    /// The API key (prefer the environment variable: arguments show up in `ps`).
    #[arg(long, env = "ORCHEO_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Print JSON instead of the human view.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `orcheo workflow …`.
#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Upload a workflow file: creates the workflow, or adds a version when it changed.
    Push {
        /// The workflow file.
        file: PathBuf,
        /// The workflow id (default: the file name without extension).
        #[arg(long)]
        id: Option<String>,
        /// Why this version exists.
        #[arg(long, short)]
        message: Option<String>,
    },
    /// List workflows.
    List {
        /// Text in the name or description.
        #[arg(long, short)]
        q: Option<String>,
        /// Only with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Print a workflow's document.
    Show {
        /// Workflow id.
        id: String,
        /// A version (default: the newest).
        #[arg(long)]
        version: Option<u32>,
    },
    /// List a workflow's versions.
    Versions {
        /// Workflow id.
        id: String,
    },
    /// Show what changed between two versions.
    Diff {
        /// Workflow id.
        id: String,
        /// The older version.
        from: u32,
        /// The newer version (default: the newest).
        to: Option<u32>,
    },
    /// Start a run; with --wait, wait for it and print the outcome.
    Run {
        /// Workflow id.
        id: String,
        /// A version (default: the newest).
        #[arg(long)]
        version: Option<u32>,
        /// Input: inline JSON or @file.
        #[arg(long, short)]
        input: Option<String>,
        /// An idempotency key: repeating the command returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait until the run finishes or waits, printing its events.
        #[arg(long)]
        wait: bool,
    },
    /// Print a run's events; with --follow, keep printing until the run ends.
    Logs {
        /// Run id.
        run_id: String,
        /// Keep streaming live events (reconnecting where it left off).
        #[arg(long, short)]
        follow: bool,
        /// Start after this event number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

/// The server answered with an error status; displayed as the server's detail.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    /// The HTTP status.
    pub status: u16,
    /// What to tell the user.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// An HTTP client of the server's API with the key.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    /// A client for the server and key in `r`.
    pub(crate) fn new(r: &Remote) -> Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()?,
            base: r.server.trim_end_matches('/').to_string(),
            key: r.api_key.clone().filter(|k| !k.is_empty()),
        })
    }

    /// A request to `path` (under the base URL) carrying the key.
    pub(crate) fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let b = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => b.bearer_auth(k),
            None => b,
        }
    }

    /// Sends a request; an error status becomes an [`ApiFailure`] with the server's detail.
    pub(crate) async fn send(&self, b: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let res = b.send().await.with_context(|| {
            format!(
                "cannot reach the Orcheo server at {} (set --server or ORCHEO_SERVER)",
                self.base
            )
        })?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status >= 400 {
            let detail = body.get("detail").and_then(Value::as_str).unwrap_or("");
            let mut msg = format!("the server answered {status}: {detail}");
            if let Some(errs) = body.get("errors").and_then(Value::as_array) {
                for e in errs.iter().take(20) {
                    msg.push_str(&format!(
                        "\n  {} {}: {}",
                        e.get("path")
                            .or_else(|| e.get("pointer"))
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        e.get("code").and_then(Value::as_str).unwrap_or(""),
                        e.get("message").and_then(Value::as_str).unwrap_or("")
                    ));
                }
            }
            if status == 401 && self.key.is_none() {
                msg.push_str("\n  (no API key given: set ORCHEO_API_KEY)");
            }
            return Err(ApiFailure {
                status,
                message: msg,
            }
            .into());
        }
        Ok((status, body))
    }

    /// GETs `path` and returns the body.
    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        Ok(self.send(self.req(reqwest::Method::GET, path)).await?.1)
    }
}

fn read_json_arg(arg: &str) -> Result<Value> {
    let text = match arg.strip_prefix('@') {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {p}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).context("the input is not valid JSON")
}

/// Indented JSON.
pub(crate) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Percent-encodes a path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an `orcheo workflow` command.
pub async fn workflow(cmd: WorkflowCommand, r: Remote) -> Result<u8> {
    let c = Client::new(&r)?;
    match cmd {
        WorkflowCommand::Push { file, id, message } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", file.display()))?;
            let id = id.unwrap_or_else(|| {
                file.file_stem()
                    .map(|s| {
                        s.to_string_lossy()
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                                    c
                                } else {
                                    '-'
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_else(|| "workflow".into())
            });
            let exists = c
                .send(c.req(
                    reqwest::Method::GET,
                    &format!("/api/workflows/{}", enc(&id)),
                ))
                .await
                .is_ok();
            let (status, body) = if exists {
                c.send(
                    c.req(
                        reqwest::Method::POST,
                        &format!("/api/workflows/{}/versions", enc(&id)),
                    )
                    .json(&json!({"document": doc, "message": message})),
                )
                .await?
            } else {
                c.send(
                    c.req(reqwest::Method::POST, "/api/workflows")
                        .json(&json!({"document": doc, "id": id, "message": message})),
                )
                .await?
            };
            if r.json {
                crate::out(&pretty(&body));
            } else {
                let version = body
                    .get("latest_version")
                    .or_else(|| body.get("version"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let what = match (exists, status) {
                    (false, _) => "created",
                    (true, 201) => "new version",
                    _ => "unchanged",
                };
                crate::out(&format!("{id}: {what} (version {version})"));
            }
            Ok(exit::OK)
        }
        WorkflowCommand::List { q, tag, limit } => {
            let mut path = format!("/api/workflows?limit={limit}");
            if let Some(q) = q {
                path += &format!("&q={}", enc(&q));
            }
            if let Some(t) = tag {
                path += &format!("&tag={}", enc(&t));
            }
            let body = c.get(&path).await?;
            if r.json {
                crate::out(&pretty(&body));
            } else {
                for w in body["items"].as_array().into_iter().flatten() {
                    crate::out(&format!(
                        "{:<38} v{:<4} {:<32} {}",
                        w["id"].as_str().unwrap_or(""),
                        w["latest_version"],
                        w["name"].as_str().unwrap_or(""),
                        w["tags"]
                            .as_array()
                            .map(|t| t
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(","))
                            .unwrap_or_default()
                    ));
                }
            }
            Ok(exit::OK)
        }
        WorkflowCommand::Show { id, version } => {
            let body = match version {
                Some(v) => {
                    c.get(&format!("/api/workflows/{}/versions/{v}", enc(&id)))
                        .await?
                }
                None => c.get(&format!("/api/workflows/{}", enc(&id))).await?,
            };
            if r.json {
                crate::out(&pretty(&body));
            } else {
                crate::out(&pretty(&body["document"]));
            }
            Ok(exit::OK)
        }
        WorkflowCommand::Versions { id } => {
            let body = c
                .get(&format!("/api/workflows/{}/versions?limit=500", enc(&id)))
                .await?;
            if r.json {
                crate::out(&pretty(&body));
            } else {
                for v in body["items"].as_array().into_iter().flatten() {
                    crate::out(&format!(
                        "v{:<4} {}  {:<30} {}",
                        v["version"],
                        v["created_at"].as_str().unwrap_or(""),
                        v["author"].as_str().unwrap_or(""),
                        v["message"].as_str().unwrap_or("")
                    ));
                }
            }
            Ok(exit::OK)
        }
        WorkflowCommand::Diff { id, from, to } => {
            let mut path = format!("/api/workflows/{}/diff?from={from}", enc(&id));
            if let Some(t) = to {
                path += &format!("&to={t}");
            }
            let d = c.get(&path).await?;
            if r.json {
                crate::out(&pretty(&d));
            } else if d["identical"] == json!(true) {
                crate::out("the versions are identical");
            } else {
                for n in d["nodes_added"].as_array().into_iter().flatten() {
                    crate::out(&format!(
                        "+ node {} ({})",
                        n["id"].as_str().unwrap_or(""),
                        n["type"].as_str().unwrap_or("")
                    ));
                }
                for n in d["nodes_removed"].as_array().into_iter().flatten() {
                    crate::out(&format!(
                        "- node {} ({})",
                        n["id"].as_str().unwrap_or(""),
                        n["type"].as_str().unwrap_or("")
                    ));
                }
                for n in d["nodes_changed"].as_array().into_iter().flatten() {
                    for ch in n["changes"].as_array().into_iter().flatten() {
                        crate::out(&format!(
                            "~ node {}{}: {} → {}",
                            n["id"].as_str().unwrap_or(""),
                            ch["path"].as_str().unwrap_or(""),
                            ch.get("before").unwrap_or(&Value::Null),
                            ch.get("after").unwrap_or(&Value::Null)
                        ));
                    }
                }
                for e in d["edges_added"].as_array().into_iter().flatten() {
                    crate::out(&format!(
                        "+ edge {} → {}",
                        e["source"].as_str().unwrap_or(""),
                        e["target"].as_str().unwrap_or("")
                    ));
                }
                for e in d["edges_removed"].as_array().into_iter().flatten() {
                    crate::out(&format!(
                        "- edge {} → {}",
                        e["source"].as_str().unwrap_or(""),
                        e["target"].as_str().unwrap_or("")
                    ));
                }
                for ch in d["other"].as_array().into_iter().flatten() {
                    crate::out(&format!(
                        "~ {}: {} → {}",
                        ch["path"].as_str().unwrap_or(""),
                        ch.get("before").unwrap_or(&Value::Null),
                        ch.get("after").unwrap_or(&Value::Null)
                    ));
                }
            }
            Ok(exit::OK)
        }
        WorkflowCommand::Run {
            id,
            version,
            input,
            idempotency_key,
            wait,
        } => {
            let input = input.as_deref().map(read_json_arg).transpose()?;
            let mut b = c
                .req(reqwest::Method::POST, "/api/runs")
                .json(&json!({"workflow_id": id, "version": version, "input": input}));
            if let Some(k) = idempotency_key {
                b = b.header("Idempotency-Key", k);
            }
            let (_, run) = c.send(b).await?;
            let run_id = run["id"].as_str().unwrap_or("").to_string();
            if !wait {
                if r.json {
                    crate::out(&pretty(&run));
                } else {
                    crate::out(&run_id);
                }
                return Ok(exit::OK);
            }
            if !r.json {
                eprintln!("run {run_id}");
            }
            follow(&c, &run_id, 0, true, false).await?;
            status(&c, &run_id, r.json).await
        }
        WorkflowCommand::Logs {
            run_id,
            follow: f,
            after,
        } => {
            if f {
                follow(&c, &run_id, after, !r.json, r.json).await?;
            } else {
                let mut after = after;
                loop {
                    let page = c
                        .get(&format!(
                            "/api/runs/{}/events?after={after}&limit=1000",
                            enc(&run_id)
                        ))
                        .await?;
                    for e in page["events"].as_array().into_iter().flatten() {
                        print_event(e, r.json);
                        after = e["seq"].as_u64().unwrap_or(after);
                    }
                    if page.get("next_after").is_none() {
                        break;
                    }
                }
            }
            Ok(exit::OK)
        }
    }
}

fn print_event(e: &Value, json: bool) {
    if json {
        crate::out(&e.to_string());
        return;
    }
    let seq = e["seq"].as_u64().unwrap_or(0);
    let ty = e["type"].as_str().unwrap_or("");
    let node = e.get("node").and_then(Value::as_str).unwrap_or("");
    let extra = match ty {
        "node_completed" => format!("{:.1} ms", e["duration_ms"].as_f64().unwrap_or(0.0)),
        "node_failed" | "run_failed" => e["error"]["message"].as_str().unwrap_or("").to_string(),
        "node_log" => e["message"].as_str().unwrap_or("").to_string(),
        "run_cancelled" => e["reason"].as_str().unwrap_or("").to_string(),
        _ => String::new(),
    };
    crate::out(format!("{seq:>5} {ty:<16} {node:<20} {extra}").trim_end());
}

/// Streams events over SSE, reconnecting with Last-Event-ID until the run ends.
async fn follow(c: &Client, run_id: &str, after: u64, human: bool, json: bool) -> Result<()> {
    use futures::StreamExt;
    let mut last = after;
    let mut failures = 0;
    loop {
        let res = c
            .req(
                reqwest::Method::GET,
                &format!("/api/runs/{}/stream", enc(run_id)),
            )
            .header("Last-Event-ID", last.to_string())
            .send()
            .await;
        let res = match res {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                bail!(
                    "the server answered {status}: {}",
                    body["detail"].as_str().unwrap_or("")
                );
            }
            Err(e) => {
                failures += 1;
                if failures > 30 {
                    return Err(e).context("lost the connection to the server");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failures = 0;
        let mut buf = String::new();
        let mut data = String::new();
        let mut ended = false;
        let mut body = res.bytes_stream();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = buf.find('\n') {
                let line = buf[..i].trim_end_matches('\r').to_string();
                buf.drain(..=i);
                if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let e: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    data.clear();
                    last = e["seq"].as_u64().unwrap_or(last);
                    if human || json {
                        print_event(&e, json);
                    }
                    if matches!(
                        e["type"].as_str(),
                        Some("run_completed" | "run_failed" | "run_cancelled")
                    ) {
                        ended = true;
                    }
                }
            }
        }
        if ended {
            return Ok(());
        }
        // The stream closed without an end: the run may be waiting, or the connection broke.
        let run = c.get(&format!("/api/runs/{}", enc(run_id))).await?;
        match run["status"].as_str() {
            Some("completed" | "failed" | "cancelled" | "waiting") => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn status(c: &Client, run_id: &str, json: bool) -> Result<u8> {
    let run = c.get(&format!("/api/runs/{}", enc(run_id))).await?;
    if json {
        crate::out(&pretty(&run));
    } else {
        crate::out(&format!(
            "run {} {}",
            run_id,
            run["status"].as_str().unwrap_or("")
        ));
        if let Some(e) = run.get("error") {
            crate::out(&format!("error: {}", e["message"].as_str().unwrap_or("")));
        }
        if let Some(w) = run.get("waiting") {
            crate::out(&format!("waiting for: {}", w));
        }
        if let Some(o) = run.get("output") {
            crate::out(&pretty(&o["state"]));
        }
    }
    Ok(match run["status"].as_str() {
        Some("completed") => exit::OK,
        Some("failed") => exit::FAILED,
        Some("waiting") => exit::WAITING,
        Some("cancelled") => exit::CANCELLED,
        _ => exit::OK,
    })
}

/// `orcheo run-status ID`.
pub async fn run_status(run_id: String, r: Remote) -> Result<u8> {
    let c = Client::new(&r)?;
    status(&c, &run_id, r.json).await
}

/// `orcheo trigger …`.
#[derive(Subcommand)]
pub enum TriggerCommand {
    /// List triggers (optionally of one workflow).
    List {
        /// Only this workflow's triggers.
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Make a trigger: `--cron EXPR` (with `--timezone`), `--webhook` (with `--signature`) or
    /// `--poll URL` (with `--items`, `--key`, `--interval`, `--auth`).
    Create(Box<CreateTrigger>),
    /// The URL of a webhook trigger (also one declared in a document).
    Url {
        /// Trigger id, e.g. `order-routing:shop-webhook`.
        id: String,
    },
    /// Poll a polling trigger now and show what it found.
    Poll {
        /// Trigger id.
        id: String,
    },
    /// Stop a trigger from firing.
    Pause {
        /// Trigger id.
        id: String,
    },
    /// Let a paused trigger fire again.
    Resume {
        /// Trigger id.
        id: String,
    },
    /// The next firings of a schedule.
    Next {
        /// Trigger id.
        id: String,
        /// How many.
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
}

/// What `orcheo trigger create` takes.
#[derive(clap::Args)]
pub struct CreateTrigger {
    /// The workflow it starts.
    workflow: String,
    /// A cron expression.
    #[arg(long, conflicts_with_all = ["webhook", "poll"])]
    cron: Option<String>,
    /// IANA time zone of the cron expression.
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// Overlap policy of a schedule: skip, queue_one, allow, cancel_previous.
    #[arg(long)]
    overlap: Option<String>,
    /// Make a webhook.
    #[arg(long)]
    webhook: bool,
    /// Webhook signature scheme: standard_webhooks, github, stripe, slack, shared_secret.
    #[arg(long, requires = "webhook")]
    signature: Option<String>,
    /// Poll this URL for new items.
    #[arg(long, conflicts_with = "webhook")]
    poll: Option<String>,
    /// jq program picking the items out of a polled response (default: an array's elements).
    #[arg(long, requires = "poll")]
    items: Option<String>,
    /// jq program giving an item's key, e.g. `.id` (default: a hash of the item).
    #[arg(long, requires = "poll")]
    key: Option<String>,
    /// Seconds between polls (default 300).
    #[arg(long, requires = "poll")]
    interval: Option<u64>,
    /// How the secret is sent: bearer, basic:USER, header:NAME or query:NAME. The secret is
    /// read from standard input (never from the command line).
    #[arg(long, requires = "poll")]
    auth: Option<String>,
    /// Start runs for the items already there at the first poll too.
    #[arg(long, requires = "poll")]
    emit_existing: bool,
}

/// Runs an `orcheo trigger` command.
pub async fn trigger(cmd: TriggerCommand, r: Remote) -> Result<u8> {
    let c = Client::new(&r)?;
    match cmd {
        TriggerCommand::List { workflow } => {
            let path = match workflow {
                Some(w) => format!("/api/triggers?workflow_id={}", enc(&w)),
                None => "/api/triggers".to_string(),
            };
            let v = c.get(&path).await?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                for t in v.as_array().into_iter().flatten() {
                    let what = match t["kind"].as_str() {
                        Some("cron") => format!(
                            "{} ({})",
                            t["config"]["expression"].as_str().unwrap_or(""),
                            t["config"]["timezone"].as_str().unwrap_or("UTC")
                        ),
                        Some("polling") => format!(
                            "{} every {}s",
                            t["config"]["url"].as_str().unwrap_or(""),
                            t["config"]["interval_secs"]
                        ),
                        _ => t["config"]["methods"]
                            .as_array()
                            .map(|m| {
                                m.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default(),
                    };
                    crate::out(&format!(
                        "{:<38} {:<8} {:<24} {:<30} {}",
                        t["id"].as_str().unwrap_or(""),
                        t["kind"].as_str().unwrap_or(""),
                        t["workflow_id"].as_str().unwrap_or(""),
                        what,
                        if t["enabled"] == json!(true) {
                            "active"
                        } else {
                            "paused"
                        }
                    ));
                }
            }
            Ok(exit::OK)
        }
        TriggerCommand::Create(create) => {
            let CreateTrigger {
                workflow,
                cron,
                timezone,
                overlap,
                webhook,
                signature,
                poll,
                items,
                key,
                interval,
                auth,
                emit_existing,
            } = *create;
            let (path, body) = match (cron, webhook) {
                (None, false) if poll.is_some() => {
                    let mut b = json!({"workflow_id": workflow, "url": poll});
                    if let Some(i) = items {
                        b["items"] = Value::String(i);
                    }
                    if let Some(k) = key {
                        b["key"] = Value::String(k);
                    }
                    if let Some(n) = interval {
                        b["interval_secs"] = json!(n);
                    }
                    if emit_existing {
                        b["initial"] = json!("emit");
                    }
                    if let Some(a) = auth {
                        b["auth"] = match a.split_once(':') {
                            None if a == "bearer" => json!({"type": "bearer"}),
                            Some(("basic", u)) => json!({"type": "basic", "username": u}),
                            Some(("header", n)) => json!({"type": "header", "name": n}),
                            Some(("query", n)) => json!({"type": "query", "name": n}),
                            _ => bail!(
                                "--auth must be bearer, basic:USER, header:NAME or query:NAME"
                            ),
                        };
                        b["secret"] = Value::String(read_secret_stdin()?);
                    }
                    ("/api/triggers/polling", b)
                }
                (Some(expr), _) => {
                    let mut b =
                        json!({"workflow_id": workflow, "expression": expr, "timezone": timezone});
                    if let Some(o) = overlap {
                        b["overlap"] = Value::String(o);
                    }
                    ("/api/triggers/cron", b)
                }
                (None, true) => {
                    let mut b = json!({"workflow_id": workflow});
                    if let Some(s) = signature {
                        b["signature"] = json!({"type": s});
                    }
                    ("/api/triggers/webhook", b)
                }
                (None, false) => {
                    bail!("say what kind of trigger: --cron EXPR, --webhook or --poll URL")
                }
            };
            let (_, v) = c
                .send(c.req(reqwest::Method::POST, path).json(&body))
                .await?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                crate::out(&format!("trigger {}", v["id"].as_str().unwrap_or("")));
                if let Some(u) = v["url"].as_str() {
                    crate::out(&format!("url: {u}"));
                }
                if let Some(s) = v["secret_once"].as_str() {
                    crate::out(&format!("signing secret (shown once): {s}"));
                }
                if let Some(n) = v["next_at"].as_str() {
                    crate::out(&format!("next: {n}"));
                }
            }
            Ok(exit::OK)
        }
        TriggerCommand::Url { id } => {
            let v = c.get(&format!("/api/triggers/{}/url", enc(&id))).await?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                crate::out(v["url"].as_str().unwrap_or(""));
            }
            Ok(exit::OK)
        }
        TriggerCommand::Poll { id } => {
            let (_, v) = c
                .send(c.req(
                    reqwest::Method::POST,
                    &format!("/api/triggers/{}/poll", enc(&id)),
                ))
                .await?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                crate::out(&format!(
                    "status {}: {} items, {} new, {} runs started{}",
                    v["status"],
                    v["items"],
                    v["new_items"],
                    v["runs"].as_array().map_or(0, Vec::len),
                    if v["not_modified"] == json!(true) {
                        " (not modified)"
                    } else {
                        ""
                    }
                ));
                if let Some(e) = v["error"].as_str() {
                    crate::out(&format!("error: {e}"));
                    return Ok(exit::FAILED);
                }
            }
            Ok(exit::OK)
        }
        TriggerCommand::Pause { id } => toggle(&c, &r, &id, "pause").await,
        TriggerCommand::Resume { id } => toggle(&c, &r, &id, "resume").await,
        TriggerCommand::Next { id, count } => {
            let v = c
                .get(&format!("/api/triggers/{}/next?count={count}", enc(&id)))
                .await?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                crate::out(v["description"].as_str().unwrap_or(""));
                for t in v["next"].as_array().into_iter().flatten() {
                    crate::out(t.as_str().unwrap_or(""));
                }
            }
            Ok(exit::OK)
        }
    }
}

/// A secret from standard input: one line, without its line break; refused when empty.
fn read_secret_stdin() -> Result<String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        eprint!("secret: ");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']).to_string();
    if secret.is_empty() {
        bail!("no secret on standard input (pipe it in: `printf %s \"$TOKEN\" | orcheo trigger create …`)");
    }
    Ok(secret)
}

async fn toggle(c: &Client, r: &Remote, id: &str, what: &str) -> Result<u8> {
    let (_, v) = c
        .send(c.req(
            reqwest::Method::POST,
            &format!("/api/triggers/{}/{what}", enc(id)),
        ))
        .await?;
    if r.json {
        crate::out(&pretty(&v));
    } else {
        crate::out(&format!(
            "trigger {id} {}",
            if v["enabled"] == json!(true) {
                "active"
            } else {
                "paused"
            }
        ));
    }
    Ok(exit::OK)
}

/// What `orcheo run` does on a server.
pub enum RunCommand {
    /// Retry a failed run from its last checkpoint (finished nodes are not run again).
    Retry {
        /// Run id.
        id: String,
        /// Wait for it and print the outcome.
        wait: bool,
    },
}

/// Runs `orcheo run retry`.
pub async fn run_cmd(cmd: RunCommand, r: Remote) -> Result<u8> {
    let c = Client::new(&r)?;
    match cmd {
        RunCommand::Retry { id, wait } => {
            let (_, v) = c
                .send(c.req(
                    reqwest::Method::POST,
                    &format!("/api/runs/{}/retry", enc(&id)),
                ))
                .await?;
            if !wait {
                if r.json {
                    crate::out(&pretty(&v));
                } else {
                    crate::out(&format!(
                        "run {id} queued again (attempt {})",
                        v["attempts"].as_u64().unwrap_or(0) + 1
                    ));
                }
                return Ok(exit::OK);
            }
            let after = c
                .get(&format!("/api/runs/{}/events?limit=10000", enc(&id)))
                .await?;
            let last = after["events"]
                .as_array()
                .and_then(|e| e.last())
                .and_then(|e| e["seq"].as_u64())
                .unwrap_or(0);
            follow(&c, &id, last, !r.json, false).await?;
            status(&c, &id, r.json).await
        }
    }
}
