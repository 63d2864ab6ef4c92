//! The HTTP API end to end, on SQLite and PostgreSQL alike.

mod common;

use common::*;
use orcheo_store::Backend;
use serde_json::{json, Value};
use std::time::Duration;

both!(
    workflows_versions_and_search,
    runs_lifecycle_idempotency_and_history,
    waiting_runs_resume_cancel_and_fork,
    cancel_running_and_concurrency_limit,
    errors_are_problem_json,
    sub_workflows_by_id_come_from_the_store,
    one_of_two_interrupts_resumed_at_a_time,
    batches_and_dead_letters,
    debug_mode_records_node_inputs,
);

async fn debug_mode_records_node_inputs(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("chain", chain(2)).await;
    let v = s
        .ok(
            "POST",
            "/api/runs",
            Some(json!({"workflow_id": "chain", "input": {"x": 7}, "debug": true})),
        )
        .await;
    let run = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["origin"]["debug"], true);
    s.wait_for(&run, &["completed"]).await;
    let evs = s.events(&run).await;
    let inputs: Vec<&Value> = evs.iter().filter(|e| e["type"] == "node_input").collect();
    assert_eq!(inputs.len(), 2, "one per node execution");
    assert_eq!(inputs[0]["node"], "s0");
    assert_eq!(inputs[0]["config"], json!({"values": {"v0": 0}}));
    assert_eq!(inputs[1]["state"]["v0"], 0, "the state the second node saw");
    assert_eq!(inputs[1]["state"]["x"], 7);
    // Without debug there are none.
    let plain = s.start_run("chain", json!({})).await;
    s.wait_for(&plain, &["completed"]).await;
    assert!(!s
        .events(&plain)
        .await
        .iter()
        .any(|e| e["type"] == "node_input"));
    s.stop().await;
}

async fn batches_and_dead_letters(b: Backend) {
    let s = TestServer::start(b).await;
    let doc = json!({"format": "orcheo.workflow/1", "name": "picky",
        "input_schema": {"type": "object", "required": ["n"]},
        "nodes": [{"id": "check", "type": "if_else", "config": {"condition": "{{ input.n | int > 2 }}"}},
                  {"id": "boom", "type": "fail", "config": {"message": "{{ 'too big: ' ~ input.n }}"}},
                  {"id": "ok", "type": "noop"}],
        "edges": [{"source": "__start__", "target": "check"}, {"source": "check", "target": "boom", "branch": "true"},
                  {"source": "check", "target": "ok", "branch": "false"}, {"source": "boom", "target": "__end__"}, {"source": "ok", "target": "__end__"}]});
    s.push("picky", doc).await;
    // JSON batch.
    let v = s
        .ok(
            "POST",
            "/api/runs/batch",
            Some(json!({"workflow_id": "picky", "inputs": [{"n": 1}, {"n": 5}]})),
        )
        .await;
    assert_eq!(v["run_ids"].as_array().map(Vec::len), Some(2));
    // One bad input: nothing starts, and the problem names it.
    let (st, p) = s
        .call(
            "POST",
            "/api/runs/batch",
            Some(json!({"workflow_id": "picky", "inputs": [{"n": 1}, {"x": 1}]})),
        )
        .await;
    assert_eq!(st, 422);
    assert_eq!(p["errors"][0]["index"], 1, "{p}");
    // CSV and JSON Lines uploads.
    let csv = s
        .http
        .post(s.url("/api/runs/batch?workflow_id=picky"))
        .bearer_auth(&s.admin)
        .header("content-type", "text/csv")
        .body("n,label\n2,\"small, fine\"\n9,big\n")
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status().as_u16(), 202);
    let jsonl = s
        .http
        .post(s.url("/api/runs/batch?workflow_id=picky"))
        .bearer_auth(&s.admin)
        .header("content-type", "application/x-ndjson")
        .body("{\"n\": 0}\n\n{\"n\": 7}\n")
        .send()
        .await
        .expect("jsonl");
    assert_eq!(jsonl.status().as_u16(), 202);
    let ids: Vec<String> = serde_json::from_value::<Value>(jsonl.json().await.expect("json"))
        .expect("v")["run_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|i| i.as_str().map(String::from))
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        s.wait_for(id, &["completed", "failed"]).await;
    }
    // Let every run finish, then the dead letters are the three big ones.
    let all = s
        .ok("GET", "/api/runs?workflow_id=picky&limit=100", None)
        .await;
    for r in all["items"].as_array().expect("items") {
        s.wait_for(r["id"].as_str().expect("id"), &["completed", "failed"])
            .await;
    }
    let dead = s
        .ok("GET", "/api/dead-letters?workflow_id=picky", None)
        .await;
    let items = dead["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{dead}");
    assert!(items.iter().all(|d| d["run"]["error"]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("too big")
        && d["last_checkpoint"]["id"].is_u64()));
    assert!(items
        .iter()
        .any(|d| d["run"]["origin"]["batch"].is_string()));
    // Re-drive one, then the rest in bulk.
    let one = items[0]["run"]["id"].as_str().expect("id").to_string();
    let r = s
        .ok(
            "POST",
            "/api/dead-letters/redrive",
            Some(json!({"run_ids": [one, "nope"]})),
        )
        .await;
    assert_eq!(r["retried"].as_array().map(Vec::len), Some(1));
    assert_eq!(r["skipped"][0]["run_id"], "nope");
    s.wait_for(&one, &["failed"]).await;
    let r = s
        .ok(
            "POST",
            "/api/dead-letters/redrive",
            Some(json!({"workflow_id": "picky"})),
        )
        .await;
    assert_eq!(r["retried"].as_array().map(Vec::len), Some(3));
    s.stop().await;
}

async fn one_of_two_interrupts_resumed_at_a_time(b: Backend) {
    let s = TestServer::start(b).await;
    let doc = json!({"format": "orcheo.workflow/1", "name": "two approvals",
    "state": {"decisions": {"reducer": "append", "default": []}},
    "nodes": [
        {"id": "legal", "type": "human_approval", "config": {"message": "Legal OK?", "options": ["approve", "reject"]}},
        {"id": "finance", "type": "human_approval", "config": {"message": "Finance OK?", "options": ["approve", "reject"]}},
        {"id": "legal_said", "type": "set_variables", "config": {"values": {"decisions": ["legal"]}}},
        {"id": "finance_said", "type": "set_variables", "config": {"values": {"decisions": ["finance"]}}},
        {"id": "done", "type": "noop"}
    ],
    "edges": [
        {"source": "__start__", "target": "legal"}, {"source": "__start__", "target": "finance"},
        {"source": "legal", "target": "legal_said"}, {"source": "finance", "target": "finance_said"},
        {"source": "legal_said", "target": "done"}, {"source": "finance_said", "target": "done"},
        {"source": "done", "target": "__end__"}
    ]});
    s.push("two", doc).await;
    let run = s.start_run("two", json!({})).await;
    let w = s.wait_for(&run, &["waiting"]).await;
    assert_eq!(w["waiting"].as_array().map(Vec::len), Some(2), "{w}");
    let (st, p) = s
        .call(
            "POST",
            &format!("/api/runs/{run}/resume"),
            Some(json!({"value": "approve", "node": "nobody"})),
        )
        .await;
    assert_eq!(st, 409);
    assert!(p["detail"].as_str().unwrap_or("").contains("legal"), "{p}");
    s.ok(
        "POST",
        &format!("/api/runs/{run}/resume"),
        Some(json!({"value": "approve", "node": "legal"})),
    )
    .await;
    // Legal moves on; finance still waits.
    let mut still = Value::Null;
    for _ in 0..200 {
        let v = s.ok("GET", &format!("/api/runs/{run}"), None).await;
        if v["status"] == "waiting" && v["waiting"].as_array().map(Vec::len) == Some(1) {
            still = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(still["waiting"][0]["node"], "finance", "{still}");
    s.ok(
        "POST",
        &format!("/api/runs/{run}/resume"),
        Some(json!({"value": "approve", "node": "finance"})),
    )
    .await;
    let done = s.wait_for(&run, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    let mut d: Vec<String> =
        serde_json::from_value(done["output"]["state"]["decisions"].clone()).expect("decisions");
    d.sort();
    assert_eq!(d, vec!["finance", "legal"]);
    s.stop().await;
}

async fn sub_workflows_by_id_come_from_the_store(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("child", chain(2)).await;
    let parent = json!({"format": "orcheo.workflow/1", "name": "parent",
        "nodes": [{"id": "call", "type": "sub_workflow",
                   "config": {"workflow": {"id": "child", "version": 1}, "input": {"from": "{{ input.who }}"}}}],
        "edges": [{"source": "__start__", "target": "call"}, {"source": "call", "target": "__end__"}]});
    s.push("parent", parent.clone()).await;
    let run = s.start_run("parent", json!({"who": "Ada"})).await;
    let done = s.wait_for(&run, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    let child_state = &done["output"]["results"]["call"];
    assert_eq!(child_state["v1"], 1, "{done}");
    assert_eq!(child_state["from"], "Ada", "{done}");
    // A missing child is a clear run error, not a crash.
    let mut broken = parent;
    broken["nodes"][0]["config"]["workflow"] = json!({"id": "ghost"});
    s.push("broken-parent", broken).await;
    let run = s.start_run("broken-parent", json!({})).await;
    let failed = s.wait_for(&run, &["failed", "completed"]).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("ghost"),
        "{failed}"
    );
    s.stop().await;
}

async fn workflows_versions_and_search(b: Backend) {
    let s = TestServer::start(b).await;
    let mut doc = chain(2);
    doc["tags"] = json!(["billing"]);
    let created = s.push("billing-chain", doc.clone()).await;
    assert_eq!(created["latest_version"], 1);
    assert_eq!(created["tags"], json!(["billing"]));
    s.push("other", example("order-routing")).await;
    for i in 0..3 {
        s.ok(
            "POST",
            "/api/workflows",
            Some(json!({"document": chain(1), "tags": [format!("t{i}")]})),
        )
        .await;
    }
    // Search, tag filter, cursor pagination.
    let q = s.ok("GET", "/api/workflows?q=ORDER", None).await;
    assert_eq!(q["items"].as_array().map(Vec::len), Some(1));
    let t = s.ok("GET", "/api/workflows?tag=billing", None).await;
    assert_eq!(t["items"][0]["id"], "billing-chain");
    let p1 = s.ok("GET", "/api/workflows?limit=2", None).await;
    let c = p1["next_cursor"].as_str().expect("cursor").to_string();
    let p2 = s
        .ok("GET", &format!("/api/workflows?limit=2&cursor={c}"), None)
        .await;
    let p3 = s
        .ok(
            "GET",
            &format!(
                "/api/workflows?limit=2&cursor={}",
                p2["next_cursor"].as_str().expect("c2")
            ),
            None,
        )
        .await;
    assert!(p3.get("next_cursor").is_none());
    let total = [&p1, &p2, &p3]
        .iter()
        .map(|p| p["items"].as_array().map(Vec::len).unwrap_or(0))
        .sum::<usize>();
    assert_eq!(total, 5);

    // Versions: a changed document makes version 2; the same again makes nothing.
    let mut doc2 = doc.clone();
    doc2["nodes"][1]["config"]["values"]["v1"] = json!("changed");
    let (st, v2) = s
        .call(
            "POST",
            "/api/workflows/billing-chain/versions",
            Some(json!({"document": doc2, "message": "tweak"})),
        )
        .await;
    assert_eq!(
        (st, v2["version"].clone(), v2["created"].clone()),
        (201, json!(2), json!(true))
    );
    let (st, same) = s
        .call(
            "POST",
            "/api/workflows/billing-chain/versions",
            Some(json!({"document": doc2})),
        )
        .await;
    assert_eq!((st, same["created"].clone()), (200, json!(false)));
    let versions = s
        .ok("GET", "/api/workflows/billing-chain/versions", None)
        .await;
    assert_eq!(
        versions["items"]
            .as_array()
            .map(|v| v.iter().map(|x| x["version"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(2), json!(1)])
    );
    assert_eq!(versions["items"][0]["message"], "tweak");
    let v1 = s
        .ok("GET", "/api/workflows/billing-chain/versions/1", None)
        .await;
    assert_eq!(v1["document"]["nodes"][1]["config"]["values"]["v1"], 1);
    assert_eq!(
        v1["content_hash"].as_str().map(str::len),
        Some(64),
        "SHA-256"
    );
    let diff = s
        .ok("GET", "/api/workflows/billing-chain/diff?from=1&to=2", None)
        .await;
    assert_eq!(diff["nodes_changed"][0]["id"], "s1");
    assert_eq!(
        diff["nodes_changed"][0]["changes"][0]["path"],
        "/config/values/v1"
    );
    assert_eq!(diff["identical"], false);

    // Metadata update, and a document through PUT.
    let mut doc3 = doc2.clone();
    doc3["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(json!({"id": "extra", "type": "noop"}));
    doc3["edges"] = json!([{"source": "__start__", "target": "s0"}, {"source": "s0", "target": "s1"}, {"source": "s1", "target": "extra"}, {"source": "extra", "target": "__end__"}]);
    let put = s.ok("PUT", "/api/workflows/billing-chain", Some(json!({"name": "Renamed", "tags": ["x", "y"], "document": doc3, "max_concurrency": 3}))).await;
    assert_eq!(
        (
            put["name"].clone(),
            put["latest_version"].clone(),
            put["max_concurrency"].clone()
        ),
        (json!("Renamed"), json!(3), json!(3))
    );
    let got = s.ok("GET", "/api/workflows/billing-chain", None).await;
    assert_eq!(got["document"]["nodes"].as_array().map(Vec::len), Some(3));
    let d = s
        .ok("GET", "/api/workflows/billing-chain/diff?from=2", None)
        .await;
    assert_eq!(d["nodes_added"][0]["id"], "extra");
    assert_eq!(d["edges_added"].as_array().map(Vec::len), Some(2));

    // Validation endpoint and invalid documents.
    let bad = json!({"format": "orcheo.workflow/1", "name": "bad", "nodes": [{"id": "a", "type": "no_such"}], "edges": [{"source": "__start__", "target": "a"}, {"source": "a", "target": "ghost"}]});
    let v = s
        .ok(
            "POST",
            "/api/workflows/validate",
            Some(json!({"document": bad})),
        )
        .await;
    assert_eq!(v["valid"], false);
    assert!(v["problems"].as_array().map(Vec::len).unwrap_or(0) >= 2);
    let (st, p) = s
        .call("POST", "/api/workflows", Some(json!({"document": bad})))
        .await;
    assert_eq!(st, 422);
    assert!(
        p["errors"].as_array().map(Vec::len).unwrap_or(0) >= 2,
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap_or("").contains("error"), "{p}");

    // Delete, then it is gone; audit log recorded each mutation.
    let (st, _) = s.call("DELETE", "/api/workflows/other", None).await;
    assert_eq!(st, 204);
    let (st, _) = s.call("GET", "/api/workflows/other", None).await;
    assert_eq!(st, 404);
    let audit = s.ok("GET", "/api/audit?limit=100", None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "workflow.create",
        "workflow.version",
        "workflow.update",
        "workflow.delete",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(audit["items"][0]["actor"]
        .as_str()
        .unwrap_or("")
        .contains("admin"));
    s.stop().await;
}

async fn runs_lifecycle_idempotency_and_history(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("chain", chain(5)).await;
    let run = s.start_run("chain", json!({"x": 1})).await;
    let done = s.wait_for(&run, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["state"]["v4"], 4);
    assert_eq!(done["output"]["state"]["x"], 1);
    assert_eq!(done["attempts"], 1);
    // Events: numbered 1..n without gaps, closed by run_completed, pageable.
    let evs = s.events(&run).await;
    let seqs: Vec<u64> = evs.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        evs.last().map(|e| e["type"].clone()),
        Some(json!("run_completed"))
    );
    let completed: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "node_completed")
        .filter_map(|e| e["node"].as_str())
        .collect();
    assert_eq!(completed, vec!["s0", "s1", "s2", "s3", "s4"]);
    let page = s
        .ok(
            "GET",
            &format!("/api/runs/{run}/events?after=3&limit=2"),
            None,
        )
        .await;
    assert_eq!(
        page["events"]
            .as_array()
            .map(|a| a.iter().map(|e| e["seq"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(4), json!(5)])
    );
    assert_eq!(page["next_after"], 5);
    // Checkpoints.
    let cps = s
        .ok("GET", &format!("/api/runs/{run}/checkpoints"), None)
        .await;
    let n = cps.as_array().map(Vec::len).unwrap_or(0);
    assert!(n >= 6, "{cps}");
    let last = s
        .ok(
            "GET",
            &format!("/api/runs/{run}/checkpoints/{}", n - 1),
            None,
        )
        .await;
    assert_eq!(last["status"], "completed");
    assert_eq!(last["state"]["v4"], 4);

    // Idempotency: the same key gives the same run.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = s
            .http
            .post(s.url("/api/runs"))
            .bearer_auth(&s.admin)
            .header("Idempotency-Key", "order-42")
            .json(&json!({"workflow_id": "chain", "input": {}}))
            .send()
            .await
            .expect("post");
        let status = res.status().as_u16();
        let v: Value = res.json().await.expect("json");
        ids.push((status, v["id"].as_str().expect("id").to_string()));
    }
    assert_eq!(ids[0].0, 202);
    assert!(
        ids.iter()
            .skip(1)
            .all(|(st, id)| *st == 200 && *id == ids[0].1),
        "{ids:?}"
    );
    // Concurrent duplicates too.
    let futs = (0..8).map(|_| {
        let http = s.http.clone();
        let url = s.url("/api/runs");
        let key = s.admin.clone();
        async move {
            let v: Value = http
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "burst")
                .json(&json!({"workflow_id": "chain"}))
                .send()
                .await
                .expect("post")
                .json()
                .await
                .expect("json");
            v["id"].as_str().map(String::from)
        }
    });
    let got: Vec<Option<String>> = futures::future::join_all(futs).await;
    assert!(got.iter().all(|g| g.is_some() && *g == got[0]), "{got:?}");

    // Listing with filters.
    s.wait_for(&ids[0].1, &["completed"]).await;
    let list = s
        .ok(
            "GET",
            "/api/runs?workflow_id=chain&status=completed&limit=1",
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert!(list["next_cursor"].is_string());
    let since = chrono::Utc::now() + chrono::Duration::hours(1);
    let none = s
        .ok(
            "GET",
            &format!("/api/runs?since={}", since.to_rfc3339().replace('+', "%2B")),
            None,
        )
        .await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    let (st, p) = s.call("GET", "/api/runs?status=bogus", None).await;
    assert_eq!(st, 400);
    assert!(p["detail"]
        .as_str()
        .unwrap_or("")
        .contains("unknown status"));

    // Input checked against input_schema at the door.
    s.push("refund", example("approval-refund")).await;
    let (st, p) = s
        .call(
            "POST",
            "/api/runs",
            Some(json!({"workflow_id": "refund", "input": {"order_id": 5}})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    assert!(p["errors"].as_array().is_some_and(|e| !e.is_empty()));
    let (st, _) = s
        .call("POST", "/api/runs", Some(json!({"workflow_id": "nope"})))
        .await;
    assert_eq!(st, 404);

    // A failing run, retried from its checkpoint.
    let failing = json!({"format": "orcheo.workflow/1", "name": "fails",
        "nodes": [{"id": "ok", "type": "set_variables", "config": {"values": {"a": 1}}},
                  {"id": "boom", "type": "fail", "config": {"message": "{{ 'boom ' ~ state.a }}"}}],
        "edges": [{"source": "__start__", "target": "ok"}, {"source": "ok", "target": "boom"}, {"source": "boom", "target": "__end__"}]});
    s.push("fails", failing).await;
    let r = s.start_run("fails", json!({})).await;
    let f = s.wait_for(&r, &["failed"]).await;
    assert_eq!(f["error"]["message"], "boom 1");
    assert_eq!(f["failed_node"], "boom");
    let (st, _) = s.call("POST", &format!("/api/runs/{r}/retry"), None).await;
    assert_eq!(st, 202);
    let f2 = s.wait_for(&r, &["failed"]).await;
    assert_eq!(f2["attempts"], 2);
    let evs = s.events(&r).await;
    let ok_runs = evs
        .iter()
        .filter(|e| e["type"] == "node_started" && e["node"] == "ok")
        .count();
    assert_eq!(ok_runs, 1, "the finished node is not run again on retry");
    let (st, _) = s
        .call("POST", &format!("/api/runs/{run}/retry"), None)
        .await;
    assert_eq!(st, 409, "only failed runs retry");
    s.stop().await;
}

async fn waiting_runs_resume_cancel_and_fork(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("refund", example("approval-refund")).await;
    let input = json!({"order_id": "A-7", "customer": "Ada", "amount": 250});
    let run = s.start_run("refund", input.clone()).await;
    let w = s.wait_for(&run, &["waiting"]).await;
    assert!(
        w["waiting"].as_array().is_some_and(|a| !a.is_empty()),
        "{w}"
    );
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/runs/{run}/resume"),
            Some(json!({"value": "approve"})),
        )
        .await;
    assert_eq!(st, 202);
    let done = s.wait_for(&run, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["state"]["status"], "refunded");
    let (st, p) = s
        .call(
            "POST",
            &format!("/api/runs/{run}/resume"),
            Some(json!({"value": "approve"})),
        )
        .await;
    assert_eq!(st, 409, "{p}");

    // Cancel a waiting run: cancelled at once, with a closing event.
    let r2 = s.start_run("refund", input.clone()).await;
    s.wait_for(&r2, &["waiting"]).await;
    let c = s.ok("POST", &format!("/api/runs/{r2}/cancel"), None).await;
    assert_eq!(c["result"], "cancelled");
    let evs = s.events(&r2).await;
    assert_eq!(
        evs.last().map(|e| e["type"].clone()),
        Some(json!("run_cancelled"))
    );
    let seqs: Vec<u64> = evs.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let (st, _) = s
        .call("POST", &format!("/api/runs/{r2}/cancel"), None)
        .await;
    assert_eq!(st, 409);

    // Fork the finished run from its first checkpoint with edited state: a new run.
    let forked = s
        .ok(
            "POST",
            &format!("/api/runs/{run}/fork"),
            Some(json!({"checkpoint": 0, "state": {"amount": 50}})),
        )
        .await;
    let fid = forked["id"].as_str().expect("id").to_string();
    assert_eq!(forked["origin"]["kind"], "fork");
    let f = s.wait_for(&fid, &["completed", "waiting", "failed"]).await;
    assert_ne!(f["status"], "failed", "{f}");
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/runs/{run}/fork"),
            Some(json!({"checkpoint": 999})),
        )
        .await;
    assert_eq!(st, 404);
    s.stop().await;
}

async fn cancel_running_and_concurrency_limit(b: Backend) {
    let s = TestServer::start(b).await;
    s.push("sleepy", sleeper(30_000)).await;
    let run = s.start_run("sleepy", json!({})).await;
    s.wait_for(&run, &["running"]).await;
    // Wait for the delay node to start.
    for _ in 0..100 {
        if s.events(&run)
            .await
            .iter()
            .any(|e| e["type"] == "node_started")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = s.ok("POST", &format!("/api/runs/{run}/cancel"), None).await;
    assert_eq!(c["result"], "cancelling");
    let done = s
        .wait_for(&run, &["cancelled", "completed", "failed"])
        .await;
    assert_eq!(done["status"], "cancelled");

    // max_concurrency 1: three runs never overlap.
    s.ok(
        "POST",
        "/api/workflows",
        Some(json!({"id": "one-at-a-time", "document": sleeper(150), "max_concurrency": 1})),
    )
    .await;
    let runs: Vec<String> =
        futures::future::join_all((0..3).map(|_| s.start_run("one-at-a-time", json!({})))).await;
    let mut spans = Vec::new();
    for r in &runs {
        let v = s.wait_for(r, &["completed"]).await;
        let evs = s.events(r).await;
        let start = evs
            .iter()
            .find(|e| e["type"] == "run_started")
            .and_then(|e| e["ts"].as_str())
            .map(String::from)
            .expect("start");
        let end = v["finished_at"].as_str().expect("end").to_string();
        spans.push((
            chrono::DateTime::parse_from_rfc3339(&start).expect("t"),
            chrono::DateTime::parse_from_rfc3339(&end).expect("t"),
        ));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "runs overlapped: {spans:?}");
    }
    s.stop().await;
}

async fn errors_are_problem_json(b: Backend) {
    let s = TestServer::start_with(b, |c| c.body_limit = 64 * 1024).await;
    let check = |res: reqwest::Response, status: u16| async move {
        assert_eq!(res.status().as_u16(), status);
        assert_eq!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let v: Value = res.json().await.expect("json");
        assert_eq!(v["status"], status);
        assert!(v["type"]
            .as_str()
            .unwrap_or("")
            .starts_with("https://orcheo.dev/problems/"));
        assert!(!v["detail"].as_str().unwrap_or("").is_empty());
        v
    };
    let post = |body: &'static str, ct: &'static str| {
        s.http
            .post(s.url("/api/workflows"))
            .bearer_auth(&s.admin)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let v = check(
        post("{not json", "application/json").await.expect("send"),
        400,
    )
    .await;
    assert!(v["detail"]
        .as_str()
        .unwrap_or("")
        .contains("not valid JSON"));
    check(post("{}", "text/plain").await.expect("send"), 415).await;
    let v = check(
        post("{\"document\": {}, \"surprise\": 1}", "application/json")
            .await
            .expect("send"),
        422,
    )
    .await;
    assert!(
        v["detail"].as_str().unwrap_or("").contains("surprise"),
        "{v}"
    );
    let big = format!(
        "{{\"document\": {{\"name\": \"{}\"}}}}",
        "x".repeat(100 * 1024)
    );
    let res = s
        .http
        .post(s.url("/api/workflows"))
        .bearer_auth(&s.admin)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    check(res, 413).await;
    let res = s
        .http
        .get(s.url("/api/nothing-here"))
        .send()
        .await
        .expect("send");
    check(res, 404).await;
    let res = s
        .http
        .get(s.url("/api/runs?cursor=zz"))
        .bearer_auth(&s.admin)
        .send()
        .await
        .expect("send");
    check(res, 400).await;
    let res = s
        .http
        .get(s.url("/api/runs/does-not-exist"))
        .bearer_auth(&s.admin)
        .send()
        .await
        .expect("send");
    check(res, 404).await;
    let res = s
        .http
        .get(s.url("/api/runs?limit=abc"))
        .bearer_auth(&s.admin)
        .send()
        .await
        .expect("send");
    check(res, 400).await;
    // Health needs no key; readiness reports the database.
    let h: Value = s
        .http
        .get(s.url("/api/health"))
        .send()
        .await
        .expect("h")
        .json()
        .await
        .expect("j");
    assert_eq!(h["status"], "ok");
    let r: Value = s
        .http
        .get(s.url("/api/ready"))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("j");
    assert_eq!(
        r["database"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    s.stop().await;
}
