//! Webhook triggers end to end: signed requests become runs; tampered, wrongly signed, stale,
//! replayed, oversized and misdirected ones are refused with a clear error and no run.

mod common;

use common::*;
use orcheo_server::triggers::signature::{hmac_hex, standard_sign};
use orcheo_store::Backend;
use serde_json::{json, Value};

both!(
    standard_webhooks_end_to_end,
    other_schemes_dedup_and_limits,
    rate_limit_answers_429,
    wait_mode_answers_with_a_node_output,
    sustained_load_loses_nothing,
    multipart_bodies_reach_the_run,
    webhooks_declared_in_documents_take_their_secret_from_the_vault
);

async fn webhooks_declared_in_documents_take_their_secret_from_the_vault(b: Backend) {
    let s = TestServer::start(b).await;
    let mut doc = chain(1);
    doc["triggers"] = json!([{"id": "gh", "type": "webhook",
        "config": {"signature": {"type": "github"}}}]);
    // A signed webhook in a document without a credential: refused, naming the trigger.
    let (st, p) = s
        .call(
            "POST",
            "/api/workflows",
            Some(json!({"id": "declared", "document": doc.clone()})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    assert!(
        p["detail"].as_str().unwrap_or("").contains("`gh`")
            && p["detail"]
                .as_str()
                .unwrap_or("")
                .contains("secret_credential"),
        "{p}"
    );
    s.ok(
        "POST",
        "/api/credentials",
        Some(json!({"name": "gh-hook", "type": "api_key", "data": {"key": "hook-Secret-one"}})),
    )
    .await;
    doc["triggers"][0]["config"]["secret_credential"] = json!("gh-hook");
    s.push("declared", doc.clone()).await;
    let url = s.ok("GET", "/api/triggers/declared:gh/url", None).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let send = |secret: &'static [u8], id: &'static str| {
        let body = br#"{"action": "opened"}"#;
        let sig = format!("sha256={}", hmac_hex(secret, &[body]).expect("hmac"));
        s.http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .header("x-github-delivery", id)
            .body(&body[..])
            .send()
    };
    assert_eq!(send(b"hook-Secret-one", "d-1").await.unwrap().status(), 202);
    assert_eq!(send(b"wrong-secret", "d-2").await.unwrap().status(), 401);
    // Rotating the credential changes the secret at once.
    let c = s.ok("GET", "/api/credentials", None).await;
    let cid = c[0]["id"].as_str().unwrap().to_string();
    s.ok(
        "POST",
        &format!("/api/credentials/{cid}/rotate"),
        Some(json!({"data": {"key": "hook-Secret-two"}, "merge": true})),
    )
    .await;
    assert_eq!(send(b"hook-Secret-one", "d-3").await.unwrap().status(), 401);
    assert_eq!(send(b"hook-Secret-two", "d-4").await.unwrap().status(), 202);
    // A new version that changes the settings keeps the URL.
    doc["triggers"][0]["config"]["methods"] = json!(["POST", "PUT"]);
    s.ok(
        "POST",
        "/api/workflows/declared/versions",
        Some(json!({"document": doc.clone()})),
    )
    .await;
    let same = s.ok("GET", "/api/triggers/declared:gh/url", None).await;
    assert_eq!(same["url"], url.as_str());
    // Removed: the URL stops working. Declared again: a new URL that works.
    let mut without = doc.clone();
    without["triggers"] = json!([]);
    s.ok(
        "POST",
        "/api/workflows/declared/versions",
        Some(json!({"document": without})),
    )
    .await;
    assert_eq!(send(b"hook-Secret-two", "d-5").await.unwrap().status(), 404);
    doc["triggers"][0]["config"]["methods"] = json!(["POST"]);
    s.ok(
        "POST",
        "/api/workflows/declared/versions",
        Some(json!({"document": doc})),
    )
    .await;
    let again = s.ok("GET", "/api/triggers/declared:gh/url", None).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(again, url);
    let body = br#"{"action": "opened"}"#;
    let sig = format!(
        "sha256={}",
        hmac_hex(b"hook-Secret-two", &[body]).expect("hmac")
    );
    let res = s
        .http
        .post(&again)
        .header("x-hub-signature-256", sig)
        .header("x-github-delivery", "d-6")
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // A deleted credential makes the webhook answer 503 rather than accept unsigned requests.
    s.ok("DELETE", &format!("/api/credentials/{cid}"), None)
        .await;
    let sig = format!(
        "sha256={}",
        hmac_hex(b"hook-Secret-two", &[body]).expect("hmac")
    );
    let res = s
        .http
        .post(&again)
        .header("x-hub-signature-256", sig)
        .header("x-github-delivery", "d-7")
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(runs_of(&s, "declared").await, 3);
    s.stop().await;
}

async fn multipart_bodies_reach_the_run(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("hooked", chain(1)).await;
    let h = s
        .ok(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "hooked"})),
        )
        .await;
    let body = "--b0undary\r\nContent-Disposition: form-data; name=\"order\"\r\n\r\nA-9\r\n--b0undary\r\nContent-Disposition: form-data; name=\"invoice\"; filename=\"inv.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7\r\n--b0undary--\r\n";
    let res = s
        .http
        .post(h["url"].as_str().expect("url"))
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 202);
    let v: Value = res.json().await.expect("json");
    let run = s
        .wait_for(v["run_id"].as_str().expect("id"), &["completed"])
        .await;
    assert_eq!(run["input"]["body"]["order"], "A-9");
    assert_eq!(run["input"]["body"]["invoice"]["filename"], "inv.pdf");
    assert_eq!(
        run["input"]["body"]["invoice"]["content_type"],
        "application/pdf"
    );
    s.stop().await;
}

/// 400 signed webhooks from 8 concurrent senders: every accepted request becomes exactly one
/// run; with a budget, the rest get 429 and make no run. Bounded in count, not timed.
async fn sustained_load_loses_nothing(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("hooked", chain(1)).await;
    let h = s
        .ok(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "hooked", "signature": {"type": "standard_webhooks"}})),
        )
        .await;
    let url = h["url"].as_str().expect("url").to_string();
    let secret = h["secret_once"].as_str().expect("secret").to_string();
    // Stored sealed by the vault, never as given.
    let stored = s
        .server
        .as_ref()
        .expect("server")
        .state()
        .store
        .get_trigger(h["id"].as_str().expect("id"))
        .await
        .expect("trigger");
    let sealed = stored.secret.expect("sealed");
    assert!(
        sealed.starts_with("v1.") && !sealed.contains(&secret),
        "{sealed}"
    );
    let limited = s
        .ok(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "hooked", "rate_limit": {"per_second": 1, "burst": 50}})),
        )
        .await;
    let limited_url = limited["url"].as_str().expect("url").to_string();
    let total = 400usize;
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, secret, counter, limited_url) = (
            s.http.clone(),
            url.clone(),
            secret.clone(),
            counter.clone(),
            limited_url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut limited_ok = 0usize;
            let mut limited_429 = 0usize;
            loop {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = format!(r#"{{"n": {i}}}"#);
                let now = chrono::Utc::now().timestamp();
                let id = format!("msg_{i}");
                let sig = standard_sign(&secret, &id, now, body.as_bytes()).expect("sign");
                let res = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", now.to_string())
                    .header("webhook-signature", sig)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(res.status().as_u16(), 202);
                let v: Value = res.json().await.expect("json");
                accepted.push(v["run_id"].as_str().expect("id").to_string());
                let res = http
                    .post(&limited_url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("post");
                match res.status().as_u16() {
                    202 => limited_ok += 1,
                    429 => limited_429 += 1,
                    other => panic!("unexpected {other}"),
                }
            }
            (accepted, limited_ok, limited_429)
        }));
    }
    let mut accepted = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (a, o, r) = t.await.expect("task");
        accepted.extend(a);
        ok += o;
        refused += r;
    }
    assert_eq!(accepted.len(), total);
    let mut unique = accepted.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), total, "one distinct run per accepted request");
    assert!(
        refused > 0 && ok >= 50 && ok + refused == total,
        "ok {ok}, refused {refused}"
    );
    // Every run exists and completes: nothing lost.
    for id in &accepted {
        s.wait_for(id, &["completed"]).await;
    }
    let mut all = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/runs?workflow_id=hooked&limit=500&cursor={c}"),
            None => "/api/runs?workflow_id=hooked&limit=500".to_string(),
        };
        let v = s.ok("GET", &path, None).await;
        all += v["items"].as_array().map(Vec::len).unwrap_or(0);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        all,
        total + ok,
        "accepted requests and runs match one to one"
    );
    s.stop().await;
}

async fn wait_mode_answers_with_a_node_output(b: Backend) {
    let s = TestServer::start(b).await;
    let doc = json!({"format": "orcheo.workflow/1", "name": "echo",
        "nodes": [{"id": "reply", "type": "set_variables", "config": {"values": {"status": 201, "headers": {"x-order": "{{ input.body.id }}"}, "body": {"ok": true, "id": "{{ input.body.id }}"}}}}],
        "edges": [{"source": "__start__", "target": "reply"}, {"source": "reply", "target": "__end__"}]});
    s.push("echo", doc).await;
    let h = s
        .ok(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "echo", "respond": {"node": "reply", "timeout_secs": 10}})),
        )
        .await;
    let url = h["url"].as_str().expect("url").to_string();
    let res = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"id": "o-7"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 201);
    assert_eq!(
        res.headers().get("x-order").and_then(|v| v.to_str().ok()),
        Some("o-7")
    );
    let v: Value = res.json().await.expect("json");
    assert_eq!(v, json!({"ok": true, "id": "o-7"}));
    // A run that outlasts the wait answers 202 with its id.
    s.push("slow", sleeper(3000)).await;
    let h = s
        .ok(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "slow", "respond": {"timeout_secs": 0.3}})),
        )
        .await;
    let res = s
        .http
        .post(h["url"].as_str().expect("url"))
        .body("")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 202);
    let v: Value = res.json().await.expect("json");
    assert!(v["run_id"].is_string());
    let (st, _) = s
        .call(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "slow", "respond": {"timeout_secs": 500}})),
        )
        .await;
    assert_eq!(st, 422);
    s.stop().await;
}

async fn rate_limit_answers_429(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("hooked", chain(1)).await;
    let h = s
        .ok(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "hooked", "rate_limit": {"per_second": 0.5, "burst": 3}})),
        )
        .await;
    let url = h["url"].as_str().expect("url").to_string();
    let mut codes = Vec::new();
    let mut retry_after = None;
    for i in 0..5 {
        let res = s
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(format!(r#"{{"n": {i}}}"#))
            .send()
            .await
            .expect("post");
        codes.push(res.status().as_u16());
        if res.status().as_u16() == 429 {
            retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
        }
    }
    assert_eq!(
        codes,
        vec![202, 202, 202, 429, 429],
        "a burst of 3, then the limit"
    );
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert_eq!(
        runs_of(&s, "hooked").await,
        3,
        "refused requests start no run"
    );
    let (st, _) = s
        .call(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "hooked", "rate_limit": {"per_second": 0}})),
        )
        .await;
    assert_eq!(st, 422);
    s.stop().await;
}

async fn runs_of(s: &TestServer, wf: &str) -> usize {
    let v = s
        .ok(
            "GET",
            &format!("/api/runs?workflow_id={wf}&limit=500"),
            None,
        )
        .await;
    v["items"].as_array().map(Vec::len).unwrap_or(0)
}

async fn standard_webhooks_end_to_end(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("hooked", chain(1)).await;
    let created = s
        .ok(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "hooked", "signature": {"type": "standard_webhooks"}})),
        )
        .await;
    let url = created["url"].as_str().expect("url").to_string();
    let secret = created["secret_once"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"));
    assert!(url.starts_with(&s.base) && url.contains("/hooks/"), "{url}");
    assert!(created.get("secret").is_none() && created.get("token").is_none());
    let listed = s.ok("GET", "/api/triggers?workflow_id=hooked", None).await;
    assert!(
        !listed.to_string().contains(&secret),
        "listings never show the secret"
    );

    let now = chrono::Utc::now().timestamp();
    let body = br#"{"order": 42, "items": ["a"]}"#;
    let send = |id: &str, ts: i64, body: &'static [u8], sig: String| {
        s.http
            .post(format!("{url}?source=shop"))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    let sig = standard_sign(&secret, "msg_1", now, body).expect("sign");
    let res = send("msg_1", now, body, sig.clone()).await.expect("post");
    assert_eq!(res.status().as_u16(), 202);
    let accepted: Value = res.json().await.expect("json");
    let run_id = accepted["run_id"].as_str().expect("run").to_string();
    let run = s.wait_for(&run_id, &["completed", "failed"]).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["origin"]["kind"], "webhook");
    assert_eq!(run["origin"]["request_id"], "msg_1");
    let input = &run["input"];
    assert_eq!(input["method"], "POST");
    assert_eq!(input["body"], json!({"order": 42, "items": ["a"]}));
    assert_eq!(input["query"], json!({"source": "shop"}));
    assert_eq!(input["headers"]["webhook-id"], "msg_1");
    assert!(
        input["headers"].get("webhook-signature").is_none(),
        "signatures stay out of the run"
    );

    // Each bad request: a clear error, and no run.
    let tampered = send(
        "msg_2",
        now,
        br#"{"order": 43, "items": ["a"]}"#,
        standard_sign(&secret, "msg_2", now, body).expect("sign"),
    )
    .await
    .expect("post");
    assert_eq!(tampered.status().as_u16(), 401);
    let p: Value = tampered.json().await.expect("problem");
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or("")
            .contains("does not match"),
        "{p}"
    );
    let wrong = standard_sign(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "msg_3",
        now,
        body,
    )
    .expect("sign");
    assert_eq!(
        send("msg_3", now, body, wrong)
            .await
            .expect("post")
            .status()
            .as_u16(),
        401
    );
    let stale_ts = now - 3600;
    let stale = send(
        "msg_4",
        stale_ts,
        body,
        standard_sign(&secret, "msg_4", stale_ts, body).expect("sign"),
    )
    .await
    .expect("post");
    assert_eq!(stale.status().as_u16(), 401);
    let p: Value = stale.json().await.expect("problem");
    assert!(
        p["detail"].as_str().unwrap_or("").contains("timestamp"),
        "{p}"
    );
    let replay = send("msg_1", now, body, sig).await.expect("post");
    assert_eq!(replay.status().as_u16(), 409);
    let unsigned = s.http.post(&url).body("{}").send().await.expect("post");
    assert_eq!(unsigned.status().as_u16(), 401);
    let wrong_method = s.http.put(&url).body("{}").send().await.expect("put");
    assert_eq!(wrong_method.status().as_u16(), 405);
    assert_eq!(
        runs_of(&s, "hooked").await,
        1,
        "only the good request made a run"
    );

    // Paused and deleted triggers answer 404.
    let id = created["id"].as_str().expect("id").to_string();
    s.ok("POST", &format!("/api/triggers/{id}/pause"), None)
        .await;
    let sig5 = standard_sign(&secret, "msg_5", now, body).expect("sign");
    assert_eq!(
        send("msg_5", now, body, sig5.clone())
            .await
            .expect("post")
            .status()
            .as_u16(),
        404
    );
    s.ok("POST", &format!("/api/triggers/{id}/resume"), None)
        .await;
    assert_eq!(
        send("msg_5", now, body, sig5)
            .await
            .expect("post")
            .status()
            .as_u16(),
        202
    );
    let (st, _) = s.call("DELETE", &format!("/api/triggers/{id}"), None).await;
    assert_eq!(st, 204);
    let sig6 = standard_sign(&secret, "msg_6", now, body).expect("sign");
    assert_eq!(
        send("msg_6", now, body, sig6)
            .await
            .expect("post")
            .status()
            .as_u16(),
        404
    );
    s.stop().await;
}

async fn other_schemes_dedup_and_limits(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("hooked", chain(1)).await;
    // GitHub, with the secret given.
    let gh = s.ok("POST", "/api/triggers/webhook", Some(json!({"workflow_id": "hooked", "signature": {"type": "github"}, "secret": "gh-secret-123"}))).await;
    assert!(
        gh.get("secret_once").is_none(),
        "a given secret is not echoed"
    );
    let gh_url = gh["url"].as_str().expect("url").to_string();
    let body = br#"{"action": "opened"}"#;
    let sig = format!(
        "sha256={}",
        hmac_hex(b"gh-secret-123", &[body]).expect("hmac")
    );
    let ok = s
        .http
        .post(&gh_url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &sig)
        .header("x-github-delivery", "d-1")
        .body(&body[..])
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status().as_u16(), 202);
    let bad = s
        .http
        .post(&gh_url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &sig)
        .header("x-github-delivery", "d-2")
        .body(r#"{"action": "closed"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status().as_u16(), 401);

    // Stripe.
    let st_hook = s.ok("POST", "/api/triggers/webhook", Some(json!({"workflow_id": "hooked", "signature": {"type": "stripe"}, "secret": "whsec_stripe_test"}))).await;
    let st_url = st_hook["url"].as_str().expect("url").to_string();
    let t = chrono::Utc::now().timestamp();
    let sbody = br#"{"id": "evt_9", "type": "charge.succeeded"}"#;
    let v1 = hmac_hex(
        b"whsec_stripe_test",
        &[t.to_string().as_bytes(), b".", sbody],
    )
    .expect("hmac");
    let res = s
        .http
        .post(&st_url)
        .header("content-type", "application/json")
        .header("stripe-signature", format!("t={t},v1={v1}"))
        .body(&sbody[..])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 202);
    let again = s
        .http
        .post(&st_url)
        .header("content-type", "application/json")
        .header("stripe-signature", format!("t={t},v1={v1}"))
        .body(&sbody[..])
        .send()
        .await
        .expect("post");
    assert_eq!(
        again.status().as_u16(),
        409,
        "the same Stripe event is a replay"
    );

    // Slack: the URL verification challenge is answered without a run.
    let sl = s.ok("POST", "/api/triggers/webhook", Some(json!({"workflow_id": "hooked", "signature": {"type": "slack"}, "secret": "slack-signing-secret"}))).await;
    let sl_url = sl["url"].as_str().expect("url").to_string();
    let cbody = br#"{"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let ts = chrono::Utc::now().timestamp().to_string();
    let ssig = format!(
        "v0={}",
        hmac_hex(
            b"slack-signing-secret",
            &[b"v0:", ts.as_bytes(), b":", cbody]
        )
        .expect("hmac")
    );
    let res = s
        .http
        .post(&sl_url)
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", &ssig)
        .body(&cbody[..])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    // Shared secret + dedup by a body path + required header + size cap + form bodies.
    let sh = s.ok("POST", "/api/triggers/webhook", Some(json!({
        "workflow_id": "hooked", "signature": {"type": "shared_secret", "header": "X-Token"}, "secret": "let-me-in-please",
        "idempotency_path": "/order_id", "required_headers": {"X-Shop": "acme"}, "max_body_bytes": 256,
        "methods": ["post", "put"]}))).await;
    let sh_url = sh["url"].as_str().expect("url").to_string();
    let post = |body: String, token: &'static str, shop: Option<&'static str>, ct: &'static str| {
        let mut r = s
            .http
            .post(&sh_url)
            .header("x-token", token)
            .header("content-type", ct)
            .body(body);
        if let Some(v) = shop {
            r = r.header("x-shop", v);
        }
        r.send()
    };
    let first: Value = post(
        r#"{"order_id": "A-1"}"#.into(),
        "let-me-in-please",
        Some("acme"),
        "application/json",
    )
    .await
    .expect("post")
    .json()
    .await
    .expect("json");
    let dup = post(
        r#"{"order_id": "A-1", "retry": true}"#.into(),
        "let-me-in-please",
        Some("acme"),
        "application/json",
    )
    .await
    .expect("post");
    assert_eq!(dup.status().as_u16(), 200);
    let dup: Value = dup.json().await.expect("json");
    assert_eq!(
        dup["run_id"], first["run_id"],
        "a duplicate key yields the same run"
    );
    assert_eq!(dup["duplicate"], true);
    assert_eq!(
        post(
            r#"{"order_id": "A-2"}"#.into(),
            "nope",
            Some("acme"),
            "application/json"
        )
        .await
        .expect("post")
        .status()
        .as_u16(),
        401
    );
    let missing = post(
        r#"{"order_id": "A-3"}"#.into(),
        "let-me-in-please",
        None,
        "application/json",
    )
    .await
    .expect("post");
    assert_eq!(missing.status().as_u16(), 422);
    assert_eq!(
        post(
            "x".repeat(300),
            "let-me-in-please",
            Some("acme"),
            "text/plain"
        )
        .await
        .expect("post")
        .status()
        .as_u16(),
        413
    );
    let bad_json = post(
        "{".into(),
        "let-me-in-please",
        Some("acme"),
        "application/json",
    )
    .await
    .expect("post");
    assert_eq!(bad_json.status().as_u16(), 400);
    let form: Value = post(
        "order_id=A-4&note=hello+world".into(),
        "let-me-in-please",
        Some("acme"),
        "application/x-www-form-urlencoded",
    )
    .await
    .expect("post")
    .json()
    .await
    .expect("json");
    let run = s
        .wait_for(form["run_id"].as_str().expect("run"), &["completed"])
        .await;
    assert_eq!(
        run["input"]["body"],
        json!({"order_id": "A-4", "note": "hello world"})
    );
    assert!(
        run["input"]["headers"].get("x-token").is_none(),
        "the shared secret stays out of the run"
    );

    // Bad trigger definitions are refused.
    let (st, p) = s
        .call(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "hooked", "methods": ["TRACE"]})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    let (st, _) = s
        .call(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "nope"})),
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = s
        .call(
            "POST",
            "/api/triggers/webhook",
            Some(json!({"workflow_id": "hooked", "secret": "orphan-secret"})),
        )
        .await;
    assert_eq!(st, 422);
    let runs = runs_of(&s, "hooked").await;
    assert_eq!(runs, 4, "github, stripe, shared A-1, form A-4");
    s.stop().await;
}
