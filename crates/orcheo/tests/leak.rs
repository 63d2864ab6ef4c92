//! The secret leak test: a real `orcheo serve` (SQLite, then PostgreSQL) runs a workflow whose
//! nodes send a vault credential to a local service that echoes it back in the response and in
//! an error, copy the echo into state, log it, and fail with it, in debug mode. Afterwards the
//! database (the SQLite files, or every PostgreSQL table), the server log, the event stream and
//! every API response are searched for the secret, raw, base64 and URL-encoded: it is nowhere.

mod support;

use orcheo_store::Backend;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// Characters that differ in every encoding: `/`, `+`, `=`, `&`, `%`.
const SECRET: &str = "sk_live/Zq8+Lw=&x9%QpR7";

/// A service on 127.0.0.1 that echoes the Authorization header: `/echo` in a JSON body (raw,
/// base64 and URL-encoded), `/fail` in a 500 answer. Records what it received.
fn echo_service() -> (String, Arc<Mutex<Vec<String>>>) {
    http_service(|head| {
        let auth = header(head, "authorization").unwrap_or_default();
        let token = auth.trim_start_matches("Bearer ").to_string();
        if head.starts_with("GET /fail") {
            (
                "500 Internal Server Error".into(),
                format!("denied for {auth}"),
            )
        } else {
            (
                "200 OK".into(),
                json!({"auth": auth, "b64": b64(&token), "url": url_encode(&token)}).to_string(),
            )
        }
    })
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The forms the secret must not appear in.
fn forms() -> Vec<String> {
    let b = b64(SECRET);
    vec![
        SECRET.to_string(),
        b.clone(),
        b.trim_end_matches('=').to_string(),
        b.replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_string(),
        url_encode(SECRET),
        url_encode(SECRET).to_lowercase(),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for f in forms() {
        assert!(
            !text.contains(&f),
            "the secret (as `{f}`) leaked into {what}"
        );
    }
}

async fn call(
    http: &reqwest::Client,
    s: &Serve,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut b = http
        .request(m, format!("{}{path}", s.base))
        .bearer_auth(&s.key);
    if let Some(body) = body {
        b = b.json(&body);
    }
    let res = b.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.text().await.expect("body"))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn leak_test(backend: Backend) {
    let tmp = std::env::temp_dir().join(format!("orcheo-leak-{}", uuid::Uuid::new_v4()));
    let data = tmp.join("data");
    let log = tmp.join("server.log");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(
            orcheo_store::testing::fresh_postgres_url()
                .await
                .expect("postgres"),
        ),
    };
    let s = serve_in(
        &data,
        db.as_deref(),
        &[("ORCHEO_HTTP_ALLOW", "127.0.0.1")],
        Some(&log),
    );
    let http = reqwest::Client::new();
    let (echo, seen) = echo_service();
    let mut responses: Vec<(String, String)> = Vec::new();

    let (st, body) = call(
        &http,
        &s,
        "POST",
        "/api/credentials",
        Some(json!({"name": "echo-api", "type": "bearer", "data": {"token": SECRET}})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    responses.push(("create credential".into(), body));
    // A bad request that carries the secret where a map belongs: the error must not echo it.
    let (st, body) = call(
        &http,
        &s,
        "POST",
        "/api/credentials",
        Some(json!({"name": "bad", "type": "bearer", "data": SECRET})),
    )
    .await;
    assert_eq!(st, 422, "{body}");
    responses.push(("a refused credential".into(), body));

    let doc = json!({"format": "orcheo.workflow/1", "name": "leaky",
    "nodes": [
        {"id": "call", "type": "http_request", "config": {"url": format!("{echo}/echo")},
         "credentials": {"auth": "echo-api"}},
        {"id": "keep", "type": "set_variables", "config": {"values": {
            "copied": "{{ results.call.body.auth }}", "b64": "{{ results.call.body.b64 }}",
            "url": "{{ results.call.body.url }}"}}},
        {"id": "note", "type": "debug", "config": {"message": "echo said {{ state.copied }}", "value": "{{ results.call.body }}"}},
        {"id": "boom", "type": "http_request", "config": {"url": format!("{echo}/fail")},
         "credentials": {"auth": "echo-api"}}
    ],
    "edges": [
        {"source": "__start__", "target": "call"}, {"source": "call", "target": "keep"},
        {"source": "keep", "target": "note"}, {"source": "note", "target": "boom"},
        {"source": "boom", "target": "__end__"}
    ]});
    let (st, body) = call(
        &http,
        &s,
        "POST",
        "/api/workflows",
        Some(json!({"id": "leaky", "document": doc})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = call(
        &http,
        &s,
        "POST",
        "/api/runs",
        Some(json!({"workflow_id": "leaky", "input": {}, "debug": true})),
    )
    .await;
    assert!(st < 300, "{body}");
    let run: Value = serde_json::from_str(&body).expect("json");
    let id = run["id"].as_str().expect("id").to_string();
    let mut status = String::new();
    for _ in 0..300 {
        let (_, body) = call(&http, &s, "GET", &format!("/api/runs/{id}"), None).await;
        let v: Value = serde_json::from_str(&body).expect("json");
        status = v["status"].as_str().unwrap_or("").to_string();
        if status == "failed" || status == "completed" {
            responses.push(("the run".into(), body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, "failed",
        "the last node fails with the echoed secret"
    );
    // The service really received the secret, and the run really saw its echo (masked).
    assert!(
        seen.lock()
            .expect("seen")
            .iter()
            .any(|h| h.contains(SECRET)),
        "the credential reached the service"
    );
    for path in [
        format!("/api/runs/{id}/events?limit=10000"),
        format!("/api/runs/{id}/checkpoints"),
        "/api/dead-letters".to_string(),
        "/api/credentials".to_string(),
        "/api/audit?limit=1000".to_string(),
        "/api/runs?workflow_id=leaky".to_string(),
    ] {
        let (st, body) = call(&http, &s, "GET", &path, None).await;
        assert_eq!(st, 200, "{path}: {body}");
        responses.push((path, body));
    }
    let cps: Value = serde_json::from_str(
        &responses
            .iter()
            .find(|(p, _)| p.ends_with("/checkpoints"))
            .expect("cps")
            .1,
    )
    .expect("json");
    for cp in cps.as_array().into_iter().flatten() {
        let n = cp["id"]
            .as_u64()
            .or_else(|| cp["checkpoint"].as_u64())
            .unwrap_or(0);
        let (_, body) = call(
            &http,
            &s,
            "GET",
            &format!("/api/runs/{id}/checkpoints/{n}"),
            None,
        )
        .await;
        responses.push((format!("checkpoint {n}"), body));
    }
    // The live stream, replayed from the start.
    let sse = http
        .get(format!("{}/api/runs/{id}/stream", s.base))
        .bearer_auth(&s.key)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("stream");
    let sse = sse.text().await.unwrap_or_default();
    assert!(
        sse.contains("node_log"),
        "the stream carried the run: {sse}"
    );
    responses.push(("the event stream".into(), sse));
    let events = &responses
        .iter()
        .find(|(p, _)| p.contains("/events"))
        .expect("events")
        .1;
    assert!(
        events.contains("***"),
        "the echo is there, masked: {events}"
    );
    assert!(events.contains("node_input"), "debug mode recorded inputs");
    for (what, body) in &responses {
        assert_clean(what, body);
    }

    drop(s);
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(
        log_text.contains("leaky") || log_text.len() > 100,
        "the log has content"
    );
    assert_clean("the server log", &log_text);
    match &db {
        None => {
            let files = files_under(&data);
            assert!(
                files
                    .iter()
                    .any(|p| p.to_string_lossy().contains("orcheo.db")),
                "{files:?}"
            );
            for f in files {
                let bytes = std::fs::read(&f).expect("read");
                assert_clean(&f.display().to_string(), &String::from_utf8_lossy(&bytes));
            }
        }
        Some(url) => {
            let out = Command::new("pg_dump")
                .args(["--data-only", "--no-owner", url])
                .output()
                .expect("pg_dump");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dump = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                dump.contains("credential_versions"),
                "the dump covers the vault tables"
            );
            assert_clean("the PostgreSQL tables", &dump);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaks_on_sqlite() {
    leak_test(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaks_on_postgres() {
    leak_test(Backend::Postgres).await;
}
