//! Cron triggers on a real server: ticks fire runs once each, pause stops them, overlap
//! policies hold, and two servers on one PostgreSQL fire each tick once.

mod common;

use common::*;
use orcheo_server::{Config, Server};
use orcheo_store::Backend;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

both!(
    every_second_fires_each_tick_once,
    overlap_skip_does_not_pile_up,
    overlap_queue_one_and_cancel_previous,
    schedules_declared_in_documents_follow_versions
);

async fn schedules_declared_in_documents_follow_versions(b: Backend) {
    let s = TestServer::start(b).await;
    let mut doc = example("nightly-sales-report");
    s.push("nightly", doc.clone()).await;
    let list = s.ok("GET", "/api/triggers?workflow_id=nightly", None).await;
    let mut ids: Vec<(String, bool)> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap_or("").to_string(),
                t["enabled"] == json!(true),
            )
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            ("nightly:every-morning".to_string(), true),
            ("nightly:month-end".to_string(), false)
        ]
    );
    let next = s
        .ok(
            "GET",
            "/api/triggers/nightly:every-morning/next?count=1",
            None,
        )
        .await;
    let t: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(next["next"][0].clone()).expect("time");
    let local = t.with_timezone(&chrono_tz::Europe::Berlin);
    assert_eq!(local.format("%H:%M").to_string(), "06:00");
    // A new version without month-end and with another time: updated and removed.
    doc["triggers"] = json!([{"id": "every-morning", "type": "cron", "config": {"expression": "30 5 * * *", "timezone": "Europe/Berlin", "input": {"sales": []}}}]);
    s.ok(
        "POST",
        "/api/workflows/nightly/versions",
        Some(json!({"document": doc})),
    )
    .await;
    let list = s.ok("GET", "/api/triggers?workflow_id=nightly", None).await;
    let items = list.as_array().expect("list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["config"]["expression"], "30 5 * * *");
    // A bad schedule in a document is refused, and no version is made.
    doc["triggers"][0]["config"]["expression"] = json!("99 * * * *");
    let (st, p) = s
        .call(
            "POST",
            "/api/workflows/nightly/versions",
            Some(json!({"document": doc})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    assert!(
        p["detail"].as_str().unwrap_or("").contains("every-morning"),
        "{p}"
    );
    let w = s.ok("GET", "/api/workflows/nightly", None).await;
    assert_eq!(w["latest_version"], 2);
    s.stop().await;
}

async fn overlap_queue_one_and_cancel_previous(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("q", sleeper(2_500)).await;
    s.ok(
        "POST",
        "/api/triggers/cron",
        Some(json!({"workflow_id": "q", "expression": "* * * * * *", "overlap": "queue_one"})),
    )
    .await;
    s.push("c", sleeper(20_000)).await;
    s.ok(
        "POST",
        "/api/triggers/cron",
        Some(
            json!({"workflow_id": "c", "expression": "* * * * * *", "overlap": "cancel_previous"}),
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(4200)).await;
    // queue_one: the first run takes 2.5 s; one tick waits and starts when it ends, the
    // others are dropped, so two runs exist and they never overlap. On a loaded machine the
    // queued run may start late: wait for it (a third can only come 2.5 s after it).
    let mut q = cron_runs(&s, "q").await;
    for _ in 0..150 {
        if q.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        q = cron_runs(&s, "q").await;
    }
    assert_eq!(q.len(), 2, "one ran, one queued behind it: {q:?}");
    q.sort_by_key(|r| r["created_at"].as_str().unwrap_or("").to_string());
    let first = s
        .ok(
            "GET",
            &format!("/api/runs/{}", q[0]["id"].as_str().unwrap_or("")),
            None,
        )
        .await;
    let second = s
        .ok(
            "GET",
            &format!("/api/runs/{}", q[1]["id"].as_str().unwrap_or("")),
            None,
        )
        .await;
    assert_eq!(first["status"], "completed", "{first}");
    let ended: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(first["finished_at"].clone()).expect("finished");
    let began: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(second["created_at"].clone()).expect("created");
    assert!(
        began >= ended,
        "the queued tick waited for the first run: {first} {second}"
    );
    let c = cron_runs(&s, "c").await;
    assert!(c.len() >= 3, "a run per tick: {}", c.len());
    let still: Vec<&Value> = c
        .iter()
        .filter(|r| {
            !["cancelled", "completed", "failed"].contains(&r["status"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(
        still.len() <= 2,
        "cancel_previous keeps one going (plus one being cancelled): {}",
        still.len()
    );
    let cancelled = c.iter().filter(|r| r["status"] == "cancelled").count();
    assert!(cancelled >= 1, "earlier runs were cancelled");
    s.stop().await;
}

async fn cron_runs(s: &TestServer, wf: &str) -> Vec<Value> {
    let v = s
        .ok(
            "GET",
            &format!("/api/runs?workflow_id={wf}&limit=500"),
            None,
        )
        .await;
    v["items"].as_array().cloned().unwrap_or_default()
}

async fn every_second_fires_each_tick_once(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("tick", chain(1)).await;
    let (st, p) = s
        .call(
            "POST",
            "/api/triggers/cron",
            Some(json!({"workflow_id": "tick", "expression": "61 * * * *"})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    let (st, p) = s.call("POST", "/api/triggers/cron", Some(json!({"workflow_id": "tick", "expression": "* * * * *", "timezone": "Nowhere/City"}))).await;
    assert_eq!(st, 422);
    assert!(p["detail"].as_str().unwrap_or("").contains("IANA"), "{p}");
    let t = s.ok("POST", "/api/triggers/cron", Some(json!({"workflow_id": "tick", "expression": "* * * * * *", "input": {"who": "cron"}}))).await;
    let id = t["id"].as_str().expect("id").to_string();
    let next = s
        .ok("GET", &format!("/api/triggers/{id}/next?count=3"), None)
        .await;
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        serde_json::from_value(next["next"].clone()).expect("times");
    assert_eq!(times.len(), 3);
    assert_eq!((times[1] - times[0]).num_seconds(), 1);
    assert!(!next["description"].as_str().unwrap_or("").is_empty());
    tokio::time::sleep(Duration::from_millis(3200)).await;
    s.ok("POST", &format!("/api/triggers/{id}/pause"), None)
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let runs = cron_runs(&s, "tick").await;
    assert!(runs.len() >= 2, "ticks fired: {}", runs.len());
    let mut ticks: Vec<String> = runs
        .iter()
        .map(|r| {
            r["origin"]["scheduled_for"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    ticks.sort();
    let n = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), n, "each tick once");
    assert!(runs
        .iter()
        .all(|r| r["origin"]["kind"] == "cron" && r["input"]["who"] == "cron"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        cron_runs(&s, "tick").await.len(),
        n,
        "a paused schedule does not fire"
    );
    s.stop().await;
}

async fn overlap_skip_does_not_pile_up(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("slow", sleeper(2500)).await;
    s.ok(
        "POST",
        "/api/triggers/cron",
        Some(json!({"workflow_id": "slow", "expression": "* * * * * *", "overlap": "skip"})),
    )
    .await;
    s.push("slow2", sleeper(2500)).await;
    s.ok(
        "POST",
        "/api/triggers/cron",
        Some(json!({"workflow_id": "slow2", "expression": "* * * * * *", "overlap": "allow"})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let skip = cron_runs(&s, "slow").await.len();
    let allow = cron_runs(&s, "slow2").await.len();
    assert!(skip <= 2, "skip keeps one run at a time: {skip}");
    assert!(allow >= 3, "allow starts one per tick: {allow}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_fire_each_tick_once() {
    let dir = std::env::temp_dir().join(format!("orcheo-cron2-{}", uuid::Uuid::new_v4()));
    let url = orcheo_store::testing::fresh_postgres_url()
        .await
        .expect("pg");
    let cfg = |sub: &str| Config {
        port: 0,
        data_dir: dir.join(sub),
        database_url: Some(url.clone()),
        // Servers on one database share the vault key.
        vault_key_file: Some(dir.join("vault.key")),
        ..Config::default()
    };
    let (a, welcome) = Server::start(cfg("a")).await.expect("a");
    let (b, _) = Server::start(cfg("b")).await.expect("b");
    let key = welcome.admin_key.expect("key");
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", a.url()))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    post(
        "/api/workflows",
        json!({"id": "tick", "document": chain(1)}),
    )
    .await
    .expect("wf");
    let t: Value = post(
        "/api/triggers/cron",
        json!({"workflow_id": "tick", "expression": "* * * * * *", "overlap": "allow"}),
    )
    .await
    .expect("cron")
    .json()
    .await
    .expect("json");
    assert!(t["id"].is_string(), "{t}");
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let runs: Value = http
        .get(format!("{}/api/runs?workflow_id=tick&limit=500", b.url()))
        .bearer_auth(&key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let mut per_tick: HashMap<String, usize> = HashMap::new();
    for r in runs["items"].as_array().expect("items") {
        *per_tick
            .entry(
                r["origin"]["scheduled_for"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            .or_default() += 1;
    }
    assert!(per_tick.len() >= 3, "ticks fired: {per_tick:?}");
    assert!(
        per_tick.values().all(|n| *n == 1),
        "each tick once across two servers: {per_tick:?}"
    );
    let mut ticks: Vec<chrono::DateTime<chrono::Utc>> =
        per_tick.keys().map(|k| k.parse().expect("time")).collect();
    ticks.sort();
    assert!(
        ticks.windows(2).all(|w| (w[1] - w[0]).num_seconds() == 1),
        "no tick lost: {ticks:?}"
    );
    a.shutdown().await.expect("a");
    b.shutdown().await.expect("b");
    let _ = std::fs::remove_dir_all(&dir);
}
