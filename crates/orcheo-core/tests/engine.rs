//! Engine semantics: edges, fan-in, loops, map, interrupts, retries, timeouts, cancellation,
//! checkpoints and resume.

mod common;

use common::*;
use orcheo_core::checkpoint::{Checkpointer, RunStatus};
use orcheo_core::engine::{ManualClock, RunOptions};
use orcheo_core::event::EventKind;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[tokio::test]
async fn chain_applies_updates_and_keeps_results() {
    let h = harness();
    let wf = h.compile(json!({
        "state": { "n": { "reducer": "add", "default": 0 } },
        "nodes": [ emit("a", json!({"update": {"n": 1}})), emit("b", json!({"update": {"n": "{{ state.n * 10 }}"}, "output": "{{ state.n }}"})) ],
        "edges": [ edge("__start__", "a"), edge("a", "b") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Completed);
    // b saw n = 1 (after a), added 10.
    assert_eq!(out.state, json!({"n": 11}));
    assert_eq!(out.results["b"], json!(1));
    assert_eq!(out.steps, 2);
}

#[tokio::test]
async fn every_reducer_through_the_engine() {
    let h = harness();
    let wf = h.compile(json!({
        "state": {
            "r": {}, "ap": {"reducer": "append", "default": []}, "me": {"reducer": "merge", "default": {"k": 0}},
            "dm": {"reducer": "deep_merge", "default": {"a": {"x": 1}}}, "ad": {"reducer": "add", "default": 0},
            "un": {"reducer": "union", "default": [1]}, "mx": {"reducer": "max"}, "mn": {"reducer": "min"},
            "ms": {"reducer": "messages", "default": [{"id": "1", "t": "hi"}]}
        },
        "nodes": [
            emit("p1", json!({"update": {"r": 1, "ap": [1], "me": {"a": 1}, "dm": {"a": {"y": 2}}, "ad": 2, "un": [1, 2], "mx": 3, "mn": 3, "ms": {"id": "1", "t": "edited"}}})),
            emit("p2", json!({"update": {"r": 2, "ap": 2, "me": {"b": 2}, "dm": {"b": 1}, "ad": 3, "un": [2, 3], "mx": 9, "mn": -1, "ms": {"id": "2", "t": "new"}}}))
        ],
        "edges": [ edge("__start__", "p1"), edge("__start__", "p2") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(
        out.state,
        json!({
            "r": 2, "ap": [1, 2], "me": {"k": 0, "a": 1, "b": 2}, "dm": {"a": {"x": 1, "y": 2}, "b": 1}, "ad": 5,
            "un": [1, 2, 3], "mx": 9, "mn": -1, "ms": [{"id": "1", "t": "edited"}, {"id": "2", "t": "new"}]
        })
    );
}

#[tokio::test]
async fn input_initialises_state_through_reducers() {
    let h = harness();
    let wf = h.compile(json!({
        "state": { "items": {"reducer": "append", "default": [0]} },
        "nodes": [ emit("a", json!({})) ],
        "edges": [ edge("__start__", "a") ]
    }));
    let out = h.run(&wf, json!({"items": [1, 2], "other": "x"})).await;
    assert_eq!(out.state, json!({"items": [0, 1, 2], "other": "x"}));
}

#[tokio::test]
async fn conditional_else_and_end_edges() {
    let h = harness();
    let doc = || {
        json!({
            "nodes": [ emit("check", json!({})), emit("big", json!({})), emit("medium", json!({})), emit("small", json!({})), emit("after", json!({})) ],
            "edges": [
                edge("__start__", "check"),
                { "source": "check", "target": "big", "condition": format!("{{{{ input.amount > 100 }}}}") },
                { "source": "check", "target": "medium", "condition": "input.amount > 10" },
                { "source": "check", "target": "small", "kind": "else" },
                edge("big", "__end__"),
                edge("medium", "after")
            ]
        })
    };
    for (amount, expect) in [
        (500, vec!["check", "big", "medium", "after"]),
        (50, vec!["check", "medium", "after"]),
        (5, vec!["check", "small"]),
    ] {
        let wf = h.compile(doc());
        let out = h.run(&wf, json!({"amount": amount})).await;
        assert_eq!(out.status, RunStatus::Completed);
        let mut done = h.completed(&out.run_id);
        done.sort();
        let mut expect: Vec<String> = expect.into_iter().map(String::from).collect();
        expect.sort();
        assert_eq!(done, expect, "amount {amount}");
    }
}

#[tokio::test]
async fn branch_edges_follow_the_chosen_branch() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("pick", json!({"branch": "{{ input.b }}"})), emit("on_a", json!({})), emit("on_b", json!({})), emit("other", json!({})) ],
        "edges": [
            edge("__start__", "pick"),
            { "source": "pick", "target": "on_a", "branch": "a" },
            { "source": "pick", "target": "on_b", "branch": "b" },
            { "source": "pick", "target": "other", "kind": "else" }
        ]
    }));
    for (b, expect) in [("a", "on_a"), ("b", "on_b"), ("c", "other")] {
        let out = h.run(&wf, json!({"b": b})).await;
        assert_eq!(
            h.completed(&out.run_id),
            vec!["pick".to_string(), expect.to_string()]
        );
    }
}

#[tokio::test]
async fn error_edges_and_continue() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [
            { "id": "boom", "type": "emit", "config": {"fail_times": 9, "retryable": false, "fail_kind": "bad"}, "on_error": "route" },
            emit("ok", json!({})), emit("handler", json!({"output": "{{ results.boom.error.kind }}"})),
            { "id": "soft", "type": "emit", "config": {"fail_times": 9}, "on_error": "continue" },
            emit("after_soft", json!({"output": "{{ results.soft.error.message }}"}))
        ],
        "edges": [
            edge("__start__", "boom"), edge("boom", "ok"), { "source": "boom", "target": "handler", "kind": "error" },
            edge("__start__", "soft"), edge("soft", "after_soft")
        ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(h.counters.get("ok"), 0);
    assert_eq!(out.results["handler"], json!("bad"));
    assert_eq!(out.results["after_soft"], json!("planned failure 1"));
    let failed: Vec<(String, String)> = h
        .events(&out.run_id)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::NodeFailed { node, handling, .. } => Some((node.to_string(), handling)),
            _ => None,
        })
        .collect();
    assert!(failed.contains(&("boom".into(), "route".into())));
    assert!(failed.contains(&("soft".into(), "continue".into())));
}

#[tokio::test]
async fn failure_fails_the_run_with_the_node() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("a", json!({"fail_times": 1, "fail_kind": "boom"})), emit("b", json!({})) ],
        "edges": [ edge("__start__", "a"), edge("a", "b") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.failed_node.as_deref(), Some("a"));
    assert_eq!(out.error.unwrap().kind, "boom");
    assert_eq!(h.counters.get("b"), 0);
    let evs = h.events(&out.run_id);
    assert!(matches!(
        evs.last().unwrap().kind,
        EventKind::RunFailed { .. }
    ));
}

#[tokio::test]
async fn fan_in_waits_only_for_started_branches() {
    let h = harness();
    // a fans out to b (taken), c (condition false) and long1 -> long2 (longer branch); join waits for b and long2.
    let wf = h.compile(json!({
        "state": { "trail": {"reducer": "append", "default": []} },
        "nodes": [
            emit("a", json!({"update": {"trail": "a"}})),
            emit("b", json!({"update": {"trail": "b"}})),
            emit("c", json!({"update": {"trail": "c"}})),
            emit("long1", json!({"update": {"trail": "long1"}})),
            emit("long2", json!({"update": {"trail": "long2"}})),
            emit("join", json!({"update": {"trail": "join"}}))
        ],
        "edges": [
            edge("__start__", "a"), edge("a", "b"), { "source": "a", "target": "c", "condition": "{{ false }}" }, edge("a", "long1"),
            edge("long1", "long2"), edge("b", "join"), edge("c", "join"), edge("long2", "join")
        ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(
        out.state["trail"],
        json!(["a", "b", "long1", "long2", "join"])
    );
    assert_eq!(h.counters.get("join"), 1, "join runs once");
    assert_eq!(h.counters.get("c"), 0);
    let join_sources: Vec<Value> = h
        .events(&out.run_id)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::StepStarted { nodes, .. } => Some(json!(nodes)),
            _ => None,
        })
        .collect();
    assert_eq!(
        join_sources,
        vec![
            json!(["a"]),
            json!(["b", "long1"]),
            json!(["long2"]),
            json!(["join"])
        ]
    );
}

#[tokio::test]
async fn fan_out_runs_branches_concurrently_with_a_bound() {
    let h = harness();
    let mut nodes = vec![emit("root", json!({}))];
    let mut edges = vec![edge("__start__", "root")];
    for i in 0..20 {
        nodes.push(emit(
            &format!("b{i}"),
            json!({"sleep_ms": 5, "update": {"sum": i}}),
        ));
        edges.push(edge("root", &format!("b{i}")));
        edges.push(edge(&format!("b{i}"), "join"));
    }
    nodes.push(emit("join", json!({})));
    let wf = h.compile(json!({ "state": {"sum": {"reducer": "add"}}, "settings": {"max_concurrency": 4}, "nodes": nodes, "edges": edges }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.state["sum"], json!(190));
    assert_eq!(h.counters.max_active.load(Ordering::SeqCst), 4);
    assert_eq!(h.counters.get("join"), 1);
}

#[tokio::test]
async fn loops_run_until_their_condition_and_hit_the_recursion_limit() {
    let h = harness();
    let doc = |limit: Option<u32>| {
        let mut d = json!({
            "state": { "i": {"reducer": "add", "default": 0} },
            "nodes": [ emit("inc", json!({"update": {"i": 1}})), emit("done", json!({})) ],
            "edges": [ edge("__start__", "inc"), { "source": "inc", "target": "inc", "condition": "{{ state.i < 5 }}" }, { "source": "inc", "target": "done", "kind": "else" } ]
        });
        if let Some(l) = limit {
            d["settings"] = json!({"recursion_limit": l});
        }
        d
    };
    let out = h.run(&h.compile(doc(None)), json!({})).await;
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.state["i"], json!(5));
    assert_eq!(out.steps, 6);
    let out = h.run(&h.compile(doc(Some(3))), json!({})).await;
    assert_eq!(out.status, RunStatus::Failed);
    let e = out.error.unwrap();
    assert_eq!(e.kind, "recursion_limit");
    assert!(
        e.message
            .contains("recursion limit of 3 supersteps reached"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("nodes still pending: inc"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("settings.recursion_limit"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn map_over_a_thousand_items_keeps_order_and_bounds_concurrency() {
    let h = harness();
    let items: Vec<i64> = (0..1000).collect();
    let wf = h.compile(json!({
        "state": { "total": {"reducer": "add", "default": 0}, "seen": {"reducer": "append", "default": []} },
        "settings": {"max_concurrency": 64},
        "nodes": [
            { "id": "each", "type": "emit", "config": {"output": "{{ it * 2 }}", "update": {"total": "{{ it }}", "seen": "{{ index }}"}, "sleep_ms": 1},
              "map": {"over": "{{ input.items }}", "as": "it", "concurrency": 50} },
            emit("after", json!({"output": "{{ results.each | length }}"}))
        ],
        "edges": [ edge("__start__", "each"), edge("each", "after") ]
    }));
    let out = h.run(&wf, json!({"items": items})).await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    let expected: Vec<i64> = (0..1000).map(|i| i * 2).collect();
    assert_eq!(out.results["each"], json!(expected));
    assert_eq!(out.state["total"], json!(499_500));
    assert_eq!(out.state["seen"], json!((0..1000).collect::<Vec<i64>>()));
    assert_eq!(out.results["after"], json!(1000));
    assert_eq!(h.counters.get("each"), 1000);
    assert!(h.counters.max_active.load(Ordering::SeqCst) <= 50);
    assert!(
        h.counters.max_active.load(Ordering::SeqCst) > 1,
        "items ran concurrently"
    );
}

#[tokio::test]
async fn map_over_a_non_list_fails_clearly() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ { "id": "each", "type": "emit", "map": {"over": "{{ input.x }}"} } ],
        "edges": [ edge("__start__", "each") ]
    }));
    let out = h.run(&wf, json!({"x": 5})).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out
        .error
        .unwrap()
        .message
        .contains("map.over must yield a list, got 5"));
}

#[tokio::test]
async fn interrupt_waits_and_resumes_with_a_value() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("prep", json!({})), emit("ask", json!({"ask": {"q": "ok?"}, "branch": "{{ 'a' }}"})), emit("par", json!({})), emit("after", json!({"output": "{{ results.ask.answer }}"})) ],
        "edges": [ edge("__start__", "prep"), edge("prep", "ask"), edge("prep", "par"), edge("ask", "after") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Waiting);
    assert_eq!(out.waiting[0].node, "ask");
    assert_eq!(out.waiting[0].interrupt.payload, json!({"q": "ok?"}));
    let run_id = out.run_id.clone();
    assert_eq!(h.counters.get("par"), 1);
    // Resuming without a value is refused.
    let err = h
        .engine
        .resume(&wf, &run_id, None, RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("waiting for input at ask"),
        "{err}"
    );
    let out = h
        .engine
        .resume(&wf, &run_id, Some(json!("yes")), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.results["after"], json!("yes"));
    // The parallel node that finished in the interrupted step did not run again.
    assert_eq!(h.counters.get("par"), 1);
    assert_eq!(h.counters.get("prep"), 1);
    // Event sequence numbers continue without gaps across the pause.
    let seqs: Vec<u64> = h.events(&run_id).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let waiting = h
        .events(&run_id)
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::RunWaiting { .. }))
        .count();
    assert_eq!(waiting, 1);
}

#[tokio::test]
async fn interrupt_timeout_follows_the_timeout_edge() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let c2 = clock.clone();
    let h = harness_with(move |b| b.clock(c2));
    let wf = h.compile(json!({
        "nodes": [ emit("ask", json!({"ask": "approve?", "ask_timeout_ms": 60_000})), emit("yes", json!({})), emit("expired", json!({"output": "{{ results.ask.timed_out }}"})) ],
        "edges": [ edge("__start__", "ask"), edge("ask", "yes"), { "source": "ask", "target": "expired", "kind": "timeout" } ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Waiting);
    assert!(out.waiting[0].timeout_at.is_some());
    clock.advance(std::time::Duration::from_secs(61));
    let out = h
        .engine
        .resume(
            &wf,
            &out.run_id,
            Some(json!("too late")),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.results["expired"], json!(true));
    assert_eq!(h.counters.get("yes"), 0);
    assert_eq!(h.counters.get("ask"), 1);
}

#[tokio::test]
async fn interrupt_timeout_without_timeout_edge_fails_the_node() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let c2 = clock.clone();
    let h = harness_with(move |b| b.clock(c2));
    let wf = h.compile(json!({
        "nodes": [ emit("ask", json!({"ask": "?", "ask_timeout_ms": 10})) ],
        "edges": [ edge("__start__", "ask") ]
    }));
    let out = h.run(&wf, json!({})).await;
    clock.advance(std::time::Duration::from_secs(1));
    let out = h
        .engine
        .resume(&wf, &out.run_id, None, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.error.unwrap().kind, "timeout");
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_with_jitter() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ { "id": "flaky", "type": "emit", "config": {"fail_times": 3},
                     "retry": {"max_attempts": 4, "initial_delay": "1s", "multiplier": 2, "jitter": 0.2, "max_delay": "1m"} } ],
        "edges": [ edge("__start__", "flaky") ]
    }));
    let t0 = tokio::time::Instant::now();
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(h.counters.get("flaky"), 4);
    let delays: Vec<u64> = h
        .events(&out.run_id)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::NodeFailed {
                will_retry: true,
                retry_in_ms,
                ..
            } => retry_in_ms,
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 3);
    for (d, base) in delays.iter().zip([1000u64, 2000, 4000]) {
        assert!(
            (base * 8 / 10..=base * 12 / 10).contains(d),
            "delay {d} not within 20% of {base}"
        );
    }
    // The engine really waited that long (on tokio's paused, auto-advancing clock).
    let waited = t0.elapsed().as_millis() as u64;
    assert_eq!(waited, delays.iter().sum::<u64>());
}

#[tokio::test(start_paused = true)]
async fn retry_respects_error_classes() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [
            { "id": "never", "type": "emit", "config": {"fail_times": 5, "fail_kind": "auth"}, "retry": {"max_attempts": 5, "never_retry_on": ["auth"]}, "on_error": "continue" },
            { "id": "only_timeouts", "type": "emit", "config": {"fail_times": 5, "fail_kind": "http"}, "retry": {"max_attempts": 5, "retry_on": ["timeout"]}, "on_error": "continue" },
            { "id": "nonretryable_forced", "type": "emit", "config": {"fail_times": 2, "fail_kind": "quota", "retryable": false}, "retry": {"max_attempts": 5, "retry_on": ["quota"], "initial_delay": 10} }
        ],
        "edges": [ edge("__start__", "never"), edge("__start__", "only_timeouts"), edge("__start__", "nonretryable_forced") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(h.counters.get("never"), 1);
    assert_eq!(h.counters.get("only_timeouts"), 1);
    assert_eq!(h.counters.get("nonretryable_forced"), 3);
}

#[tokio::test(start_paused = true)]
async fn node_timeouts_are_errors_that_can_retry() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ { "id": "slow", "type": "emit", "config": {"sleep_ms": 5000}, "timeout": "1s", "retry": {"max_attempts": 2, "initial_delay": 100, "jitter": 0} } ],
        "edges": [ edge("__start__", "slow") ]
    }));
    let t0 = tokio::time::Instant::now();
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Failed);
    let e = out.error.unwrap();
    assert_eq!(e.kind, "timeout");
    assert!(e.message.contains("timed out after 1000 ms"));
    assert_eq!(h.counters.get("slow"), 2);
    assert_eq!(t0.elapsed().as_millis(), 2100);
}

#[tokio::test(start_paused = true)]
async fn run_timeout_fails_the_run() {
    let h = harness();
    let wf = h.compile(json!({
        "settings": {"run_timeout": "2s"},
        "nodes": [ emit("a", json!({"sleep_ms": 1500})), emit("b", json!({"sleep_ms": 1500})), emit("c", json!({})) ],
        "edges": [ edge("__start__", "a"), edge("a", "b"), edge("b", "c") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.error.unwrap().kind, "run_timeout");
    assert_eq!(h.counters.get("c"), 0);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_the_run_and_can_be_forked_later() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("a", json!({})), emit("slow", json!({"sleep_ms": 60_000})), emit("c", json!({})) ],
        "edges": [ edge("__start__", "a"), edge("a", "slow"), edge("slow", "c") ]
    }));
    let opts = RunOptions::with_id("cancel-me");
    let token = opts.cancel.clone();
    let engine = h.engine.clone();
    let wf2 = wf.clone();
    let task = tokio::spawn(async move { engine.start(&wf2, json!({}), opts).await });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    token.cancel();
    let out = task.await.unwrap().unwrap();
    assert_eq!(out.status, RunStatus::Cancelled);
    assert_eq!(h.counters.get("c"), 0);
    assert!(matches!(
        h.events("cancel-me").last().unwrap().kind,
        EventKind::RunCancelled { .. }
    ));
    let err = h
        .engine
        .resume(&wf, "cancel-me", None, RunOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was cancelled"));
}

#[tokio::test]
async fn stop_ends_the_run_early() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("a", json!({"stop": true})), emit("b", json!({})), emit("side", json!({})) ],
        "edges": [ edge("__start__", "a"), edge("__start__", "side"), edge("a", "b") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(h.counters.get("b"), 0);
    assert_eq!(h.counters.get("side"), 1);
}

#[tokio::test]
async fn input_schema_is_enforced() {
    let h = harness();
    let wf = h.compile(json!({
        "input_schema": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}},
        "nodes": [ emit("a", json!({})) ],
        "edges": [ edge("__start__", "a") ]
    }));
    let err = h
        .engine
        .start(&wf, json!({"email": 5}), RunOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("input/email"), "{err}");
    assert!(h
        .engine
        .start(&wf, json!({"email": "a@b.c"}), RunOptions::default())
        .await
        .is_ok());
}

#[tokio::test]
async fn expression_errors_name_node_and_field() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("a", json!({"update": {"x": "{{ 1 / 0 }}"}})) ],
        "edges": [ edge("__start__", "a") ]
    }));
    let out = h.run(&wf, json!({})).await;
    let e = out.error.unwrap();
    assert_eq!(e.kind, "expression");
    assert!(
        e.message.contains("node `a`: config field `update.x`"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn reducer_mismatch_at_runtime_is_clear() {
    let h = harness();
    let wf = h.compile(json!({
        "state": {"n": {"reducer": "add", "default": 0}},
        "nodes": [ emit("a", json!({"update": {"n": "x"}})) ],
        "edges": [ edge("__start__", "a") ]
    }));
    let out = h.run(&wf, json!({})).await;
    let e = out.error.unwrap();
    assert_eq!(e.kind, "state");
    assert!(
        e.message.contains("node `a`") && e.message.contains("not a number"),
        "{}",
        e.message
    );
}

/// A workflow with parallel steps, a join, a map and a loop, used for resume tests.
fn busy_doc() -> Value {
    json!({
        "state": { "trail": {"reducer": "append", "default": []}, "n": {"reducer": "add", "default": 0} },
        "nodes": [
            emit("a", json!({"update": {"trail": "a", "n": 1}})),
            emit("b", json!({"update": {"trail": "b", "n": "{{ state.n }}"}})),
            emit("c", json!({"update": {"trail": "c"}})),
            { "id": "m", "type": "emit", "config": {"update": {"n": "{{ item }}"}, "output": "{{ item * item }}"}, "map": {"over": "{{ [1, 2, 3] }}"} },
            emit("j", json!({"update": {"trail": "j"}})),
            emit("loop", json!({"update": {"n": 1, "trail": "loop"}})),
            emit("end", json!({"update": {"trail": "end"}}))
        ],
        "edges": [
            edge("__start__", "a"), edge("a", "b"), edge("a", "c"), edge("c", "m"), edge("b", "j"), edge("m", "j"), edge("j", "loop"),
            { "source": "loop", "target": "loop", "condition": "{{ state.n < 14 }}" }, { "source": "loop", "target": "end", "kind": "else" }
        ]
    })
}

#[tokio::test]
async fn resume_from_every_checkpoint_reproduces_the_final_state() {
    let h = harness();
    let wf = h.compile(busy_doc());
    let base = h.run(&wf, json!({})).await;
    assert_eq!(base.status, RunStatus::Completed, "{:?}", base.error);
    let total = h.counters.total();
    let cps = h.store.list(&base.run_id).await.unwrap();
    assert!(cps.len() >= 8, "{} checkpoints", cps.len());
    let full = h.store.all(&base.run_id);
    for cp in &full {
        let before = h.counters.total();
        let out = h
            .engine
            .fork(&wf, &base.run_id, cp.id, None, RunOptions::default())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Completed);
        assert_eq!(out.state, base.state, "from checkpoint {}", cp.id);
        assert_eq!(out.results, base.results, "from checkpoint {}", cp.id);
        // Exactly the executions that came after this checkpoint were run again.
        let finished_before: usize = cp.results.len();
        let ran = h.counters.total() - before;
        let expected_remaining = total - executions_up_to(&full, cp.id);
        assert_eq!(
            ran, expected_remaining,
            "checkpoint {} ({} nodes finished)",
            cp.id, finished_before
        );
    }
}

/// Executions (map items counted one by one) completed up to and including checkpoint `id`.
fn executions_up_to(cps: &[orcheo_core::Checkpoint], id: u64) -> usize {
    // The loop node runs several times; count by diffing the trail and the map results.
    let cp = cps.iter().find(|c| c.id == id).unwrap();
    let trail = cp.state["trail"].as_array().unwrap().len();
    let map_items = if cp.results.get("m").is_some() { 3 } else { 0 };
    trail + map_items
}

#[tokio::test]
async fn crash_mid_superstep_does_not_rerun_finished_tasks() {
    let h = harness();
    let wf = h.compile(busy_doc());
    let base = h.run(&wf, json!({})).await;
    let counts_before = h.counters.total();
    // Pretend the process died right after the parallel step {b, c} finished its tasks but
    // before its checkpoint was written: keep checkpoint 1 (after a) and its task writes.
    h.store.truncate(&base.run_id, 1);
    let cp = h.store.latest(&base.run_id).await.unwrap().unwrap();
    assert_eq!(cp.status, RunStatus::Running);
    let writes = h.store.writes(&base.run_id, 1).await.unwrap();
    assert_eq!(writes.len(), 2, "b and c wrote their results");
    let out = h
        .engine
        .resume(&wf, &base.run_id, None, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.state, base.state);
    let rerun = h.counters.total() - counts_before;
    // Everything after step 2 ran again (map 3 + j + loop x N + end), but not b or c.
    assert_eq!(h.counters.get("b"), 1);
    assert_eq!(h.counters.get("c"), 1);
    assert_eq!(rerun, counts_before - 3);
}

#[tokio::test]
async fn fork_with_edited_state_changes_the_outcome() {
    let h = harness();
    let wf = h.compile(busy_doc());
    let base = h.run(&wf, json!({})).await;
    let cps = h.store.all(&base.run_id);
    let at_loop = cps
        .iter()
        .find(|c| c.pending.iter().any(|p| &*p.node == "loop"))
        .unwrap();
    let mut patch = serde_json::Map::new();
    patch.insert("n".into(), json!(100));
    let out = h
        .engine
        .fork(
            &wf,
            &base.run_id,
            at_loop.id,
            Some(patch),
            RunOptions::with_id("forked"),
        )
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.state["n"], json!(101));
    let first = h.store.all("forked").into_iter().next().unwrap();
    assert_eq!(first.forked_from, Some((base.run_id.clone(), at_loop.id)));
    // The original run is untouched.
    assert_eq!(
        h.store.latest(&base.run_id).await.unwrap().unwrap().state,
        std::sync::Arc::new(base.state.clone())
    );
}

#[tokio::test]
async fn failed_run_can_be_retried_from_the_failed_node() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("a", json!({})), emit("b", json!({})), emit("flaky", json!({"fail_times": 1})), emit("after", json!({})) ],
        "edges": [ edge("__start__", "a"), edge("a", "b"), edge("a", "flaky"), edge("flaky", "after"), edge("b", "after") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Failed);
    let out = h
        .engine
        .resume(&wf, &out.run_id, None, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(
        h.counters.get("b"),
        1,
        "b finished in the failed step and is not re-run"
    );
    assert_eq!(h.counters.get("flaky"), 2);
    assert_eq!(h.counters.get("after"), 1);
}

#[tokio::test]
async fn sub_workflows_run_as_linked_child_runs() {
    let h = harness();
    let child = json!({
        "format": "orcheo.workflow/1", "name": "child",
        "state": {"x": {"reducer": "add", "default": 1}},
        "nodes": [ {"id": "inner", "type": "emit", "config": {"update": {"x": 41}}} ],
        "edges": [ {"source": "__start__", "target": "inner"} ]
    });
    let wf = h.compile(json!({
        "nodes": [ emit("call", json!({"child": child})) , emit("after", json!({"output": "{{ results.call.x }}"})) ],
        "edges": [ edge("__start__", "call"), edge("call", "after") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(out.results["after"], json!(42));
    let child_id = format!("{}.call.s1", out.run_id);
    let evs = h.events(&child_id);
    match &evs[0].kind {
        EventKind::RunStarted {
            parent: Some(p), ..
        } => {
            assert_eq!(p.run_id, out.run_id);
            assert_eq!(p.node, "call");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        h.store.latest(&child_id).await.unwrap().unwrap().status,
        RunStatus::Completed
    );
}

#[tokio::test]
async fn a_waiting_child_makes_the_parent_wait_and_resumes_through_it() {
    let h = harness();
    let child = json!({
        "format": "orcheo.workflow/1", "name": "child",
        "nodes": [ {"id": "q", "type": "emit", "config": {"ask": "child question", "update": {"got": "{{ 1 }}"}}} ],
        "edges": [ {"source": "__start__", "target": "q"} ]
    });
    let wf = h.compile(json!({
        "nodes": [ emit("call", json!({"child": child})) ],
        "edges": [ edge("__start__", "call") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.status, RunStatus::Waiting);
    assert_eq!(out.waiting[0].interrupt.payload, json!("child question"));
    let out = h
        .engine
        .resume(
            &wf,
            &out.run_id,
            Some(json!("answer")),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(out.results["call"], json!({"got": 1}));
    assert_eq!(h.counters.get("q"), 2, "asked once, answered once");
}

#[tokio::test]
async fn events_are_ordered_and_gapless() {
    let h = harness();
    let wf = h.compile(busy_doc());
    let out = h.run(&wf, json!({})).await;
    let evs = h.events(&out.run_id);
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=evs.len() as u64).collect::<Vec<_>>());
    assert!(matches!(evs[0].kind, EventKind::RunStarted { .. }));
    assert!(matches!(
        evs.last().unwrap().kind,
        EventKind::RunCompleted { .. }
    ));
    let json_line = serde_json::to_value(&evs[0]).unwrap();
    assert_eq!(json_line["type"], json!("run_started"));
    assert_eq!(json_line["seq"], json!(1));
}

#[tokio::test]
async fn without_a_checkpointer_runs_complete_but_cannot_resume() {
    let counters = Arc::new(Counters::default());
    let mut catalog = orcheo_core::node::Catalog::new();
    catalog.register(Emit(counters, Default::default()));
    let engine = orcheo_core::Engine::builder(Arc::new(catalog)).build();
    let doc: orcheo_core::Workflow = serde_json::from_value(json!({
        "format": "orcheo.workflow/1", "name": "t", "nodes": [ emit("a", json!({})) ], "edges": [ edge("__start__", "a") ]
    }))
    .unwrap();
    let wf = engine.compile(doc).unwrap();
    let out = engine
        .start(&wf, json!({}), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.checkpoint, None);
    let err = engine
        .resume(&wf, &out.run_id, None, RunOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("checkpointing is off"));
}

#[tokio::test]
async fn fork_of_a_waiting_run_waits_and_can_be_answered_differently() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("prep", json!({})), emit("ask", json!({"ask": "ok?"})), emit("after", json!({"output": "{{ results.ask.answer }}"})) ],
        "edges": [ edge("__start__", "prep"), edge("prep", "ask"), edge("ask", "after") ]
    }));
    let first = h.run(&wf, json!({})).await;
    let waiting_cp = first.checkpoint.unwrap();
    let fork = h
        .engine
        .fork(
            &wf,
            &first.run_id,
            waiting_cp,
            None,
            RunOptions::with_id("fork-a"),
        )
        .await
        .unwrap();
    assert_eq!(fork.status, RunStatus::Waiting);
    assert_eq!(fork.waiting[0].node, "ask");
    let done = h
        .engine
        .resume(
            &wf,
            "fork-a",
            Some(json!("from the fork")),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(done.results["after"], json!("from the fork"));
    let orig = h
        .engine
        .resume(
            &wf,
            &first.run_id,
            Some(json!("original")),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(orig.results["after"], json!("original"));
    assert_eq!(
        h.counters.get("prep"),
        1,
        "neither the fork nor the resume re-ran prep"
    );
    let evs = h.events("fork-a");
    match &evs[0].kind {
        EventKind::RunStarted {
            forked_from: Some(f),
            resumed_from: None,
            ..
        } => {
            assert_eq!(
                (f.run_id.as_str(), f.checkpoint),
                (first.run_id.as_str(), waiting_cp)
            )
        }
        other => panic!("{other:?}"),
    }
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn input_that_does_not_fit_a_reducer_is_invalid_input() {
    let h = harness();
    let wf = h.compile(json!({
        "state": { "count": {"reducer": "add", "default": 0} },
        "nodes": [ emit("a", json!({})) ],
        "edges": [ edge("__start__", "a") ]
    }));
    let err = h
        .engine
        .start(&wf, json!({"count": "x"}), RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, orcheo_core::EngineError::InvalidInput(_)),
        "{err}"
    );
    assert!(err.to_string().contains("input field `count`"), "{err}");
    assert_eq!(h.counters.total(), 0);
}

#[tokio::test]
async fn assign_evaluates_expressions_and_keeps_literals() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ { "id": "a", "type": "emit", "config": {"output": {"text": "hi"}}, "assign": {"said": "{{ output.text }}", "status": "done"} } ],
        "edges": [ edge("__start__", "a") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.state, json!({"said": "hi", "status": "done"}));
}

#[tokio::test]
async fn parallel_interrupts_are_all_reported() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ { "id": "ask", "type": "emit", "config": {"ask": "{{ item }}"}, "map": {"over": "{{ ['a', 'b'] }}"} } ],
        "edges": [ edge("__start__", "ask") ]
    }));
    let out = h.run(&wf, json!({})).await;
    assert_eq!(out.waiting.len(), 2);
    let ev = h
        .events(&out.run_id)
        .into_iter()
        .find(|e| matches!(e.kind, EventKind::RunWaiting { .. }))
        .unwrap();
    match ev.kind {
        EventKind::RunWaiting { waiting, .. } => assert_eq!(
            waiting.iter().map(|w| w.index).collect::<Vec<_>>(),
            vec![Some(0), Some(1)]
        ),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_second_pause_in_the_same_step_keeps_the_finished_tasks() {
    let h = harness();
    let wf = h.compile(json!({
        "nodes": [ emit("ask", json!({"ask": "?"})), emit("par", json!({})), emit("after", json!({"output": "{{ results.ask.answer }}"})) ],
        "edges": [ edge("__start__", "ask"), edge("__start__", "par"), edge("ask", "after"), edge("par", "after") ]
    }));
    let out = h.run(&wf, json!({})).await;
    let out = h
        .engine
        .resume(
            &wf,
            &out.run_id,
            Some(json!("again")),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Waiting);
    assert_eq!(out.waiting[0].interrupt.payload, json!("asked again"));
    let out = h
        .engine
        .resume(&wf, &out.run_id, Some(json!("yes")), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.results["after"], json!("yes"));
    assert_eq!(
        h.counters.get("par"),
        1,
        "par finished before the first pause and never ran again"
    );
}
