//! `orcheo serve` as a real subprocess, killed with SIGKILL in the middle of 50 runs and
//! started again: every run finishes with the right result and each node's side effect (a
//! line appended to a file by `write_file`) happens exactly once per run. Also: the server's
//! log never holds an API key or its hash.

mod support;

use orcheo_store::Backend;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

const RUNS: usize = 50;

fn serve(data: &Path, files: &Path, db: Option<&str>, log: &Path) -> Serve {
    let files = files.to_str().expect("files dir");
    serve_in(
        data,
        db,
        &[("ORCHEO_FILES_DIR", files), ("ORCHEO_LEASE_TTL_SECS", "2")],
        Some(log),
    )
}

fn workflow() -> Value {
    json!({"format": "orcheo.workflow/1", "name": "crash test",
    "nodes": [
        {"id": "mark_a", "type": "write_file", "config": {"path": "effects.log", "content": "{{ input.n }} a"}},
        {"id": "wait", "type": "delay", "config": {"duration": "2500ms"}},
        {"id": "mark_b", "type": "write_file", "config": {"path": "effects.log", "content": "{{ input.n }} b"}},
        {"id": "result", "type": "set_variables", "config": {"values": {"doubled": "{{ input.n * 2 }}"}}}
    ],
    "edges": [
        {"source": "__start__", "target": "mark_a"}, {"source": "mark_a", "target": "wait"},
        {"source": "wait", "target": "mark_b"}, {"source": "mark_b", "target": "result"},
        {"source": "result", "target": "__end__"}
    ]})
}

async fn call(
    http: &reqwest::Client,
    s: &Serve,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut b = http
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(key);
    if let Some(body) = body {
        b = b.json(&body);
    }
    let res = b.send().await.expect("request");
    let st = res.status();
    let v: Value = res.json().await.expect("json");
    assert!(st.is_success(), "{path} → {st}: {v}");
    v
}

async fn crash_and_resume(backend: Backend) {
    let tmp = std::env::temp_dir().join(format!("orcheo-crash-{}", uuid_like()));
    let data = tmp.join("data");
    let files = tmp.join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let log = tmp.join("server.log");
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(
            orcheo_store::testing::fresh_postgres_url()
                .await
                .expect("pg"),
        ),
    };
    let http = reqwest::Client::new();
    let mut first = serve(&data, &files, db.as_deref(), &log);
    assert!(
        !first.key.is_empty(),
        "the first start prints the admin key"
    );
    let key = first.key.clone();
    call(
        &http,
        &first,
        &key,
        reqwest::Method::POST,
        "/api/workflows",
        Some(json!({"id": "crash", "document": workflow()})),
    )
    .await;
    let mut runs = Vec::new();
    for n in 0..RUNS {
        let v = call(
            &http,
            &first,
            &key,
            reqwest::Method::POST,
            "/api/runs",
            Some(json!({"workflow_id": "crash", "input": {"n": n}})),
        )
        .await;
        runs.push((n, v["id"].as_str().expect("id").to_string()));
    }
    // Wait until every run has finished its first node (its completion is stored), so the kill
    // lands while all of them sit in the delay.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = 0;
        for (_, id) in &runs {
            let evs = call(
                &http,
                &first,
                &key,
                reqwest::Method::GET,
                &format!("/api/runs/{id}/events"),
                None,
            )
            .await;
            if evs["events"]
                .as_array()
                .expect("events")
                .iter()
                .any(|e| e["type"] == "node_completed" && e["node"] == "mark_a")
            {
                ready += 1;
            }
        }
        if ready == RUNS {
            break;
        }
        assert!(Instant::now() < deadline, "runs did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");

    let second = serve(&data, &files, db.as_deref(), &log);
    assert!(second.key.is_empty(), "no new admin key on a later start");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut interrupted = 0;
    for (n, id) in &runs {
        let run = loop {
            let v = call(
                &http,
                &second,
                &key,
                reqwest::Method::GET,
                &format!("/api/runs/{id}"),
                None,
            )
            .await;
            if v["status"] == "completed" || v["status"] == "failed" {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} did not finish after the restart: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["output"]["state"]["doubled"], json!(n * 2));
        if run["attempts"].as_u64() == Some(2) {
            interrupted += 1;
        }
        let evs = call(
            &http,
            &second,
            &key,
            reqwest::Method::GET,
            &format!("/api/runs/{id}/events?limit=10000"),
            None,
        )
        .await;
        let evs = evs["events"].as_array().expect("events").clone();
        let seqs: Vec<u64> = evs.iter().filter_map(|e| e["seq"].as_u64()).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "run {id}: events continue without gaps or repeats"
        );
        assert!(
            evs.iter()
                .any(|e| e["type"] == "run_started" && e["resumed_from"].is_u64()),
            "run {id} was resumed"
        );
    }
    assert_eq!(
        interrupted, RUNS,
        "every run was interrupted by the kill and taken over"
    );
    // Each side effect exactly once per run.
    let text = std::fs::read_to_string(files.join("effects.log")).expect("effects");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.to_string()).or_default() += 1;
    }
    for n in 0..RUNS {
        assert_eq!(counts.get(&format!("{n} a")), Some(&1), "mark_a of run {n}");
        assert_eq!(counts.get(&format!("{n} b")), Some(&1), "mark_b of run {n}");
    }
    assert_eq!(counts.len(), RUNS * 2);

    // The log never carries a key or its hash (it does carry request lines and run ids).
    let extra = call(
        &http,
        &second,
        &key,
        reqwest::Method::POST,
        "/api/api-keys",
        Some(json!({"name": "ci", "scopes": ["runs:read"]})),
    )
    .await;
    let extra_key = extra["secret_once"].as_str().expect("secret").to_string();
    call(
        &http,
        &second,
        &extra_key,
        reqwest::Method::GET,
        "/api/runs",
        None,
    )
    .await;
    let _ = http
        .get(format!("{}/api/runs", second.base))
        .bearer_auth("ok_AAAAAAAA_notakey")
        .send()
        .await;
    let mut second = second;
    second.child.kill().expect("kill");
    second.child.wait().expect("reaped");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("/api/runs"), "the log records requests");
    for secret in [&key, &extra_key, &"ok_AAAAAAAA_notakey".to_string()] {
        assert!(
            !logged.contains(secret.as_str()),
            "a key leaked into the log"
        );
        assert!(
            !logged.contains(&orcheo_store::hash_secret(secret)),
            "a key hash leaked into the log"
        );
        let secret_part = secret.rsplit('_').next().unwrap_or("");
        assert!(
            !logged.contains(secret_part),
            "a key's secret part leaked into the log"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_mid_run_resumes_every_run_once() {
    crash_and_resume(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_mid_run_resumes_every_run_once() {
    crash_and_resume(Backend::Postgres).await;
}
