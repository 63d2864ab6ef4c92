//! Interrupt deadlines enforced by the server, the one-time login link, and graceful shutdown
//! that drains or leaves runs resumable — on SQLite and PostgreSQL.

mod common;

use common::*;
use orcheo_server::{Config, Server};
use orcheo_store::Backend;
use serde_json::{json, Value};
use std::time::Duration;

both!(
    waits_time_out_by_themselves,
    login_link_works_once,
    shutdown_drains_then_leaves_the_rest_resumable
);

async fn waits_time_out_by_themselves(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("expense", example("expense-escalation")).await;
    let run = s
        .start_run(
            "expense",
            json!({"employee": "Ada", "amount": 80, "sla": "1s"}),
        )
        .await;
    let w = s.wait_for(&run, &["waiting"]).await;
    assert_eq!(w["waiting"][0]["node"], "team_lead", "{w}");
    // Nobody answers: the sweeper queues the run when the SLA passes and it takes the timeout
    // edge to finance, where it waits again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = s.ok("GET", &format!("/api/runs/{run}"), None).await;
        if v["status"] == "waiting" && v["waiting"][0]["node"] == "finance" {
            assert_eq!(v["output"]["state"]["status"], "escalated");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the wait never timed out: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.ok(
        "POST",
        &format!("/api/runs/{run}/resume"),
        Some(json!({"value": "approve"})),
    )
    .await;
    let done = s.wait_for(&run, &["completed"]).await;
    assert_eq!(done["output"]["state"]["approved_by"], "finance");
    s.stop().await;
}

async fn login_link_works_once(b: Backend) {
    let s = TestServer::start(b).await;
    // The link printed at start is not kept by the test harness; make one like serve does.
    let token = s
        .server
        .as_ref()
        .expect("server")
        .state
        .store
        .create_login_token(&[orcheo_store::Scope::Admin], Duration::from_secs(60))
        .await
        .expect("token");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = http
        .get(s.url(&format!("/login?token={token}")))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status().as_u16(), 303);
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_string();
    let me: Value = http
        .get(s.url("/api/auth/whoami"))
        .header("cookie", &session)
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("json");
    assert_eq!(me["key"]["scopes"], json!(["admin"]));
    let again = http
        .get(s.url(&format!("/login?token={token}")))
        .send()
        .await
        .expect("again");
    assert_eq!(again.status().as_u16(), 401, "a login link works once");
    let bad = http
        .get(s.url("/login?token=nope"))
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status().as_u16(), 401);
    s.stop().await;
}

async fn shutdown_drains_then_leaves_the_rest_resumable(b: Backend) {
    let dir = std::env::temp_dir().join(format!("orcheo-shutdown-{}", uuid::Uuid::new_v4()));
    let store = orcheo_store::testing::fresh_config(b, &dir)
        .await
        .expect("db");
    let cfg = |grace: f64| Config {
        port: 0,
        data_dir: dir.clone(),
        database_url: store.database_url.clone(),
        lease_ttl_secs: 2.0,
        shutdown_grace_secs: grace,
        ..Config::default()
    };
    let (server, welcome) = Server::start(cfg(5.0)).await.expect("start");
    let key = welcome.admin_key.expect("key");
    let http = reqwest::Client::new();
    let base = server.url();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    post(
        "/api/workflows",
        json!({"id": "short", "document": sleeper(300)}),
    )
    .await
    .expect("wf");
    post(
        "/api/workflows",
        json!({"id": "long", "document": sleeper(20_000)}),
    )
    .await
    .expect("wf");
    let short: Value = post("/api/runs", json!({"workflow_id": "short"}))
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    let short = short["id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A graceful stop lets the short run finish.
    server.shutdown().await.expect("shutdown");
    let (server, _) = Server::start(cfg(0.2)).await.expect("restart");
    let run = server.state.store.get_run(&short).await.expect("run");
    assert_eq!(run.status.as_str(), "completed", "drained before stopping");
    assert_eq!(run.attempts, 1);
    // A long run outlives the grace period: it stays resumable and finishes after a restart.
    let base = server.url();
    let long: Value = http
        .post(format!("{base}/api/runs"))
        .bearer_auth(&key)
        .json(&json!({"workflow_id": "long"}))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    let long = long["id"].as_str().expect("id").to_string();
    for _ in 0..100 {
        if server
            .state
            .store
            .get_run(&long)
            .await
            .expect("run")
            .status
            .as_str()
            == "running"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.shutdown().await.expect("shutdown");
    let (server, _) = Server::start(cfg(0.2)).await.expect("restart");
    let r = server.state.store.get_run(&long).await.expect("run");
    assert!(
        !r.status.is_terminal(),
        "left unfinished, not cancelled: {:?}",
        r.status
    );
    let events = server
        .state
        .store
        .list_events(&long, 0, 1000)
        .await
        .expect("events");
    assert!(
        !events.iter().any(|e| e.kind == "run_cancelled"),
        "shutdown does not cancel runs"
    );
    let cps = server
        .state
        .store
        .list_checkpoints(&long)
        .await
        .expect("checkpoints");
    assert!(!cps.is_empty(), "the run checkpointed before the stop");
    // The restarted server takes it over (its lease was released at shutdown).
    let mut taken = false;
    for _ in 0..150 {
        let r = server.state.store.get_run(&long).await.expect("run");
        if r.attempts == 2 && r.status.as_str() == "running" {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken, "the restarted server resumed the run");
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
