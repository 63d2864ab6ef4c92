//! The data nodes (`data_transform`, `text`, `datetime`, `crypto`, `csv`, `json`), run inside a
//! small workflow on the real engine.

use orcheo_core::checkpoint::MemoryCheckpointer;
use orcheo_core::engine::{Engine, RunOptions, RunOutcome};
use orcheo_core::Workflow;
use serde_json::{json, Value};
use std::sync::Arc;

fn engine() -> Engine {
    Engine::builder(orcheo_nodes::shared_catalog())
        .checkpointer(Arc::new(MemoryCheckpointer::new()))
        .build()
}

/// Runs one node of `node_type` with `config` on `input` (state starts empty).
async fn one(node_type: &str, config: Value, input: Value) -> RunOutcome {
    let engine = engine();
    let doc: Workflow = serde_json::from_value(json!({
        "format": "orcheo.workflow/1", "name": "t",
        "nodes": [{ "id": "n", "type": node_type, "config": config }],
        "edges": [{ "source": "__start__", "target": "n" }]
    }))
    .expect("parses");
    let wf = engine.compile(doc).unwrap_or_else(|p| panic!("{p:#?}"));
    engine
        .start(&wf, input, RunOptions::default())
        .await
        .expect("starts")
}

/// The node's output, or its error message.
async fn output(node_type: &str, config: Value, input: Value) -> Result<Value, String> {
    let out = one(node_type, config, input).await;
    match out.results.get("n") {
        Some(v) if out.error.is_none() => Ok(v.clone()),
        _ => Err(out
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| format!("no result: {:?}", out.results))),
    }
}

#[tokio::test]
async fn data_transform_reads_items_from_input_and_keeps_jq_raw() {
    let out = output(
        "data_transform",
        json!({ "items": "{{ input.orders }}", "operations": [
            { "filter": ".qty > 0" },
            { "map": "{sku, total: (.qty * .price)}" },
            { "sort": ".total", "descending": true }
        ] }),
        json!({ "orders": [
            { "sku": "a", "qty": 1, "price": 5 },
            { "sku": "b", "qty": 0, "price": 9 },
            { "sku": "c", "qty": 3, "price": 4 }
        ] }),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({ "count": 2, "items": [ { "sku": "c", "total": 12 }, { "sku": "a", "total": 5 } ] })
    );
    let e = output(
        "data_transform",
        json!({ "items": "{{ input.orders }}", "operations": [ { "sort": ".k" } ] }),
        json!({ "orders": [ { "k": 1 }, { "k": "1" } ] }),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("operations[0] (sort): sort keys of mixed types"),
        "{e}"
    );
    let e = output(
        "data_transform",
        json!({ "items": "{{ input.orders }}", "operations": [] }),
        json!({ "orders": 3 }),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("`items` must be a list, but it is a number"),
        "{e}"
    );
}

#[test]
fn data_transform_config_is_checked_at_validation() {
    let catalog = orcheo_nodes::catalog();
    let doc = json!({"format": "orcheo.workflow/1", "name": "v",
        "nodes": [{"id": "t", "type": "data_transform",
                   "config": {"items": [], "operations": [{"map": "."}, {"filter": ".a |"}]}}],
        "edges": [{"source": "__start__", "target": "t"}]});
    let problems = orcheo_core::validate::validate_value(&doc, &catalog).unwrap_err();
    assert!(
        problems.iter().any(|p| p
            .message
            .contains("operations[1] (filter): jq syntax error")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn text_runs_through_the_engine_with_a_raw_pattern() {
    let out = output(
        "text",
        json!({ "operation": "regex_replace", "text": "{{ input.s }}", "pattern": "x{2}", "replacement": "[$0]" }),
        json!({ "s": "axxb" }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "result": "a[xx]b" }));
    let catalog = orcheo_nodes::catalog();
    let doc = json!({"format": "orcheo.workflow/1", "name": "v",
        "nodes": [{"id": "t", "type": "text",
                   "config": {"operation": "regex_extract", "text": "x", "pattern": "(unclosed"}}],
        "edges": [{"source": "__start__", "target": "t"}]});
    let problems = orcheo_core::validate::validate_value(&doc, &catalog).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("invalid regex \"(unclosed\"")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn json_parse_and_stringify() {
    let out = output(
        "json",
        json!({ "operation": "parse", "value": "{{ input.body }}" }),
        json!({ "body": "{\"a\": [1, 2]}" }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "result": { "a": [1, 2] } }));
    let e = output(
        "json",
        json!({ "operation": "parse", "value": "{{ input.body }}" }),
        json!({ "body": "{\n  \"a\": 1,\n  oops\n}" }),
    )
    .await
    .unwrap_err();
    assert!(e.contains("invalid JSON at line 3, column 3"), "{e}");
    let out = output(
        "json",
        json!({ "operation": "stringify", "value": "{{ input.v }}", "pretty": true }),
        json!({ "v": { "a": 1 } }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "result": "{\n  \"a\": 1\n}" }));
}

#[tokio::test]
async fn csv_parse_and_serialize() {
    let out = output(
        "csv",
        json!({ "operation": "parse", "value": "{{ input.csv }}", "typed": true, "delimiter": ";" }),
        json!({ "csv": "sku;qty\nA-1;3\n" }),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({ "result": [{ "sku": "A-1", "qty": 3 }], "count": 1 })
    );
    let out = output(
        "csv",
        json!({ "operation": "serialize", "value": "{{ input.rows }}" }),
        json!({ "rows": [{ "a": "x,y", "b": 1 }] }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "result": "a,b\n\"x,y\",1\n", "count": 1 }));
    let e = output(
        "csv",
        json!({ "operation": "parse", "value": 3 }),
        json!({}),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("`parse` needs text, but `value` is a number"),
        "{e}"
    );
}

#[tokio::test]
async fn crypto_hash_hmac_uuid_random() {
    let out = output(
        "crypto",
        json!({ "operation": "hash", "data": "{{ input.s }}", "algorithm": "md5" }),
        json!({ "s": "abc" }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "result": "900150983cd24fb0d6963f7d28e17f72" }));
    let out = output(
        "crypto",
        json!({ "operation": "hmac", "data": "what do ya want for nothing?", "key": "Jefe", "encoding": "base64" }),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({ "result": "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=" })
    );
    let e = output(
        "crypto",
        json!({ "operation": "hmac", "data": "x" }),
        json!({}),
    )
    .await
    .unwrap_err();
    assert!(e.contains("hmac needs a key"), "{e}");
    let a = output(
        "crypto",
        json!({ "operation": "uuid", "version": "v7" }),
        json!({}),
    )
    .await
    .unwrap();
    let id = a["result"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "7");
    let r = output(
        "crypto",
        json!({ "operation": "random", "bytes": 16 }),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(r["result"].as_str().unwrap().len(), 32);
    let e = output(
        "crypto",
        json!({ "operation": "random", "bytes": 5000 }),
        json!({}),
    )
    .await
    .unwrap_err();
    assert!(e.contains("between 1 and 1024"), "{e}");
}

#[tokio::test]
async fn crypto_hmac_key_credential_needs_a_vault() {
    let engine = engine();
    let doc: Workflow = serde_json::from_value(json!({
        "format": "orcheo.workflow/1", "name": "t",
        "nodes": [{ "id": "n", "type": "crypto", "config": { "operation": "hmac", "data": "x" },
                    "credentials": { "key": "signing" } }],
        "edges": [{ "source": "__start__", "target": "n" }]
    }))
    .expect("parses");
    let wf = engine.compile(doc).unwrap_or_else(|p| panic!("{p:#?}"));
    let out = engine
        .start(&wf, json!({}), RunOptions::default())
        .await
        .expect("starts");
    let e = out.error.expect("fails without a vault");
    assert_eq!(e.kind, "credential");
    assert!(e.message.contains("`signing`"), "{}", e.message);
}

#[tokio::test]
async fn datetime_through_the_engine() {
    let out = output(
        "datetime",
        json!({ "operation": "add", "value": "{{ input.at }}", "duration": "1h30m", "timezone": "Europe/Berlin" }),
        json!({ "at": "2024-05-01T08:00:00Z" }),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({ "iso": "2024-05-01T11:30:00+02:00", "epoch_ms": 1714555800000i64 })
    );
    let out = output(
        "datetime",
        json!({ "operation": "diff", "value": "{{ input.a }}", "end": "{{ input.b }}", "unit": "minutes" }),
        json!({ "a": 0, "b": 90_000 }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "diff": 1.5 }));
    let e = output(
        "datetime",
        json!({ "operation": "parse", "value": "{{ input.at }}" }),
        json!({ "at": "soon" }),
    )
    .await
    .unwrap_err();
    assert!(e.contains("cannot read \"soon\" as a time"), "{e}");
}
