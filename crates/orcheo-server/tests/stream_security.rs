//! Live streams (SSE and WebSocket) resumed after disconnects; auth and scopes on every
//! route of the OpenAPI document; the document covering every route.

mod common;

use common::*;
use futures::StreamExt;
use orcheo_store::Backend;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

both!(
    sse_reconnects_without_gaps_or_duplicates,
    websocket_resumes_after_seq,
    every_route_checks_its_key_and_scope
);

/// A workflow that emits many events slowly: a loop of `n` steps with a short delay each.
fn ticker(n: u32) -> Value {
    json!({"format": "orcheo.workflow/1", "name": "ticker",
        "state": {"i": {"default": 0}},
        "nodes": [{"id": "tick", "type": "set_variables", "config": {"values": {"i": "{{ state.i + 1 }}"}}},
                  {"id": "pause", "type": "delay", "config": {"duration": "15ms"}}],
        "edges": [{"source": "__start__", "target": "tick"}, {"source": "tick", "target": "pause"},
                  {"source": "pause", "target": "tick", "condition": format!("{{{{ state.i < {n} }}}}")},
                  {"source": "pause", "target": "__end__", "kind": "else"}]})
}

/// Reads SSE events until `max` arrived or the stream ended; returns (seq, type) pairs.
async fn read_sse(
    s: &TestServer,
    run: &str,
    last_id: Option<u64>,
    max: usize,
) -> (Vec<(u64, String)>, bool) {
    let mut req = s
        .http
        .get(s.url(&format!("/api/runs/{run}/stream")))
        .bearer_auth(&s.admin);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let res = req.send().await.expect("stream");
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let mut body = res.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let (mut id, mut data) = (None, String::new());
    while out.len() < max {
        let Some(chunk) = body.next().await else {
            return (out, true);
        };
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(i) = buf.find('\n') {
            let line = buf[..i].to_string();
            buf.drain(..=i);
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse::<u64>().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                let e: Value = serde_json::from_str(&data).expect("event json");
                assert_eq!(
                    Some(e["seq"].as_u64().expect("seq")),
                    id,
                    "SSE id is the sequence number"
                );
                out.push((
                    e["seq"].as_u64().unwrap_or(0),
                    e["type"].as_str().unwrap_or("").to_string(),
                ));
                data.clear();
                if out.len() >= max {
                    break;
                }
            }
        }
    }
    (out, false)
    // Dropping the body here disconnects mid-run.
}

async fn sse_reconnects_without_gaps_or_duplicates(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("ticker", ticker(25)).await;
    let run = s.start_run("ticker", json!({})).await;
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut last = None;
    let mut ended = false;
    let mut connections = 0;
    while !ended {
        connections += 1;
        assert!(connections < 200, "the stream never ended");
        let (got, closed) = read_sse(&s, &run, last, 7).await;
        if let Some((seq, _)) = got.last() {
            last = Some(*seq);
        }
        ended = got.iter().any(|(_, t)| t == "run_completed") || (closed && got.is_empty());
        seen.extend(got);
    }
    assert!(
        connections > 3,
        "the test disconnected several times mid-run"
    );
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every event once, in order"
    );
    let stored = s.events(&run).await;
    assert_eq!(
        stored.len(),
        seen.len(),
        "the stream saw exactly the stored history"
    );
    assert_eq!(seen.last().map(|(_, t)| t.as_str()), Some("run_completed"));
    // ?after= works too, and a finished run's stream ends by itself.
    let (tail, closed) = read_sse_after(&s, &run, seqs.len() as u64 - 2).await;
    assert!(closed);
    assert_eq!(
        tail.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![seqs.len() as u64 - 1, seqs.len() as u64]
    );
    s.stop().await;
}

async fn read_sse_after(s: &TestServer, run: &str, after: u64) -> (Vec<(u64, String)>, bool) {
    let res = s
        .http
        .get(s.url(&format!("/api/runs/{run}/stream?after={after}")))
        .bearer_auth(&s.admin)
        .send()
        .await
        .expect("stream");
    let text = tokio::time::timeout(Duration::from_secs(10), res.text())
        .await
        .expect("ends")
        .expect("text");
    let evs: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str::<Value>(d.trim()).expect("json"))
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or(0),
                e["type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (evs, true)
}

async fn websocket_resumes_after_seq(b: Backend) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let s = TestServer::start(b).await;
    s.push("ticker", ticker(15)).await;
    let run = s.start_run("ticker", json!({})).await;
    let mut seen: Vec<u64> = Vec::new();
    let mut done = false;
    let mut rounds = 0;
    while !done {
        rounds += 1;
        assert!(rounds < 100);
        let after = seen.last().copied().unwrap_or(0);
        let url = s
            .url(&format!("/api/runs/{run}/ws?after={after}"))
            .replace("http://", "ws://");
        let mut req = url.into_client_request().expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", s.admin).parse().expect("header"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("connect");
        let mut n = 0;
        while let Some(msg) = ws.next().await {
            match msg.expect("message") {
                Message::Text(t) => {
                    let e: Value = serde_json::from_str(&t).expect("json");
                    seen.push(e["seq"].as_u64().expect("seq"));
                    if e["type"] == "run_completed" {
                        done = true;
                    }
                    n += 1;
                    if n == 5 {
                        break; // Disconnect mid-run.
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        drop(ws);
    }
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>());
    assert_eq!(s.events(&run).await.len(), seen.len());
    s.stop().await;
}

/// (method, path with placeholders filled, scope needed or None for public)
fn operations(doc: &Value) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let sec = op
                .get("security")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let public = sec
                .iter()
                .any(|s| s.as_object().is_some_and(|o| o.is_empty()));
            let scope = sec
                .iter()
                .filter_map(|s| s.get("api_key"))
                .filter_map(Value::as_array)
                .flat_map(|a| a.iter().filter_map(Value::as_str).map(String::from))
                .next();
            assert!(
                public || !sec.is_empty(),
                "{method} {path} declares no security"
            );
            let filled = path
                .replace("{id}", "x")
                .replace("{version}", "1")
                .replace("{checkpoint}", "0")
                .replace("{token}", "x");
            out.push((
                method.to_uppercase(),
                filled,
                if public {
                    None
                } else {
                    Some(scope.unwrap_or_default())
                },
            ));
        }
    }
    out
}

async fn every_route_checks_its_key_and_scope(b: Backend) {
    let s = TestServer::start(b).await;
    let doc: Value = s
        .http
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
    let ops = operations(&doc);
    // The document covers every route the server has, and only those.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .expect("item")
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/api/health"),
        ("GET", "/api/ready"),
        ("GET", "/api/nodes"),
        ("GET", "/api/auth/whoami"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/docs"),
        ("GET", "/api/workflows"),
        ("POST", "/api/workflows"),
        ("POST", "/api/workflows/validate"),
        ("GET", "/api/workflows/{id}"),
        ("PUT", "/api/workflows/{id}"),
        ("DELETE", "/api/workflows/{id}"),
        ("GET", "/api/workflows/{id}/versions"),
        ("POST", "/api/workflows/{id}/versions"),
        ("GET", "/api/workflows/{id}/versions/{version}"),
        ("GET", "/api/workflows/{id}/diff"),
        ("GET", "/api/runs"),
        ("POST", "/api/runs"),
        ("GET", "/api/runs/{id}"),
        ("POST", "/api/runs/{id}/cancel"),
        ("POST", "/api/runs/{id}/resume"),
        ("POST", "/api/runs/{id}/retry"),
        ("POST", "/api/runs/{id}/fork"),
        ("GET", "/api/runs/{id}/events"),
        ("GET", "/api/runs/{id}/stream"),
        ("GET", "/api/runs/{id}/ws"),
        ("GET", "/api/runs/{id}/checkpoints"),
        ("GET", "/api/runs/{id}/checkpoints/{checkpoint}"),
        ("GET", "/api/api-keys"),
        ("POST", "/api/api-keys"),
        ("DELETE", "/api/api-keys/{id}"),
        ("GET", "/api/audit"),
        ("POST", "/api/triggers/webhook"),
        ("GET", "/api/triggers"),
        ("POST", "/api/triggers/{id}/pause"),
        ("POST", "/api/triggers/{id}/resume"),
        ("DELETE", "/api/triggers/{id}"),
        ("POST", "/hooks/{token}"),
        ("POST", "/api/triggers/cron"),
        ("GET", "/api/triggers/{id}/next"),
        ("GET", "/api/triggers/{id}/url"),
        ("POST", "/api/triggers/polling"),
        ("GET", "/api/credential-types"),
        ("GET", "/api/workflows/{id}/readiness"),
        ("GET", "/api/credentials"),
        ("POST", "/api/credentials"),
        ("GET", "/api/credentials/{id}"),
        ("PATCH", "/api/credentials/{id}"),
        ("DELETE", "/api/credentials/{id}"),
        ("POST", "/api/credentials/{id}/rotate"),
        ("POST", "/api/credentials/{id}/test"),
        ("POST", "/api/credentials/{id}/oauth/start"),
        ("GET", "/api/oauth/callback"),
        ("POST", "/api/triggers/{id}/poll"),
        ("POST", "/api/runs/batch"),
        ("GET", "/api/dead-letters"),
        ("POST", "/api/dead-letters/redrive"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(
        documented, expected,
        "the OpenAPI document and the route list differ"
    );
    let public: BTreeSet<&str> = ops
        .iter()
        .filter(|o| o.2.is_none())
        .map(|o| o.1.as_str())
        .collect();
    assert_eq!(
        public,
        [
            "/api/health",
            "/api/ready",
            "/api/openapi.json",
            "/api/docs",
            "/api/oauth/callback",
            "/hooks/x"
        ]
        .into_iter()
        .collect()
    );

    let all = [
        "workflows:read",
        "workflows:write",
        "runs:read",
        "runs:execute",
        "credentials:manage",
        "triggers:manage",
    ];
    let revoked = s.key(&["admin"]).await;
    let rk: Value = s.ok("GET", "/api/api-keys", None).await;
    let rid = rk
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| revoked.contains(k["prefix"].as_str().unwrap_or("?")))
        .expect("key")["id"]
        .as_str()
        .expect("id")
        .to_string();
    s.ok("DELETE", &format!("/api/api-keys/{rid}"), None).await;
    for (method, path, scope) in &ops {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("m");
        let send = |key: Option<String>| {
            let mut r = s
                .http
                .request(m.clone(), s.url(path))
                .header("content-type", "application/json")
                .body("{}");
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            r.send()
        };
        let Some(scope) = scope else {
            let st = send(None).await.expect("send").status().as_u16();
            // The webhook ingress is public, but an unknown URL token finds nothing; the OAuth2
            // callback is public, but without a started authorization's state it refuses.
            let want = if path.starts_with("/hooks/") {
                404
            } else if path.starts_with("/api/oauth/") {
                400
            } else {
                200
            };
            assert_eq!(st, want, "{method} {path} is public");
            continue;
        };
        // The route exists in the router: with no key it answers 401, not the fallback 404.
        let res = send(None).await.expect("send");
        assert_eq!(res.status().as_u16(), 401, "{method} {path} without a key");
        let v: Value = res.json().await.expect("problem");
        assert_eq!(v["status"], 401);
        assert_eq!(
            send(Some("ok_AAAAAAAA_wrong".into()))
                .await
                .expect("send")
                .status()
                .as_u16(),
            401,
            "{method} {path} with a bad key"
        );
        assert_eq!(
            send(Some(revoked.clone()))
                .await
                .expect("send")
                .status()
                .as_u16(),
            401,
            "{method} {path} with a revoked key"
        );
        if scope.is_empty() {
            continue; // Any valid key.
        }
        let others: Vec<&str> = all.iter().copied().filter(|x| *x != scope).collect();
        let lacking = s.key(&others).await;
        let res = send(Some(lacking)).await.expect("send");
        assert_eq!(
            res.status().as_u16(),
            403,
            "{method} {path} with a key lacking {scope}"
        );
        let v: Value = res.json().await.expect("problem");
        assert!(v["detail"].as_str().unwrap_or("").contains(scope.as_str()));
        let holding = s.key(&[scope.as_str()]).await;
        let st = send(Some(holding)).await.expect("send").status().as_u16();
        assert!(
            st != 401 && st != 403,
            "{method} {path} with {scope} → {st}"
        );
    }
    s.stop().await;
}
