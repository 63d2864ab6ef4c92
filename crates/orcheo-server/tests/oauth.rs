//! OAuth2 against a small RFC 6749 provider on 127.0.0.1: the authorization-code flow with
//! PKCE through the server's callback, one refresh for many concurrent runs, a clear run error
//! when the refresh is refused, and client credentials fetched once.

mod common;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine as _;
use common::*;
use orcheo_store::Backend;
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

both!(
    authorization_code_with_pkce_then_one_refresh_for_many_runs,
    client_credentials_are_fetched_once
);

#[derive(Default)]
struct Provider {
    challenge: Option<String>,
    redirect: Option<String>,
    refreshes: usize,
    client_grants: usize,
    refuse_refresh: bool,
}

type P = Arc<Mutex<Provider>>;

async fn authorize(State(p): State<P>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "app");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "read write");
    let mut p = p.lock().unwrap();
    p.challenge = Some(q["code_challenge"].clone());
    p.redirect = Some(q["redirect_uri"].clone());
    let to = format!("{}?code=code-1&state={}", q["redirect_uri"], q["state"]);
    (StatusCode::FOUND, [("location", to)]).into_response()
}

fn bad(error: &str, desc: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": desc})),
    )
        .into_response()
}

async fn token(
    State(p): State<P>,
    h: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let basic = base64::engine::general_purpose::STANDARD.encode("app:app-secret");
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Basic {basic}")) {
        return bad("invalid_client", "client authentication failed");
    }
    let mut p = p.lock().unwrap();
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if f.get("code").map(String::as_str) != Some("code-1")
                || p.challenge.as_deref() != Some(challenge.as_str())
                || p.redirect.as_ref() != f.get("redirect_uri")
            {
                return bad("invalid_grant", "code, verifier or redirect_uri mismatch");
            }
            // Expires inside the refresh margin, so the first use refreshes.
            axum::Json(json!({"access_token": "at-first", "refresh_token": "rt-1", "expires_in": 30, "token_type": "Bearer"})).into_response()
        }
        Some("refresh_token") => {
            if p.refuse_refresh || f.get("refresh_token").map(String::as_str) != Some("rt-1") {
                return bad("invalid_grant", "refresh token revoked");
            }
            p.refreshes += 1;
            axum::Json(
                json!({"access_token": "at-fresh", "expires_in": 3600, "token_type": "Bearer"}),
            )
            .into_response()
        }
        Some("client_credentials") => {
            p.client_grants += 1;
            axum::Json(
                json!({"access_token": "cc-token", "expires_in": 3600, "token_type": "Bearer"}),
            )
            .into_response()
        }
        _ => bad("unsupported_grant_type", "?"),
    }
}

async fn me(h: HeaderMap) -> Response {
    match h.get("authorization").and_then(|v| v.to_str().ok()) {
        Some("Bearer at-fresh") | Some("Bearer cc-token") => {
            axum::Json(json!({"user": "ada"})).into_response()
        }
        other => (StatusCode::UNAUTHORIZED, format!("bad token {other:?}")).into_response(),
    }
}

async fn provider() -> (String, P) {
    let p: P = Arc::default();
    let app = axum::Router::new()
        .route("/authorize", axum::routing::get(authorize))
        .route("/token", axum::routing::post(token))
        .route("/api/me", axum::routing::get(me))
        .with_state(p.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, p)
}

fn caller(url: &str, cred: &str) -> Value {
    json!({"format": "orcheo.workflow/1", "name": "me",
        "nodes": [{"id": "me", "type": "http_request", "config": {"url": format!("{url}/api/me")},
                   "credentials": {"auth": cred}}],
        "edges": [{"source": "__start__", "target": "me"}, {"source": "me", "target": "__end__"}]})
}

async fn many_runs(s: &TestServer, wf: &str, n: usize) -> Vec<Value> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(s.start_run(wf, json!({})).await);
    }
    let mut out = Vec::new();
    for id in ids {
        out.push(s.wait_for(&id, &["completed", "failed"]).await);
    }
    out
}

async fn authorization_code_with_pkce_then_one_refresh_for_many_runs(b: Backend) {
    let s = TestServer::start_with(b, |c| c.http_allow = vec!["127.0.0.1".into()]).await;
    let (url, p) = provider().await;
    let c = s
        .ok(
            "POST",
            "/api/credentials",
            Some(json!({"name": "conn", "type": "oauth2", "data": {
            "grant_type": "authorization_code", "authorization_url": format!("{url}/authorize"),
            "token_url": format!("{url}/token"), "client_id": "app", "client_secret": "app-secret",
            "scopes": ["read", "write"]}})),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    s.push("me", caller(&url, "conn")).await;
    // Not connected yet: the run says what to do.
    let r = many_runs(&s, "me", 1).await.remove(0);
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("oauth/start"),
        "{r}"
    );
    // The flow: start, the provider redirects the browser to the callback with a code.
    let start = s
        .ok("POST", &format!("/api/credentials/{id}/oauth/start"), None)
        .await;
    assert!(start["redirect_uri"]
        .as_str()
        .unwrap()
        .ends_with("/api/oauth/callback"));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = browser
        .get(start["authorize_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let back = res.headers()["location"].to_str().unwrap().to_string();
    let res = browser.get(&back).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("connected"));
    // The state is single-use.
    let res = browser.get(&back).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("already used"));
    let c = s.ok("GET", &format!("/api/credentials/{id}"), None).await;
    assert_eq!(c["version"], 2);
    assert!(
        !c.to_string().contains("at-first") && !c.to_string().contains("rt-1"),
        "{c}"
    );
    // Eight runs at once: the token is about to expire, so it is refreshed, once.
    for r in many_runs(&s, "me", 8).await {
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["output"]["results"]["me"]["body"]["user"], "ada");
    }
    assert_eq!(p.lock().unwrap().refreshes, 1);
    assert_eq!(
        s.ok("GET", &format!("/api/credentials/{id}"), None).await["version"],
        3
    );
    // A refused refresh fails the run with the provider's words and the way out.
    p.lock().unwrap().refuse_refresh = true;
    s.ok(
        "POST",
        &format!("/api/credentials/{id}/rotate"),
        Some(json!({"data": {"expires_at": "2020-01-01T00:00:00Z"}, "merge": true})),
    )
    .await;
    let r = many_runs(&s, "me", 1).await.remove(0);
    assert_eq!(r["status"], "failed");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("invalid_grant")
            && msg.contains("refresh token revoked")
            && msg.contains("reconnect"),
        "{msg}"
    );
    let events = s.events(r["id"].as_str().unwrap()).await;
    let text = serde_json::to_string(&events).unwrap();
    for t in ["at-fresh", "rt-1", "app-secret"] {
        assert!(!text.contains(t), "{t} leaked: {text}");
    }
    s.stop().await;
}

async fn client_credentials_are_fetched_once(b: Backend) {
    let s = TestServer::start_with(b, |c| c.http_allow = vec!["127.0.0.1".into()]).await;
    let (url, p) = provider().await;
    s.ok(
        "POST",
        "/api/credentials",
        Some(json!({"name": "m2m", "type": "oauth2", "data": {
        "grant_type": "client_credentials", "token_url": format!("{url}/token"),
        "client_id": "app", "client_secret": "app-secret"}})),
    )
    .await;
    s.push("m2m", caller(&url, "m2m")).await;
    for r in many_runs(&s, "m2m", 6).await {
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["output"]["results"]["me"]["body"]["user"], "ada");
    }
    assert_eq!(p.lock().unwrap().client_grants, 1);
    s.stop().await;
}
