//! The HTTP Request node against a real server on 127.0.0.1: bodies, statuses, retries with
//! Retry-After, pagination, the size cap, redirects, timeouts, and the SSRF guard (literal IPs,
//! names that resolve inward, redirects inward).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orcheo_core::checkpoint::{MemoryCheckpointer, RunStatus};
use orcheo_core::engine::{Engine, RunOptions, RunOutcome};
use orcheo_core::node::Catalog;
use orcheo_core::Workflow;
use orcheo_nodes::net::GuardedClient;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Counters {
    flaky: AtomicUsize,
    slow_limit: AtomicUsize,
}

type S = Arc<Counters>;

async fn echo(
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let h: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    axum::Json(json!({"headers": h, "query": q, "body": String::from_utf8_lossy(&body)}))
        .into_response()
}

async fn flaky(State(s): State<S>) -> Response {
    // 503 with Retry-After: 0 twice, then 200.
    if s.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            "busy",
        )
            .into_response()
    } else {
        axum::Json(json!({"ok": true})).into_response()
    }
}

async fn limited(State(s): State<S>) -> Response {
    s.slow_limit.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("retry-after", "120")],
        "slow down",
    )
        .into_response()
}

async fn pages(Query(q): Query<HashMap<String, String>>) -> Response {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let items: Vec<usize> = if page <= 3 {
        vec![page * 10, page * 10 + 1]
    } else {
        vec![]
    };
    axum::Json(json!({"data": items})).into_response()
}

async fn cursor(Query(q): Query<HashMap<String, String>>) -> Response {
    let (items, next) = match q.get("cursor").map(String::as_str) {
        None => (vec!["a", "b"], json!("c2")),
        Some("c2") => (vec!["c"], json!("c3")),
        Some("c3") => (vec!["d"], Value::Null),
        _ => (vec![], Value::Null),
    };
    axum::Json(json!({"data": items, "next_cursor": next})).into_response()
}

async fn linked(headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let n: usize = q.get("n").and_then(|p| p.parse().ok()).unwrap_or(1);
    let mut res = axum::Json(json!([n])).into_response();
    if n < 3 {
        let link = format!("<http://{host}/linked?n={}>; rel=\"next\"", n + 1);
        res.headers_mut().insert("link", link.parse().unwrap());
    }
    res
}

async fn big() -> Response {
    "x".repeat(64 * 1024).into_response()
}

async fn slow() -> Response {
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    "late".into_response()
}

async fn server() -> (String, S) {
    let s: S = Arc::default();
    let app = axum::Router::new()
        .route("/echo", axum::routing::any(echo))
        .route("/flaky", axum::routing::get(flaky))
        .route("/limited", axum::routing::get(limited))
        .route("/pages", axum::routing::get(pages))
        .route("/cursor", axum::routing::get(cursor))
        .route("/linked", axum::routing::get(linked))
        .route("/big", axum::routing::get(big))
        .route("/slow", axum::routing::get(slow))
        .route(
            "/not-found",
            axum::routing::get(|| async { (StatusCode::NOT_FOUND, "nope") }),
        )
        .route(
            "/to-echo",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/echo") }),
        )
        .route(
            "/to-metadata",
            axum::routing::get(|| async {
                axum::response::Redirect::temporary("http://169.254.169.254/latest/meta-data/")
            }),
        )
        .with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, s)
}

fn engine(allow: &[&str]) -> Engine {
    let mut c: Catalog = orcheo_nodes::catalog();
    c.register(orcheo_nodes::HttpRequest::new(
        GuardedClient::from_allowlist(allow).unwrap(),
    ));
    Engine::builder(Arc::new(c))
        .checkpointer(Arc::new(MemoryCheckpointer::new()))
        .build()
}

async fn call(e: &Engine, config: Value) -> RunOutcome {
    let doc: Workflow = serde_json::from_value(json!({
        "format": "orcheo.workflow/1", "name": "t",
        "nodes": [{"id": "n", "type": "http_request", "config": config}],
        "edges": [{"source": "__start__", "target": "n"}, {"source": "n", "target": "__end__"}]
    }))
    .unwrap();
    let wf = e.compile(doc).unwrap_or_else(|p| panic!("{p:#?}"));
    e.start(&wf, json!({}), RunOptions::default())
        .await
        .unwrap()
}

fn out(o: &RunOutcome) -> &Value {
    assert_eq!(o.status, RunStatus::Completed, "{:?}", o.error);
    &o.results["n"]
}

fn err(o: &RunOutcome) -> (String, String) {
    assert_eq!(o.status, RunStatus::Failed, "{:?}", o.results);
    let e = o.error.as_ref().unwrap();
    (e.kind.clone(), e.message.clone())
}

#[tokio::test]
async fn bodies_queries_and_headers_arrive() {
    let (url, _) = server().await;
    let e = engine(&["127.0.0.1"]);
    let o = call(
        &e,
        json!({"method": "post", "url": format!("{url}/echo"), "query": {"q": "a b", "n": 2},
                            "headers": {"X-Trace": "t-1"}, "json": {"k": [1, 2]}}),
    )
    .await;
    let b = &out(&o)["body"];
    assert_eq!(b["query"]["q"], "a b");
    assert_eq!(b["query"]["n"], "2");
    assert_eq!(b["headers"]["x-trace"], "t-1");
    assert_eq!(b["headers"]["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(b["body"].as_str().unwrap()).unwrap(),
        json!({"k": [1, 2]})
    );
    let o = call(
        &e,
        json!({"method": "POST", "url": format!("{url}/echo"), "form": {"a": "1 2", "b": true}}),
    )
    .await;
    let b = &out(&o)["body"];
    assert_eq!(
        b["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(b["body"], "a=1+2&b=true");
    let o = call(
        &e,
        json!({"method": "POST", "url": format!("{url}/echo"), "multipart": [
        {"name": "note", "value": "hello"},
        {"name": "file", "base64": "aGk=", "filename": "hi.txt", "content_type": "text/plain"}]}),
    )
    .await;
    let b = &out(&o)["body"];
    assert!(b["headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    let text = b["body"].as_str().unwrap();
    assert!(
        text.contains("name=\"note\"") && text.contains("hello"),
        "{text}"
    );
    assert!(
        text.contains("filename=\"hi.txt\"") && text.contains("\r\nhi\r\n"),
        "{text}"
    );
    let o = call(&e, json!({"method": "PUT", "url": format!("{url}/echo"), "body": "<x/>", "content_type": "application/xml"})).await;
    let b = &out(&o)["body"];
    assert_eq!(b["headers"]["content-type"], "application/xml");
    assert_eq!(b["body"], "<x/>");
    let o = call(
        &e,
        json!({"url": format!("{url}/echo"), "response": "bytes"}),
    )
    .await;
    assert!(
        out(&o)["body"].as_str().unwrap().starts_with("eyJ"),
        "base64 of a JSON object"
    );
    let o = call(
        &e,
        json!({"url": format!("{url}/echo"), "json": {}, "form": {}}),
    )
    .await;
    assert!(err(&o).1.contains("give one body"));
}

#[tokio::test]
async fn statuses_retries_and_retry_after() {
    let (url, s) = server().await;
    let e = engine(&["127.0.0.1"]);
    let o = call(&e, json!({"url": format!("{url}/flaky")})).await;
    assert_eq!(out(&o)["body"]["ok"], true);
    assert_eq!(s.flaky.load(Ordering::SeqCst), 3, "two 503s retried");
    let (kind, msg) = err(&call(&e, json!({"url": format!("{url}/not-found")})).await);
    assert_eq!(kind, "http_4xx");
    assert!(msg.contains("404") && msg.contains("nope"), "{msg}");
    let o = call(
        &e,
        json!({"url": format!("{url}/not-found"), "fail_on_status": false}),
    )
    .await;
    assert_eq!(out(&o)["status"], 404);
    // Retry-After longer than allowed: fail at once, and say why.
    let (kind, msg) = err(&call(
        &e,
        json!({"url": format!("{url}/limited"), "max_retry_wait_ms": 1000}),
    )
    .await);
    assert_eq!(kind, "http_429");
    assert!(msg.contains("Retry-After asks for 120 s"), "{msg}");
    assert_eq!(s.slow_limit.load(Ordering::SeqCst), 1);
    let (kind, _) = err(&call(
        &e,
        json!({"url": format!("{url}/slow"), "timeout_ms": 200, "retries": 0}),
    )
    .await);
    assert_eq!(kind, "timeout");
    let (kind, msg) = err(&call(
        &e,
        json!({"url": "http://127.0.0.1:9/closed", "retries": 1}),
    )
    .await);
    assert_eq!(kind, "http_connection", "{msg}");
}

#[tokio::test]
async fn pagination_collects_every_page() {
    let (url, _) = server().await;
    let e = engine(&["127.0.0.1"]);
    let o = call(&e, json!({"url": format!("{url}/pages"), "pagination": {"mode": "page", "param": "page", "items": ".data"}})).await;
    assert_eq!(out(&o)["items"], json!([10, 11, 20, 21, 30, 31]));
    assert_eq!(out(&o)["pages"], 4, "the empty fourth page ends it");
    let o = call(&e, json!({"url": format!("{url}/cursor"), "pagination": {"mode": "cursor", "cursor": ".next_cursor", "param": "cursor", "items": ".data"}})).await;
    assert_eq!(out(&o)["items"], json!(["a", "b", "c", "d"]));
    let o = call(
        &e,
        json!({"url": format!("{url}/linked"), "pagination": {"mode": "next_link"}}),
    )
    .await;
    assert_eq!(out(&o)["items"], json!([1, 2, 3]));
    let o = call(&e, json!({"url": format!("{url}/pages"), "pagination": {"mode": "page", "param": "page", "items": ".data", "max_pages": 2}})).await;
    assert_eq!(out(&o)["items"], json!([10, 11, 20, 21]));
}

#[tokio::test]
async fn size_cap_and_redirects() {
    let (url, _) = server().await;
    let e = engine(&["127.0.0.1"]);
    let (kind, msg) = err(&call(
        &e,
        json!({"url": format!("{url}/big"), "max_response_bytes": 1024}),
    )
    .await);
    assert_eq!(kind, "http_too_large", "{msg}");
    let o = call(&e, json!({"url": format!("{url}/to-echo")})).await;
    assert!(out(&o)["body"]["headers"].is_object(), "followed");
    let o = call(
        &e,
        json!({"url": format!("{url}/to-echo"), "follow_redirects": false}),
    )
    .await;
    assert_eq!(out(&o)["status"], 307);
    assert_eq!(out(&o)["headers"]["location"], "/echo");
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowlisted() {
    let (url, _) = server().await;
    let port = url.rsplit(':').next().unwrap().to_string();
    let closed = engine(&[]);
    for target in [
        format!("{url}/echo"),
        format!("http://localhost:{port}/echo"),
        "http://10.1.2.3/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/".to_string(),
    ] {
        let (kind, msg) = err(&call(&closed, json!({"url": target, "retries": 0})).await);
        assert!(
            kind == "http_refused" || kind == "http_connection",
            "{target}: {kind} {msg}"
        );
        assert!(
            msg.contains("refused") && msg.contains("ORCHEO_HTTP_ALLOW"),
            "{target}: {msg}"
        );
    }
    // Allowed 127.0.0.1 only: a redirect to the metadata address is still refused.
    let open = engine(&["127.0.0.1"]);
    let (_, msg) = err(&call(
        &open,
        json!({"url": format!("{url}/to-metadata"), "retries": 0}),
    )
    .await);
    assert!(
        msg.contains("169.254.169.254") && msg.contains("link-local"),
        "{msg}"
    );
    // A name is checked by what it resolves to, at connect time: localhost is loopback.
    let o = call(
        &open,
        json!({"url": format!("http://localhost:{port}/echo"), "retries": 0}),
    )
    .await;
    match o.status {
        RunStatus::Completed => {}
        _ => {
            // localhost may also resolve to ::1, which is not allowed: refused as a whole.
            let (_, msg) = err(&o);
            assert!(msg.contains("::1"), "{msg}");
        }
    }
}
