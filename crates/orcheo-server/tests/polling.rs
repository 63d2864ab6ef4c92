//! Polling triggers against a real HTTP source on 127.0.0.1: one run per new item, ETag
//! cursors, credentials, failures recorded without leaking the secret, the SSRF guard, and two
//! servers on one PostgreSQL starting each item once.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use orcheo_server::{Config, Server};
use orcheo_store::Backend;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

both!(
    new_items_start_one_run_each_and_etag_skips_unchanged,
    initial_skip_remembers_what_is_there,
    failures_are_recorded_without_the_secret_and_back_off,
    internal_addresses_need_the_allowlist
);

/// What the source serves and what it was asked.
#[derive(Default)]
struct Source {
    items: Vec<Value>,
    version: u32,
    /// Answer with this status and echo the request's headers (to catch leaks).
    fail: Option<u16>,
    /// Pad the body to this many bytes.
    pad: usize,
    /// Answer with a redirect to this URL.
    redirect: Option<String>,
    requests: Vec<HeaderMap>,
    queries: Vec<String>,
}

type Shared = Arc<Mutex<Source>>;

async fn serve(
    State(src): State<Shared>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut s = src.lock().unwrap();
    s.requests.push(headers.clone());
    s.queries.push(q.unwrap_or_default());
    if let Some(to) = &s.redirect {
        return (StatusCode::FOUND, [("location", to.clone())]).into_response();
    }
    if let Some(code) = s.fail {
        let echo = format!("{headers:?}");
        return (StatusCode::from_u16(code).unwrap(), echo).into_response();
    }
    let etag = format!("\"v{}\"", s.version);
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let body = json!({"data": s.items, "pad": "x".repeat(s.pad)});
    (
        [("etag", etag), ("content-type", "application/json".into())],
        body.to_string(),
    )
        .into_response()
}

async fn source() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/feed", axum::routing::get(serve))
        .with_state(shared.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/feed", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, shared)
}

fn allow_local(c: &mut Config) {
    c.http_allow = vec!["127.0.0.1".into()];
}

async fn runs_of(s: &TestServer, wf: &str) -> Vec<Value> {
    let v = s
        .ok(
            "GET",
            &format!("/api/runs?workflow_id={wf}&limit=500"),
            None,
        )
        .await;
    v["items"].as_array().cloned().unwrap_or_default()
}

async fn poll(s: &TestServer, id: &str) -> Value {
    s.ok("POST", &format!("/api/triggers/{id}/poll"), None)
        .await
}

/// Waits until the scheduled first poll has happened.
async fn first_poll(s: &TestServer, id: &str) -> Value {
    for _ in 0..100 {
        let list = s.ok("GET", "/api/triggers", None).await;
        let t = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .unwrap();
        if t["state"]["last_polled_at"].is_string() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the first poll never happened");
}

async fn new_items_start_one_run_each_and_etag_skips_unchanged(b: Backend) {
    let s = TestServer::start_with(b, allow_local).await;
    let (url, src) = source().await;
    src.lock().unwrap().items = vec![json!({"id": 1, "name": "a"}), json!({"id": 2, "name": "b"})];
    s.push("intake", chain(1)).await;
    let t = s
        .ok(
            "POST",
            "/api/triggers/polling",
            Some(
                json!({"workflow_id": "intake", "url": url, "items": ".data[]", "key": ".id",
                        "initial": "emit", "interval_secs": 3600, "secret": "tok-Secret-123",
                        "auth": {"type": "bearer"}, "input": {"source": "feed"}}),
            ),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["kind"], "polling");
    assert_eq!(t["has_secret"], true);
    assert!(!t.to_string().contains("tok-Secret-123"), "{t}");
    // The row holds the secret sealed by the vault, bound to the trigger.
    let stored = s
        .server
        .as_ref()
        .unwrap()
        .state()
        .store
        .get_trigger(t["id"].as_str().unwrap())
        .await
        .unwrap();
    let sealed = stored.secret.expect("secret");
    assert!(
        sealed.starts_with("v1.") && !sealed.contains("tok-Secret-123"),
        "{sealed}"
    );
    // The server's own loop polls at once; both items start a run.
    let t = first_poll(&s, &id).await;
    assert_eq!(t["state"]["last_status"], 200, "{t}");
    assert_eq!(t["state"]["etag"], "\"v0\"");
    let runs = runs_of(&s, "intake").await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let mut keys: Vec<String> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["origin"]["kind"], "polling");
            assert_eq!(r["origin"]["trigger_id"], id.as_str());
            r["origin"]["item_key"].as_str().unwrap().to_string()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["1", "2"]);
    let run = s
        .ok(
            "GET",
            &format!("/api/runs/{}", runs[0]["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(run["input"]["source"], "feed");
    assert!(run["input"]["item"]["id"].is_number(), "{run}");
    assert_eq!(run["input"]["trigger_id"], id.as_str());
    // Unchanged: the conditional request gets 304 and nothing starts.
    let out = poll(&s, &id).await;
    assert_eq!(out["not_modified"], true, "{out}");
    assert_eq!(out["runs"], json!([]));
    {
        let src = src.lock().unwrap();
        let last = src.requests.last().unwrap();
        assert_eq!(last["if-none-match"], "\"v0\"");
        assert_eq!(last["authorization"], "Bearer tok-Secret-123");
    }
    // A new item (and an old one again): one more run.
    {
        let mut src = src.lock().unwrap();
        src.items.push(json!({"id": 3, "name": "c"}));
        src.version = 1;
    }
    let out = poll(&s, &id).await;
    assert_eq!(out["items"], 3, "{out}");
    assert_eq!(out["new_items"], 1, "{out}");
    assert_eq!(out["runs"].as_array().unwrap().len(), 1);
    // Polling again with the cursor dropped (a new ETag) still starts nothing twice.
    src.lock().unwrap().version = 2;
    let out = poll(&s, &id).await;
    assert_eq!(out["new_items"], 0, "{out}");
    assert_eq!(runs_of(&s, "intake").await.len(), 3);
    for r in runs_of(&s, "intake").await {
        let done = s
            .wait_for(r["id"].as_str().unwrap(), &["completed", "failed"])
            .await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    s.stop().await;
}

async fn initial_skip_remembers_what_is_there(b: Backend) {
    let s = TestServer::start_with(b, allow_local).await;
    let (url, src) = source().await;
    src.lock().unwrap().items = vec![json!({"id": "old-1"}), json!({"id": "old-2"})];
    s.push("skipper", chain(1)).await;
    let t = s
        .ok(
            "POST",
            "/api/triggers/polling",
            Some(
                json!({"workflow_id": "skipper", "url": url, "items": ".data[]",
                        "interval_secs": 3600, "max_items": 2, "secret": "k-999-secret",
                        "auth": {"type": "query", "name": "api_key"}}),
            ),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    let t = first_poll(&s, &id).await;
    assert_eq!(t["state"]["primed"], true, "{t}");
    assert!(
        runs_of(&s, "skipper").await.is_empty(),
        "the first poll only remembers"
    );
    // Three new items and max_items 2: two now, the third on the next poll.
    {
        let mut src = src.lock().unwrap();
        for k in ["n-1", "n-2", "n-3"] {
            src.items.push(json!({"id": k}));
        }
        src.version = 1;
    }
    let out = poll(&s, &id).await;
    assert_eq!(out["new_items"], 3, "{out}");
    assert_eq!(out["runs"].as_array().unwrap().len(), 2, "{out}");
    src.lock().unwrap().version = 2;
    let out = poll(&s, &id).await;
    assert_eq!(out["new_items"], 1, "{out}");
    assert_eq!(out["runs"].as_array().unwrap().len(), 1, "{out}");
    // Without a key, items are told apart by a hash of their content; the old ones never ran.
    let runs = runs_of(&s, "skipper").await;
    assert_eq!(runs.len(), 3);
    let mut ids = Vec::new();
    for r in &runs {
        let run = s
            .ok(
                "GET",
                &format!("/api/runs/{}", r["id"].as_str().unwrap()),
                None,
            )
            .await;
        ids.push(run["input"]["item"]["id"].as_str().unwrap().to_string());
        assert_eq!(run["origin"]["item_key"].as_str().unwrap().len(), 64);
    }
    ids.sort();
    assert_eq!(ids, vec!["n-1", "n-2", "n-3"]);
    let query_auth = src
        .lock()
        .unwrap()
        .requests
        .iter()
        .all(|h| h.get("authorization").is_none());
    assert!(query_auth, "query auth sends no header");
    assert!(src
        .lock()
        .unwrap()
        .queries
        .iter()
        .all(|q| q == "api_key=k-999-secret"));
    let t = s.ok("GET", "/api/triggers", None).await;
    assert!(!t.to_string().contains("k-999-secret"), "{t}");
    s.stop().await;
}

async fn failures_are_recorded_without_the_secret_and_back_off(b: Backend) {
    let s = TestServer::start_with(b, allow_local).await;
    let (url, src) = source().await;
    src.lock().unwrap().fail = Some(503);
    s.push("flaky", chain(1)).await;
    let t = s
        .ok(
            "POST",
            "/api/triggers/polling",
            Some(
                json!({"workflow_id": "flaky", "url": url, "interval_secs": 60,
                        "secret": "pw-Very-Secret", "auth": {"type": "basic", "username": "ops"},
                        "headers": {"X-Tenant": "acme"}}),
            ),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    let t = first_poll(&s, &id).await;
    let state = &t["state"];
    assert_eq!(state["last_status"], 503, "{t}");
    assert_eq!(state["failures"], 1);
    let err = state["last_error"].as_str().unwrap();
    assert!(err.contains("503"), "{err}");
    // The source echoed the request headers; the Basic credential must not be stored.
    let basic = base64_basic("ops", "pw-Very-Secret");
    assert!(!t.to_string().contains(&basic), "{t}");
    assert!(!t.to_string().contains("pw-Very-Secret"), "{t}");
    assert!(
        err.contains("x-tenant"),
        "the echo is there, minus the secret: {err}"
    );
    // Backed off: the next poll is two intervals away.
    let next: chrono::DateTime<chrono::Utc> = serde_json::from_value(t["next_at"].clone()).unwrap();
    let last: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(state["last_polled_at"].clone()).unwrap();
    let gap = (next - last).num_milliseconds();
    assert!((119_000..=120_000).contains(&gap), "{gap} ms: {t}");
    // Too big a response fails too, and a good one clears the error.
    {
        let mut src = src.lock().unwrap();
        src.fail = None;
        src.pad = 2 * 1024 * 1024;
    }
    let out = poll(&s, &id).await;
    assert!(out["error"].is_null(), "5 MiB default is enough: {out}");
    let small = s
        .ok(
            "POST",
            "/api/triggers/polling",
            Some(json!({"workflow_id": "flaky", "url": url, "max_bytes": 4096, "interval_secs": 3600})),
        )
        .await;
    let out = poll(&s, small["id"].as_str().unwrap()).await;
    assert!(
        out["error"].as_str().unwrap_or("").contains("max_bytes"),
        "{out}"
    );
    let t = s.ok("GET", "/api/triggers", None).await;
    let flaky = t
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert_eq!(flaky["state"]["failures"], 0, "{flaky}");
    assert!(flaky["state"]["last_error"].is_null());
    assert_eq!(src.lock().unwrap().requests[0]["x-tenant"], "acme");
    s.stop().await;
}

fn base64_basic(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
}

async fn internal_addresses_need_the_allowlist(b: Backend) {
    // No allowlist: loopback and the cloud metadata address are refused up front…
    let s = TestServer::start(b).await;
    s.push("ssrf", chain(1)).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://10.0.0.8/",
        "file:///etc/passwd",
    ] {
        let (st, p) = s
            .call(
                "POST",
                "/api/triggers/polling",
                Some(json!({"workflow_id": "ssrf", "url": url})),
            )
            .await;
        assert_eq!(st, 422, "{url}: {p}");
    }
    let (_, p) = s
        .call(
            "POST",
            "/api/triggers/polling",
            Some(json!({"workflow_id": "ssrf", "url": "http://169.254.169.254/"})),
        )
        .await;
    assert!(
        p["detail"].as_str().unwrap().contains("ORCHEO_HTTP_ALLOW"),
        "{p}"
    );
    // …and a name that resolves to loopback is refused when it is polled.
    let t = s
        .ok(
            "POST",
            "/api/triggers/polling",
            Some(json!({"workflow_id": "ssrf", "url": "http://localhost:9/x", "interval_secs": 3600})),
        )
        .await;
    let out = poll(&s, t["id"].as_str().unwrap()).await;
    let e = out["error"].as_str().unwrap_or("");
    assert!(e.contains("refused") && e.contains("loopback"), "{out}");
    s.stop().await;
    // With 127.0.0.1 allowed, a redirect to another internal address is still refused.
    let s = TestServer::start_with(b, allow_local).await;
    let (url, src) = source().await;
    src.lock().unwrap().redirect = Some("http://169.254.169.254/latest/meta-data/".into());
    s.push("ssrf", chain(1)).await;
    let t = s
        .ok(
            "POST",
            "/api/triggers/polling",
            Some(json!({"workflow_id": "ssrf", "url": url, "interval_secs": 3600})),
        )
        .await;
    let out = poll(&s, t["id"].as_str().unwrap()).await;
    let e = out["error"].as_str().unwrap_or("");
    assert!(
        e.contains("169.254.169.254") && e.contains("link-local"),
        "{out}"
    );
    assert!(runs_of(&s, "ssrf").await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_polling_at_once_start_each_item_once() {
    let dir = std::env::temp_dir().join(format!("orcheo-poll2-{}", uuid::Uuid::new_v4()));
    let url = orcheo_store::testing::fresh_postgres_url()
        .await
        .expect("pg");
    let cfg = |sub: &str| Config {
        port: 0,
        data_dir: dir.join(sub),
        database_url: Some(url.clone()),
        // Servers on one database share the vault key.
        vault_key_file: Some(dir.join("vault.key")),
        http_allow: vec!["127.0.0.1".into()],
        ..Config::default()
    };
    let (a, welcome) = Server::start(cfg("a")).await.expect("a");
    let (b, _) = Server::start(cfg("b")).await.expect("b");
    let key = welcome.admin_key.expect("key");
    let http = reqwest::Client::new();
    let (feed, src) = source().await;
    let call = |base: String, path: &str, body: Option<Value>| {
        let mut r = http.post(format!("{base}{path}")).bearer_auth(&key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            r.send()
                .await
                .expect("send")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    call(
        a.url(),
        "/api/workflows",
        Some(json!({"id": "both", "document": chain(1)})),
    )
    .await;
    let t = call(
        a.url(),
        "/api/triggers/polling",
        Some(
            json!({"workflow_id": "both", "url": feed, "items": ".data[]", "key": ".id",
                    "interval_secs": 3600, "conditional": false}),
        ),
    )
    .await;
    let id = t["id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Ten rounds: each adds an item, then both servers poll at the same moment.
    for i in 0..10 {
        src.lock().unwrap().items.push(json!({"id": i}));
        let path = format!("/api/triggers/{id}/poll");
        let (x, y) = tokio::join!(call(a.url(), &path, None), call(b.url(), &path, None));
        assert!(x["error"].is_null() && y["error"].is_null(), "{x} {y}");
    }
    let runs: Value = http
        .get(format!("{}/api/runs?workflow_id=both&limit=500", b.url()))
        .bearer_auth(&key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let mut keys: Vec<String> = runs["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["origin"]["item_key"].as_str().unwrap_or("").to_string())
        .collect();
    keys.sort();
    let mut want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    want.sort();
    assert_eq!(keys, want, "each item started exactly one run");
    a.shutdown().await.expect("a");
    b.shutdown().await.expect("b");
    let _ = std::fs::remove_dir_all(&dir);
}
