//! The credential vault on a real server, over SQLite and PostgreSQL: the API never returns a
//! secret; runs resolve credentials by name with scope and expiry enforced; rotation reaches new
//! runs; a ciphertext moved to another row fails closed; a server with the wrong key refuses to
//! start; the test endpoint checks a credential against a local service.

mod common;

use axum::http::{HeaderMap, StatusCode};
use common::*;
use orcheo_server::config::SecretString;
use orcheo_server::{Config, Server};
use orcheo_store::Backend;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

both!(
    credentials_api_never_returns_secrets,
    runs_use_credentials_within_scope_and_expiry,
    a_ciphertext_moved_to_another_row_fails_closed,
    the_test_endpoint_checks_against_the_service,
    key_rotation_reseals_everything_while_the_server_runs
);

fn allow_local(c: &mut Config) {
    c.http_allow = vec!["127.0.0.1".into()];
}

/// A service that answers 200 with the Authorization header it got (so tests can see which
/// token arrived and that the run's copy of it is masked), and records it.
async fn service() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new()
        .route(
            "/whoami",
            axum::routing::get(move |h: HeaderMap| {
                let log = log.clone();
                async move {
                    let auth = h
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    log.lock().unwrap().push(auth.clone());
                    axum::Json(json!({"auth": auth}))
                }
            }),
        )
        .route(
            "/user",
            axum::routing::get(|h: HeaderMap| async move {
                let ok = h.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Bearer ghp_right_token_123");
                if ok {
                    (StatusCode::OK, axum::Json(json!({"login": "ada"})))
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"message": "Bad credentials"})),
                    )
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

fn caller(url: &str) -> Value {
    json!({"format": "orcheo.workflow/1", "name": "caller",
        "nodes": [{"id": "call", "type": "http_request", "config": {"url": format!("{url}/whoami")},
                   "credentials": {"auth": "svc"}}],
        "edges": [{"source": "__start__", "target": "call"}, {"source": "call", "target": "__end__"}]})
}

async fn credentials_api_never_returns_secrets(b: Backend) {
    let s = TestServer::start(b).await;
    let types = s.ok("GET", "/api/credential-types", None).await;
    let ids: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    for want in [
        "api_key",
        "bearer",
        "basic",
        "custom_headers",
        "oauth2",
        "openai",
        "anthropic",
        "slack",
        "telegram",
        "discord",
        "smtp",
        "postgresql",
        "mongodb",
        "github",
        "http",
    ] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
    let c = s
        .ok(
            "POST",
            "/api/credentials",
            Some(json!({"name": "billing-db", "type": "basic", "description": "billing",
                        "data": {"username": "ada", "password": "pw-Secret-42"}, "rotate_every_days": 30})),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["version"], 1);
    assert_eq!(
        c["data"]["username"], "ada",
        "non-secret fields are shown: {c}"
    );
    assert_eq!(c["rotation_due"], false);
    assert!(c["rotation_due_at"].is_string());
    // Same name again: 409. Bad data: 422 naming the field, never the value.
    let (st, p) = s
        .call(
            "POST",
            "/api/credentials",
            Some(json!({"name": "billing-db", "type": "bearer", "data": {"token": "tok-1234"}})),
        )
        .await;
    assert_eq!(st, 409, "{p}");
    let (st, p) = s
        .call("POST", "/api/credentials", Some(json!({"name": "x", "type": "basic", "data": {"username": "ada", "password": 12345678}})))
        .await;
    assert_eq!(st, 422, "{p}");
    assert!(!p.to_string().contains("12345678"), "{p}");
    assert!(p.to_string().contains("password"), "{p}");
    let (st, p) = s
        .call(
            "POST",
            "/api/credentials",
            Some(json!({"name": "y", "type": "nope", "data": {}})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    let (st, _) = s
        .call(
            "POST",
            "/api/credentials",
            Some(json!({"name": "bad name!", "type": "bearer", "data": {"token": "tok-1234"}})),
        )
        .await;
    assert_eq!(st, 422);
    // Rotate with merge: a new password, the user name kept.
    let r = s
        .ok(
            "POST",
            &format!("/api/credentials/{id}/rotate"),
            Some(json!({"data": {"password": "pw-Newer-43"}, "merge": true})),
        )
        .await;
    assert_eq!(r["version"], 2);
    assert_eq!(r["data"]["username"], "ada");
    let p = s
        .ok(
            "PATCH",
            &format!("/api/credentials/{id}"),
            Some(json!({"description": "billing (prod)", "expires_at": null})),
        )
        .await;
    assert_eq!(p["description"], "billing (prod)");
    for path in [
        "/api/credentials".to_string(),
        format!("/api/credentials/{id}"),
        "/api/audit?limit=100".into(),
    ] {
        let v = s.ok("GET", &path, None).await.to_string();
        assert!(
            !v.contains("pw-Secret-42") && !v.contains("pw-Newer-43"),
            "{path}: {v}"
        );
    }
    let audit = s.ok("GET", "/api/audit?limit=100", None).await.to_string();
    for action in [
        "credential.create",
        "credential.rotate",
        "credential.update",
    ] {
        assert!(audit.contains(action), "{action} audited: {audit}");
    }
    // A key without credentials:manage cannot see them.
    let reader = s.key(&["workflows:read"]).await;
    let (st, _) = s.call_as(&reader, "GET", "/api/credentials", None).await;
    assert_eq!(st, 403);
    let (st, _) = s
        .call_as(&reader, "GET", "/api/credential-types", None)
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .call("DELETE", &format!("/api/credentials/{id}"), None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = s.call("GET", &format!("/api/credentials/{id}"), None).await;
    assert_eq!(st, 404);
    // The name is free again.
    s.ok(
        "POST",
        "/api/credentials",
        Some(json!({"name": "billing-db", "type": "bearer", "data": {"token": "tok-5678"}})),
    )
    .await;
    s.stop().await;
}

async fn run_status(s: &TestServer, wf: &str) -> Value {
    let id = s.start_run(wf, json!({})).await;
    s.wait_for(&id, &["completed", "failed"]).await
}

async fn runs_use_credentials_within_scope_and_expiry(b: Backend) {
    let s = TestServer::start_with(b, allow_local).await;
    let (url, seen) = service().await;
    let pushed = s.push("caller", caller(&url)).await;
    assert!(
        pushed.to_string().contains("credential.missing"),
        "saving warns: {pushed}"
    );
    s.push("other", caller(&url)).await;
    let ready = s.ok("GET", "/api/workflows/caller/readiness", None).await;
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["credentials"][0]["status"], "missing", "{ready}");
    assert_eq!(ready["credentials"][0]["slot"], "auth");
    // Missing: a clear error naming the credential.
    let r = run_status(&s, "caller").await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`svc`, which does not exist"),
        "{r}"
    );
    let c = s
        .ok("POST", "/api/credentials", Some(json!({"name": "svc", "type": "bearer", "data": {"token": "tok-First-111"},
                                                    "scope": {"kind": "workflows", "ids": ["caller"]}})))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    let ready = s.ok("GET", "/api/workflows/caller/readiness", None).await;
    assert_eq!(ready["ready"], true, "{ready}");
    let ready = s.ok("GET", "/api/workflows/other/readiness", None).await;
    assert_eq!(ready["credentials"][0]["status"], "out_of_scope", "{ready}");
    let r = run_status(&s, "caller").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(seen.lock().unwrap().last().unwrap(), "Bearer tok-First-111");
    assert_eq!(
        r["output"]["results"]["call"]["body"]["auth"], "Bearer ***",
        "{r}"
    );
    // Out of scope.
    let r = run_status(&s, "other").await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restricted"),
        "{r}"
    );
    // Rotation reaches the next run.
    s.ok(
        "POST",
        &format!("/api/credentials/{id}/rotate"),
        Some(json!({"data": {"token": "tok-Second-222"}})),
    )
    .await;
    let r = run_status(&s, "caller").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        "Bearer tok-Second-222"
    );
    // Expired: refused before anything is sent.
    let n = seen.lock().unwrap().len();
    s.ok(
        "PATCH",
        &format!("/api/credentials/{id}"),
        Some(json!({"expires_at": "2020-01-01T00:00:00Z"})),
    )
    .await;
    let r = run_status(&s, "caller").await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("expired"),
        "{r}"
    );
    assert_eq!(seen.lock().unwrap().len(), n);
    let list = s.ok("GET", "/api/credentials", None).await;
    assert_eq!(list[0]["expired"], true);
    assert!(list[0]["last_used_at"].is_string());
    // Roles: only runs started by keys with runs:execute… and the admin key holds admin.
    s.ok(
        "PATCH",
        &format!("/api/credentials/{id}"),
        Some(
            json!({"expires_at": null, "scope": {"kind": "roles", "scopes": ["triggers:manage"]}}),
        ),
    )
    .await;
    let r = run_status(&s, "other").await;
    assert_eq!(r["status"], "completed", "admin may: {r}");
    let runner = s.key(&["runs:execute", "runs:read"]).await;
    let (_, v) = s
        .call_as(
            &runner,
            "POST",
            "/api/runs",
            Some(json!({"workflow_id": "other", "input": {}})),
        )
        .await;
    let r = s
        .wait_for(v["id"].as_str().unwrap(), &["completed", "failed"])
        .await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("triggers:manage"),
        "{r}"
    );
    let audit = s.ok("GET", "/api/audit?limit=500", None).await.to_string();
    assert!(audit.contains("credential.use"), "{audit}");
    s.stop().await;
}

async fn a_ciphertext_moved_to_another_row_fails_closed(b: Backend) {
    let s = TestServer::start_with(b, allow_local).await;
    let (url, seen) = service().await;
    s.push("caller", caller(&url)).await;
    let a = s
        .ok(
            "POST",
            "/api/credentials",
            Some(json!({"name": "svc", "type": "bearer", "data": {"token": "tok-Aaaa-111"}})),
        )
        .await;
    let bb = s
        .ok(
            "POST",
            "/api/credentials",
            Some(json!({"name": "other", "type": "bearer", "data": {"token": "tok-Bbbb-222"}})),
        )
        .await;
    // Copy the other credential's sealed text into svc's row, as an attacker with database
    // access might, to make runs send the other token.
    let store = &s.server.as_ref().unwrap().state().store;
    let va = store
        .credential_version(a["id"].as_str().unwrap(), 1)
        .await
        .unwrap()
        .unwrap();
    let vb = store
        .credential_version(bb["id"].as_str().unwrap(), 1)
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .reseal_version(&va, &vb.sealed, &vb.key_id)
        .await
        .unwrap());
    let r = run_status(&s, "caller").await;
    assert_eq!(r["status"], "failed");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("cannot be opened") && msg.contains("tampered"),
        "{msg}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    let (st, p) = s
        .call(
            "POST",
            &format!("/api/credentials/{}/test", a["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, 409, "{p}");
    s.stop().await;
}

async fn the_test_endpoint_checks_against_the_service(b: Backend) {
    let s = TestServer::start_with(b, allow_local).await;
    let (url, _) = service().await;
    let good = s
        .ok("POST", "/api/credentials", Some(json!({"name": "gh", "type": "github", "data": {"token": "ghp_right_token_123", "base_url": url}})))
        .await;
    let id = good["id"].as_str().unwrap();
    let rep = s
        .ok("POST", &format!("/api/credentials/{id}/test"), None)
        .await;
    assert_eq!(rep["ok"], true, "{rep}");
    s.ok(
        "POST",
        &format!("/api/credentials/{id}/rotate"),
        Some(json!({"data": {"token": "ghp_wrong_token_999"}, "merge": true})),
    )
    .await;
    let rep = s
        .ok("POST", &format!("/api/credentials/{id}/test"), None)
        .await;
    assert_eq!(rep["ok"], false, "{rep}");
    assert!(!rep.to_string().contains("ghp_wrong_token_999"), "{rep}");
    let c = s.ok("GET", &format!("/api/credentials/{id}"), None).await;
    assert_eq!(c["last_test"]["ok"], false, "{c}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_key_refuses_to_start() {
    let dir = std::env::temp_dir().join(format!("orcheo-vault-key-{}", uuid::Uuid::new_v4()));
    let url = orcheo_store::testing::fresh_postgres_url()
        .await
        .expect("pg");
    let cfg = |sub: &str, key: Option<&str>| Config {
        port: 0,
        data_dir: dir.join(sub),
        database_url: Some(url.clone()),
        vault_key: key.map(SecretString::new),
        ..Config::default()
    };
    // 32 bytes of 0x01 and of 0x02, base64.
    let k1 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let k2 = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    let (a, welcome) = Server::start(cfg("a", Some(k1))).await.expect("a");
    let key = welcome.admin_key.expect("key");
    let res = reqwest::Client::new()
        .post(format!("{}/api/credentials", a.url()))
        .bearer_auth(&key)
        .json(&json!({"name": "svc", "type": "bearer", "data": {"token": "tok-1234"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    a.shutdown().await.expect("stop");
    let err = Server::start(cfg("b", Some(k2)))
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("same ORCHEO_VAULT_KEY"), "{text}");
    assert!(!text.contains(k2), "the key is not echoed: {text}");
    // The same key list with the old key second opens it (a rotation in progress).
    let (c, _) = Server::start(cfg("c", Some(&format!("{k2},{k1}"))))
        .await
        .expect("both keys");
    c.shutdown().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn key_rotation_reseals_everything_while_the_server_runs(b: Backend) {
    let s = TestServer::start_with(b, allow_local).await;
    let (url, seen) = service().await;
    s.push("caller", caller(&url)).await;
    let c = s
        .ok(
            "POST",
            "/api/credentials",
            Some(json!({"name": "svc", "type": "bearer", "data": {"token": "tok-One-111"}})),
        )
        .await;
    s.ok(
        "POST",
        &format!("/api/credentials/{}/rotate", c["id"].as_str().unwrap()),
        Some(json!({"data": {"token": "tok-Two-222"}})),
    )
    .await;
    s.ok("POST", "/api/credentials", Some(json!({"name": "db", "type": "basic", "data": {"username": "u", "password": "pw-Three-333"}}))).await;
    let hook = s
        .ok("POST", "/api/triggers/webhook", Some(json!({"workflow_id": "caller", "signature": {"type": "github"}, "secret": "hook-Secret-555"})))
        .await;
    let state = s.server.as_ref().unwrap().state();
    let key_file = state.config.vault_key_path();
    let old_file = s.dir.join("old.key");
    std::fs::copy(&key_file, &old_file).unwrap();
    let before: Vec<String> = state
        .store
        .sealed_versions()
        .await
        .unwrap()
        .iter()
        .map(|v| v.key_id.clone())
        .collect();
    assert_eq!(before.len(), 3);
    let r = orcheo_server::vault::rotate_key(&state.store, &state.config, false)
        .await
        .unwrap();
    assert!(r.new_key);
    assert_eq!(r.resealed, 4, "three versions and the webhook secret");
    let t = state
        .store
        .get_trigger(hook["id"].as_str().unwrap())
        .await
        .unwrap();
    let sealed: orcheo_vault::Sealed = t.secret.unwrap().parse().unwrap();
    assert_eq!(sealed.key_id, r.active_key);
    // The running server still verifies the webhook's signatures with the resealed secret.
    let body = br#"{"n": 1}"#;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"hook-Secret-555").unwrap();
    hmac::Mac::update(&mut mac, body);
    let sig = orcheo_store::hex(&hmac::Mac::finalize(mac).into_bytes());
    let res = s
        .http
        .post(hook["url"].as_str().unwrap())
        .header("x-hub-signature-256", format!("sha256={sig}"))
        .header("x-github-delivery", "d-1")
        .header("content-type", "application/json")
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        202,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert_eq!(r.retired, vec![before[0].clone()]);
    let after = state.store.sealed_versions().await.unwrap();
    assert!(after.iter().all(|v| v.key_id == r.active_key), "{after:?}");
    // The old key opens none of them any more.
    let old = orcheo_vault::Keyring::load_file(&old_file).unwrap();
    for v in &after {
        let sealed: orcheo_vault::Sealed = v.sealed.parse().unwrap();
        let e = old
            .open(
                &orcheo_vault::Aad::credential(&v.credential_id, v.version),
                &sealed,
            )
            .unwrap_err();
        assert!(
            matches!(e, orcheo_vault::VaultError::UnknownKey { .. }),
            "{e}"
        );
    }
    // The running server picks the new key up: runs still resolve, new credentials use it.
    let r2 = run_status(&s, "caller").await;
    assert_eq!(r2["status"], "completed", "{r2}");
    assert_eq!(seen.lock().unwrap().last().unwrap(), "Bearer tok-Two-222");
    let n = s
        .ok(
            "POST",
            "/api/credentials",
            Some(json!({"name": "new", "type": "bearer", "data": {"token": "tok-Four-444"}})),
        )
        .await;
    let v = state
        .store
        .credential_version(n["id"].as_str().unwrap(), 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.key_id, r.active_key);
    s.stop().await;
}
