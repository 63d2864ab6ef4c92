//! Each built-in node, run inside a small workflow on the real engine.

use orcheo_core::checkpoint::{MemoryCheckpointer, RunStatus};
use orcheo_core::engine::{Engine, RunOptions, RunOutcome};
use orcheo_core::event::{EventKind, VecSink};
use orcheo_core::Workflow;
use serde_json::{json, Value};
use std::sync::Arc;

struct H {
    engine: Engine,
    sink: VecSink,
}

fn h() -> H {
    let sink = VecSink::new();
    let engine = Engine::builder(orcheo_nodes::shared_catalog())
        .checkpointer(Arc::new(MemoryCheckpointer::new()))
        .sink(Arc::new(sink.clone()))
        .build();
    H { engine, sink }
}

impl H {
    async fn run(&self, nodes: Value, edges: Value, state: Value, input: Value) -> RunOutcome {
        let doc: Workflow = serde_json::from_value(json!({
            "format": "orcheo.workflow/1", "name": "t", "state": state, "nodes": nodes, "edges": edges
        }))
        .expect("parses");
        let wf = self
            .engine
            .compile(doc)
            .unwrap_or_else(|p| panic!("{p:#?}"));
        self.engine
            .start(&wf, input, RunOptions::default())
            .await
            .expect("starts")
    }
    async fn one(&self, node_type: &str, config: Value, input: Value) -> RunOutcome {
        self.run(
            json!([{ "id": "n", "type": node_type, "config": config }]),
            json!([{ "source": "__start__", "target": "n" }]),
            json!({}),
            input,
        )
        .await
    }
}

#[tokio::test]
async fn set_variables_writes_through_reducers() {
    let h = h();
    let out = h
        .run(
            json!([{ "id": "n", "type": "set_variables", "config": { "values": { "count": "{{ input.k * 2 }}", "name": "x-{{ input.k }}", "tags": ["a"] } } }]),
            json!([{ "source": "__start__", "target": "n" }]),
            json!({ "count": { "reducer": "add", "default": 1 }, "tags": { "reducer": "union", "default": ["a", "b"] } }),
            json!({ "k": 3 }),
        )
        .await;
    assert_eq!(
        out.state,
        json!({ "count": 7, "tags": ["a", "b"], "k": 3, "name": "x-3" })
    );
    assert_eq!(
        out.results["n"],
        json!({ "count": 6, "name": "x-3", "tags": ["a"] })
    );
}

#[tokio::test]
async fn if_else_picks_a_branch() {
    let h = h();
    for (amount, expect) in [(150, "big"), (10, "small")] {
        let out = h
            .run(
                json!([
                    { "id": "check", "type": "if_else", "config": { "condition": "{{ input.amount > 100 }}" } },
                    { "id": "big", "type": "noop" }, { "id": "small", "type": "noop" }
                ]),
                json!([
                    { "source": "__start__", "target": "check" },
                    { "source": "check", "target": "big", "branch": "true" },
                    { "source": "check", "target": "small", "branch": "false" }
                ]),
                json!({}),
                json!({ "amount": amount }),
            )
            .await;
        assert!(
            out.results.get(expect).is_some(),
            "{amount}: {:?}",
            out.results
        );
        assert_eq!(out.results["check"], json!({ "result": amount > 100 }));
        assert_eq!(out.results.as_object().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn switch_matches_cases_in_order_with_default() {
    let h = h();
    let cfg = json!({ "value": "{{ input.p }}", "cases": [
        { "name": "urgent", "equals": "high" }, { "name": "vip", "condition": "{{ input.vip }}" }, { "name": "also_high", "equals": "high" }
    ], "default": "later" });
    for (input, branch) in [
        (json!({"p": "high"}), "urgent"),
        (json!({"p": "low", "vip": true}), "vip"),
        (json!({"p": "low"}), "later"),
    ] {
        let out = h.one("switch", cfg.clone(), input.clone()).await;
        assert_eq!(out.results["n"]["branch"], json!(branch), "{input}");
    }
}

#[tokio::test]
async fn merge_modes() {
    let h = h();
    let cases = [
        (
            json!({"mode": "append", "inputs": [[1, 2], 3, null, [4]]}),
            json!([1, 2, 3, 4]),
        ),
        (
            json!({"mode": "combine", "inputs": [{"a": 1, "b": 1}, {"b": 2}]}),
            json!({"a": 1, "b": 2}),
        ),
        (json!({"mode": "first", "inputs": [null, 2, 3]}), json!(2)),
        (json!({"mode": "last", "inputs": [1, 2, null]}), json!(2)),
        (
            json!({"mode": "by_node", "inputs": ["x", "y"]}),
            json!({"0": "x", "1": "y"}),
        ),
    ];
    for (cfg, expect) in cases {
        let out = h.one("merge", cfg.clone(), json!({})).await;
        assert_eq!(out.results["n"], expect, "{cfg}");
    }
    let out = h
        .one(
            "merge",
            json!({"mode": "combine", "inputs": [{"a": 1}, 5]}),
            json!({}),
        )
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().message.contains("combine needs objects"));
}

#[tokio::test]
async fn merge_defaults_to_the_outputs_of_incoming_branches() {
    let h = h();
    let out = h
        .run(
            json!([
                { "id": "a", "type": "set_variables", "config": { "values": { "x": 1 } } },
                { "id": "b", "type": "set_variables", "config": { "values": { "y": 2 } } },
                { "id": "skipped", "type": "set_variables", "config": { "values": { "z": 3 } } },
                { "id": "m", "type": "merge", "config": { "mode": "by_node" } }
            ]),
            json!([
                { "source": "__start__", "target": "a" }, { "source": "__start__", "target": "b" },
                { "source": "__start__", "target": "skipped", "condition": "{{ false }}" },
                { "source": "a", "target": "m" }, { "source": "b", "target": "m" }, { "source": "skipped", "target": "m" }
            ]),
            json!({}),
            json!({}),
        )
        .await;
    assert_eq!(
        out.results["m"],
        json!({ "a": { "x": 1 }, "b": { "y": 2 } })
    );
}

#[tokio::test]
async fn transform_runs_jq() {
    let h = h();
    let out = h.one("transform", json!({ "expression": "[.orders[] | select(.total > 100) | .id]", "input": "{{ input }}" }), json!({ "orders": [{"id": 1, "total": 50}, {"id": 2, "total": 150}] })).await;
    assert_eq!(out.results["n"], json!([2]));
    let out = h
        .one(
            "transform",
            json!({ "expression": ".[]", "input": [1, 2], "all": true }),
            json!({}),
        )
        .await;
    assert_eq!(out.results["n"], json!([1, 2]));
    let out = h
        .one(
            "transform",
            json!({ "expression": ".a.b", "input": {"a": 1} }),
            json!({}),
        )
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out
        .error
        .unwrap()
        .message
        .starts_with("node `n`: jq runtime error"));
}

#[tokio::test]
async fn template_renders_text() {
    let h = h();
    let out = h.one("template", json!({ "template": "Hi {{ input.name }}: {% for i in input.items %}{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}" }), json!({ "name": "Ada", "items": [1, 2] })).await;
    assert_eq!(out.results["n"], json!({ "text": "Hi Ada: 1, 2" }));
    let out = h
        .one(
            "template",
            json!({ "template": "{{ input.n }}" }),
            json!({ "n": 5 }),
        )
        .await;
    assert_eq!(out.results["n"], json!({ "text": "5" }));
}

#[tokio::test]
async fn debug_logs_the_value() {
    let h = h();
    let out = h
        .one(
            "debug",
            json!({ "message": "look", "value": "{{ input.x }}", "level": "warn" }),
            json!({ "x": [1] }),
        )
        .await;
    assert_eq!(out.results["n"], json!([1]));
    let logs: Vec<_> = h
        .sink
        .run_events(&out.run_id)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::NodeLog { message, data, .. } => Some((message, data)),
            _ => None,
        })
        .collect();
    assert_eq!(logs, vec![("look".to_string(), Some(json!([1])))]);
}

#[tokio::test(start_paused = true)]
async fn delay_waits() {
    let h = h();
    let t0 = tokio::time::Instant::now();
    let out = h
        .one("delay", json!({ "duration": "1m30s" }), json!({}))
        .await;
    assert_eq!(out.results["n"], json!({ "waited_ms": 90_000 }));
    assert_eq!(t0.elapsed().as_secs(), 90);
    let out = h
        .one(
            "delay",
            json!({ "until": "2000-01-01T00:00:00Z" }),
            json!({}),
        )
        .await;
    assert_eq!(out.results["n"], json!({ "waited_ms": 0 }));
    let out = h
        .one("delay", json!({ "until": "tomorrow" }), json!({}))
        .await;
    assert!(out.error.unwrap().message.contains("not an RFC 3339 time"));
}

#[tokio::test]
async fn fail_raises_its_error() {
    let h = h();
    let out = h.one("fail", json!({ "message": "order {{ input.id }} is empty", "kind": "validation", "details": {"id": "{{ input.id }}"} }), json!({ "id": 7 })).await;
    assert_eq!(out.status, RunStatus::Failed);
    let e = out.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("validation", "order 7 is empty")
    );
    assert_eq!(e.details.as_deref(), Some(&json!({ "id": 7 })));
}

#[tokio::test]
async fn stop_ends_the_run() {
    let h = h();
    let out = h
        .run(
            json!([{ "id": "s", "type": "stop", "config": { "reason": "nothing new" } }, { "id": "after", "type": "noop" }]),
            json!([{ "source": "__start__", "target": "s" }, { "source": "s", "target": "after" }]),
            json!({}),
            json!({}),
        )
        .await;
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.results, json!({ "s": { "reason": "nothing new" } }));
}

#[tokio::test]
async fn human_approval_waits_and_branches_on_the_decision() {
    let h = h();
    let nodes = json!([
        { "id": "ask", "type": "human_approval", "config": { "message": "Refund {{ input.amount }}?", "options": ["yes", "no", "escalate"] } },
        { "id": "refund", "type": "noop" }, { "id": "deny", "type": "noop" }, { "id": "boss", "type": "noop" }
    ]);
    let edges = json!([
        { "source": "__start__", "target": "ask" },
        { "source": "ask", "target": "refund", "branch": "yes" },
        { "source": "ask", "target": "deny", "branch": "no" },
        { "source": "ask", "target": "boss", "branch": "escalate" }
    ]);
    let doc: Workflow = serde_json::from_value(
        json!({ "format": "orcheo.workflow/1", "name": "t", "nodes": nodes, "edges": edges }),
    )
    .unwrap();
    let wf = h.engine.compile(doc).unwrap();
    for (answer, target) in [
        (json!(true), "refund"),
        (json!("no"), "deny"),
        (json!({"decision": "escalate", "comment": "big"}), "boss"),
    ] {
        let out = h
            .engine
            .start(&wf, json!({ "amount": 40 }), RunOptions::default())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Waiting);
        assert_eq!(
            out.waiting[0].interrupt.payload["message"],
            json!("Refund 40?")
        );
        let done = h
            .engine
            .resume(
                &wf,
                &out.run_id,
                Some(answer.clone()),
                RunOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        assert!(
            done.results.get(target).is_some(),
            "{answer} → {target}: {:?}",
            done.results
        );
    }
    let out = h
        .engine
        .start(&wf, json!({ "amount": 1 }), RunOptions::default())
        .await
        .unwrap();
    let bad = h
        .engine
        .resume(
            &wf,
            &out.run_id,
            Some(json!("maybe")),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(bad.status, RunStatus::Failed);
    assert!(bad.error.unwrap().message.contains("is not a valid answer"));
}

#[tokio::test]
async fn sub_workflow_runs_inline_children_per_item() {
    let h = h();
    let child = json!({
        "format": "orcheo.workflow/1", "name": "double",
        "nodes": [ { "id": "d", "type": "set_variables", "config": { "values": { "out": "{{ input.v * 2 }}" } } } ],
        "edges": [ { "source": "__start__", "target": "d" } ]
    });
    let out = h
        .run(
            json!([{ "id": "each", "type": "sub_workflow", "config": { "workflow": { "inline": child }, "input": { "v": "{{ item }}" } }, "map": { "over": "{{ input.xs }}" } }]),
            json!([{ "source": "__start__", "target": "each" }]),
            json!({}),
            json!({ "xs": [1, 2, 3] }),
        )
        .await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    let outs: Vec<Value> = out.results["each"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["out"].clone())
        .collect();
    assert_eq!(outs, vec![json!(2), json!(4), json!(6)]);
}

#[tokio::test]
async fn sub_workflow_output_picks_from_the_child_state() {
    let h = h();
    let child = json!({
        "format": "orcheo.workflow/1", "name": "score",
        "nodes": [ { "id": "d", "type": "set_variables", "config": { "values": { "score": "{{ input.v * 10 }}", "noise": "x" } } } ],
        "edges": [ { "source": "__start__", "target": "d" } ]
    });
    let out = h
        .one(
            "sub_workflow",
            json!({ "workflow": { "inline": child }, "input": { "v": 4 }, "output": "{score, high: (.score > 30)}" }),
            json!({}),
        )
        .await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(out.results["n"], json!({"score": 40, "high": true}));
    let catalog = orcheo_nodes::catalog();
    let bad = json!({"format": "orcheo.workflow/1", "name": "b",
        "nodes": [{"id": "n", "type": "sub_workflow", "config": {"workflow": {"inline": child}, "output": "{score"}}],
        "edges": [{"source": "__start__", "target": "n"}, {"source": "n", "target": "__end__"}]});
    let problems = orcheo_core::validate::validate_value(&bad, &catalog).unwrap_err();
    assert!(
        problems.iter().any(|p| p.path.ends_with("/output")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn sub_workflow_by_id_needs_a_server() {
    let h = h();
    let out = h
        .one(
            "sub_workflow",
            json!({ "workflow": { "id": "wf_123" } }),
            json!({}),
        )
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out
        .error
        .unwrap()
        .message
        .contains("only a server can resolve"));
}

#[tokio::test]
async fn noop_outputs_null() {
    let h = h();
    let out = h.one("noop", json!({}), json!({})).await;
    assert_eq!(out.results["n"], Value::Null);
}

#[test]
fn docs_nodes_md_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/nodes.md");
    let generated = orcheo_nodes::docs::catalog_markdown(&orcheo_nodes::catalog().specs());
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/nodes.md is stale or missing; regenerate it with `cargo run -q -p orcheo -- nodes --markdown > docs/nodes.md`"
    );
    for spec in orcheo_nodes::catalog().specs() {
        assert!(
            generated.contains(&format!("## `{}`", spec.type_id)),
            "no docs section for {}",
            spec.type_id
        );
        assert!(
            !spec.description.is_empty() && !spec.examples.is_empty(),
            "{} lacks a description or example",
            spec.type_id
        );
    }
}

#[test]
fn credential_slots_are_checked_against_the_node_type() {
    let catalog = orcheo_nodes::catalog();
    let doc = json!({"format": "orcheo.workflow/1", "name": "slots",
        "nodes": [
            {"id": "call", "type": "http_request", "config": {"url": "https://example.com"},
             "credentials": {"oauth": "shop"}},
            {"id": "set", "type": "set_variables", "config": {"values": {"a": 1}},
             "credentials": {"auth": "shop"}}
        ],
        "edges": [{"source": "__start__", "target": "call"}, {"source": "call", "target": "set"},
                  {"source": "set", "target": "__end__"}]});
    let problems = orcheo_core::validate::validate_value(&doc, &catalog).unwrap_err();
    let slot: Vec<_> = problems
        .iter()
        .filter(|p| p.code == "node.credentials.unknown_slot")
        .collect();
    assert_eq!(slot.len(), 2, "{problems:?}");
    assert_eq!(slot[0].path, "/nodes/0/credentials/oauth");
    assert_eq!(slot[0].fix, "use one of: auth");
    assert!(slot[1].fix.contains("uses no credentials"), "{:?}", slot[1]);
    let spec = catalog.spec("http_request").expect("spec");
    assert_eq!(spec.credentials[0].name, "auth");
    assert!(!spec.credentials[0].required);
}
