//! The `code_js` node, run inside small workflows on the real engine: values in and out,
//! console logs, user line numbers in errors, time and memory limits, isolation between runs
//! and the absence of host globals.

use orcheo_core::checkpoint::{MemoryCheckpointer, RunStatus};
use orcheo_core::engine::{Engine, RunOptions, RunOutcome};
use orcheo_core::event::{EventKind, LogLevel, VecSink};
use orcheo_core::Workflow;
use orcheo_nodes::{run_js, JsError, JsJob};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn doc(nodes: Value, edges: Value) -> Workflow {
    serde_json::from_value(json!({
        "format": "orcheo.workflow/1", "name": "t", "nodes": nodes, "edges": edges
    }))
    .expect("parses")
}

impl H {
    async fn run_opts(
        &self,
        nodes: Value,
        edges: Value,
        input: Value,
        opts: RunOptions,
    ) -> RunOutcome {
        let wf = self
            .engine
            .compile(doc(nodes, edges))
            .unwrap_or_else(|p| panic!("{p:#?}"));
        self.engine.start(&wf, input, opts).await.expect("starts")
    }
    /// One `code_js` node `n` with this config, started from `__start__`.
    async fn js(&self, config: Value, input: Value) -> RunOutcome {
        self.run_opts(
            json!([{ "id": "n", "type": "code_js", "config": config }]),
            json!([{ "source": "__start__", "target": "n" }]),
            input,
            RunOptions::default(),
        )
        .await
    }
    async fn code(&self, code: &str) -> RunOutcome {
        self.js(json!({ "code": code }), json!({})).await
    }
    fn logs(&self, run_id: &str) -> Vec<(LogLevel, String)> {
        self.sink
            .run_events(run_id)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::NodeLog { level, message, .. } => Some((level, message)),
                _ => None,
            })
            .collect()
    }
}

fn failed(out: &RunOutcome) -> (String, String) {
    assert_eq!(out.status, RunStatus::Failed, "{:?}", out.results);
    let e = out.error.clone().expect("error");
    (e.kind, e.message)
}

#[tokio::test]
async fn computes_from_state_and_the_inputs_of_earlier_nodes() {
    let h = h();
    let out = h
        .run_opts(
            json!([
                { "id": "prices", "type": "set_variables", "config": { "values": { "unit": 12.5 } } },
                { "id": "calc", "type": "code_js",
                  "config": { "code": "const qty = state.order.qty;\nreturn { total: qty * input.prices.unit, ids: Object.keys(input), sku: state.order.sku.toUpperCase() };" },
                  "assign": { "total": "{{ output.total }}" } }
            ]),
            json!([
                { "source": "__start__", "target": "prices" },
                { "source": "prices", "target": "calc" }
            ]),
            json!({ "order": { "qty": 4, "sku": "ab-1" } }),
            RunOptions::default(),
        )
        .await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(
        out.results["calc"],
        json!({ "total": 50, "ids": ["prices"], "sku": "AB-1" })
    );
    assert_eq!(out.state["total"], json!(50));
}

#[tokio::test]
async fn scalar_and_undefined_results() {
    let h = h();
    let out = h.code("return 'hi ' + (1 + 2);").await;
    assert_eq!(out.results["n"], json!("hi 3"));
    let out = h.code("const x = 1;").await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(out.results["n"], Value::Null);
    let out = h.code("return [1, {a: [true, null]}, 'é'];").await;
    assert_eq!(out.results["n"], json!([1, {"a": [true, null]}, "é"]));
}

#[tokio::test]
async fn console_lines_become_logs_with_levels() {
    let h = h();
    let out = h
        .code("console.log('hello', 42, {a: 1});\nconsole.info('i');\nconsole.warn('careful');\nconsole.error(new TypeError('bad'));\nconsole.debug([1, 2]);\nreturn 1;")
        .await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(
        h.logs(&out.run_id),
        vec![
            (LogLevel::Info, "hello 42 {\"a\":1}".to_string()),
            (LogLevel::Info, "i".to_string()),
            (LogLevel::Warn, "careful".to_string()),
            (LogLevel::Error, "TypeError: bad".to_string()),
            (LogLevel::Debug, "[1,2]".to_string()),
        ]
    );
    // Lines printed before a failure are kept.
    let out = h
        .code("console.warn('before');\nthrow new Error('x');")
        .await;
    failed(&out);
    assert_eq!(
        h.logs(&out.run_id),
        vec![(LogLevel::Warn, "before".to_string())]
    );
}

#[tokio::test]
async fn thrown_errors_report_the_users_line() {
    let h = h();
    let out = h.code("const a = state.missing;\n\nreturn a.x;").await;
    let (kind, message) = failed(&out);
    assert_eq!(kind, "code");
    assert!(
        message.starts_with("code_js node `n`: TypeError: ") && message.ends_with("(line 3)"),
        "{message}"
    );
    assert!(message.contains("'x'"), "{message}");
    let err = out.error.expect("error");
    assert_eq!(
        err.details.as_deref().map(|d| d["line"].clone()),
        Some(json!(3))
    );

    // An error thrown inside a helper function points at the throw.
    let out = h
        .code("function check(v) {\n  if (v < 0) {\n    throw new RangeError('negative: ' + v);\n  }\n}\ncheck(-2);\nreturn 1;")
        .await;
    let (kind, message) = failed(&out);
    assert_eq!(kind, "code");
    assert_eq!(
        message,
        "code_js node `n`: RangeError: negative: -2 (line 3)"
    );

    // A thrown non-error value.
    let (kind, message) = failed(&h.code("throw {reason: 'nope'};").await);
    assert_eq!(kind, "code");
    assert!(
        message.contains("uncaught {\"reason\":\"nope\"}"),
        "{message}"
    );
}

#[tokio::test]
async fn syntax_errors_report_the_users_line_at_validation_and_at_run_time() {
    let h = h();
    let problems = h
        .engine
        .compile(doc(
            json!([{ "id": "n", "type": "code_js", "config": { "code": "const a = 1;\nconst b = 2;\nreturn a +* b;" } }]),
            json!([{ "source": "__start__", "target": "n" }]),
        ))
        .expect_err("a syntax error fails validation");
    let text = format!("{problems:?}");
    assert!(
        text.contains("SyntaxError") && text.contains("(line 3)") && text.contains("/code"),
        "{text}"
    );

    // The same check at run time (code that reaches the sandbox without validation).
    let job = JsJob {
        code: "let x = 1;\nif (x) {\n  x = ;\n}".into(),
        state: "{}".into(),
        input: "{}".into(),
        item: "null".into(),
        timeout: Duration::from_secs(1),
        memory_bytes: 16 << 20,
    };
    match run_js(&job, None).0 {
        Err(JsError::Code { message, line }) => {
            assert!(message.starts_with("SyntaxError"), "{message}");
            assert_eq!(line, Some(3));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_endless_loop_stops_at_the_time_limit() {
    let h = h();
    let t0 = Instant::now();
    let out = h
        .js(
            json!({ "code": "while (true) {}", "timeout_ms": 200 }),
            json!({}),
        )
        .await;
    let (kind, message) = failed(&out);
    assert_eq!(kind, "timeout");
    assert_eq!(
        message,
        "code_js node `n` exceeded its time limit of 200 ms"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // A catch cannot swallow the interrupt.
    let out = h
        .js(
            json!({ "code": "for (;;) { try { while (true) {} } catch (e) {} }", "timeout_ms": 100 }),
            json!({}),
        )
        .await;
    assert_eq!(failed(&out).0, "timeout");
    // The process keeps working.
    let out = h.code("return 7;").await;
    assert_eq!(out.results["n"], json!(7));
}

#[tokio::test]
async fn cancelling_the_run_stops_the_code() {
    let h = h();
    let opts = RunOptions::default();
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cancel.cancel();
    });
    let t0 = Instant::now();
    let out = h
        .run_opts(
            json!([{ "id": "n", "type": "code_js", "config": { "code": "while (true) {}", "timeout_ms": 60000 } }]),
            json!([{ "source": "__start__", "target": "n" }]),
            json!({}),
            opts,
        )
        .await;
    assert_ne!(out.status, RunStatus::Completed);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn allocating_too_much_stops_at_the_memory_limit() {
    let h = h();
    for code in [
        "const a = [];\nwhile (true) a.push({ n: a.length, s: 'x' + a.length });",
        "return 'abcdefgh'.repeat(8 * 1024 * 1024).length;",
        "const parts = [];\nfor (let i = 0; ; i++) parts.push(String(i).padStart(1000, '-'));",
        "return new Array(1e9).fill(0).length;",
    ] {
        let out = h
            .js(
                json!({ "code": code, "memory_mb": 8, "timeout_ms": 20000 }),
                json!({}),
            )
            .await;
        let (kind, message) = failed(&out);
        assert_eq!(kind, "memory", "{code}: {message}");
        assert_eq!(
            message,
            "code_js node `n` exceeded its memory limit of 8 MB"
        );
    }
    let out = h.code("return new Array(1000).fill(1).length;").await;
    assert_eq!(out.results["n"], json!(1000));
}

#[tokio::test]
async fn changes_to_globals_and_prototypes_do_not_reach_the_next_run() {
    let h = h();
    let out = h
        .code("Object.prototype.polluted = 1;\nArray.prototype.map = null;\nJSON.stringify = () => 'hacked';\nglobalThis.leak = 5;\nreturn { p: ({}).polluted };")
        .await;
    assert_eq!(out.results["n"], json!({ "p": 1 }));
    let out = h
        .code("return { polluted: typeof ({}).polluted, leak: typeof leak, map: typeof [].map, json: JSON.stringify([1]) };")
        .await;
    assert_eq!(
        out.results["n"],
        json!({ "polluted": "undefined", "leak": "undefined", "map": "function", "json": "[1]" })
    );
    // Two nodes of one run do not share a sandbox either.
    let out = h
        .run_opts(
            json!([
                { "id": "a", "type": "code_js", "config": { "code": "Object.prototype.polluted = 1; globalThis.shared = 1; return 1;" } },
                { "id": "b", "type": "code_js", "config": { "code": "return [typeof ({}).polluted, typeof shared];" } }
            ]),
            json!([{ "source": "__start__", "target": "a" }, { "source": "a", "target": "b" }]),
            json!({}),
            RunOptions::default(),
        )
        .await;
    assert_eq!(out.results["b"], json!(["undefined", "undefined"]));
}

/// Every global the sandbox may have: the ECMAScript standard library, plus `console`.
const ALLOWED_GLOBALS: &[&str] = &[
    "Object",
    "Function",
    "Array",
    "Number",
    "parseFloat",
    "parseInt",
    "Infinity",
    "NaN",
    "undefined",
    "decodeURI",
    "decodeURIComponent",
    "encodeURI",
    "encodeURIComponent",
    "escape",
    "unescape",
    "isFinite",
    "isNaN",
    "globalThis",
    "Symbol",
    "Error",
    "EvalError",
    "RangeError",
    "ReferenceError",
    "SyntaxError",
    "TypeError",
    "URIError",
    "InternalError",
    "AggregateError",
    "SuppressedError",
    "Iterator",
    "Math",
    "Reflect",
    "String",
    "Boolean",
    "BigInt",
    "Date",
    "eval",
    "RegExp",
    "JSON",
    "Proxy",
    "Map",
    "Set",
    "WeakMap",
    "WeakSet",
    "ArrayBuffer",
    "SharedArrayBuffer",
    "Uint8ClampedArray",
    "Int8Array",
    "Uint8Array",
    "Int16Array",
    "Uint16Array",
    "Int32Array",
    "Uint32Array",
    "BigInt64Array",
    "BigUint64Array",
    "Float16Array",
    "Float32Array",
    "Float64Array",
    "DataView",
    "Atomics",
    "Promise",
    "WeakRef",
    "FinalizationRegistry",
    "AsyncFunction",
    "GeneratorFunction",
    "AsyncGeneratorFunction",
    "DisposableStack",
    "AsyncDisposableStack",
    "queueMicrotask",
    "console",
];

#[tokio::test]
async fn only_standard_globals_exist() {
    let h = h();
    let out = h
        .code("return { names: Object.getOwnPropertyNames(globalThis), types: ['require', 'process', 'fetch', 'XMLHttpRequest', 'Deno', 'Bun', 'std', 'os', 'setTimeout', 'setInterval', 'performance', 'navigator', 'WebAssembly', 'importScripts', 'module', 'exports', 'print', 'scriptArgs', 'gc'].map((n) => typeof globalThis[n]) };")
        .await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    let names: Vec<String> =
        serde_json::from_value(out.results["n"]["names"].clone()).expect("names");
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !ALLOWED_GLOBALS.contains(&n.as_str()))
        .collect();
    assert!(unknown.is_empty(), "unexpected globals: {unknown:?}");
    assert!(names.iter().any(|n| n == "JSON") && names.iter().any(|n| n == "console"));
    for t in out.results["n"]["types"].as_array().expect("types") {
        assert_eq!(t, "undefined", "{}", out.results["n"]);
    }
    // Modules cannot be loaded: there is no loader.
    let (kind, message) = failed(&h.code("return import('os');").await);
    assert_eq!(kind, "code", "{message}");
}

#[tokio::test]
async fn eval_and_function_stay_inside_the_sandbox() {
    let h = h();
    let out = h
        .code("const g = Function('return this')();\nreturn {\n  same: g === globalThis,\n  viaEval: (0, eval)('typeof require + typeof process + typeof fetch'),\n  viaFunction: Function('return typeof Deno + typeof std + typeof os')(),\n  ctor: (() => {}).constructor('return typeof XMLHttpRequest')(),\n  console: Object.keys(console).sort(),\n};")
        .await;
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.error);
    assert_eq!(
        out.results["n"],
        json!({
            "same": true,
            "viaEval": "undefinedundefinedundefined",
            "viaFunction": "undefinedundefinedundefined",
            "ctor": "undefined",
            "console": ["debug", "error", "info", "log", "trace", "warn"]
        })
    );
}

#[tokio::test]
async fn results_that_are_not_json_get_a_clear_error() {
    let h = h();
    for (code, says) in [
        ("return () => 1;", "returned a function"),
        ("return 10n;", "returned a BigInt"),
        ("return Symbol('s');", "returned a symbol"),
        (
            "const a = {}; a.self = a; return a;",
            "cannot be turned into JSON",
        ),
        ("return { big: 1n };", "cannot be turned into JSON"),
    ] {
        let (kind, message) = failed(&h.code(code).await);
        assert_eq!(kind, "code", "{code}");
        assert!(
            message.starts_with("code_js node `n`: the code") && message.contains(says),
            "{code}: {message}"
        );
    }
}

#[tokio::test]
async fn limits_out_of_range_are_config_errors() {
    let h = h();
    let problems = h
        .engine
        .compile(doc(
            json!([{ "id": "n", "type": "code_js", "config": { "code": "return 1;", "timeout_ms": 60001 } }]),
            json!([{ "source": "__start__", "target": "n" }]),
        ))
        .expect_err("a too long timeout fails validation");
    assert!(
        format!("{problems:?}").contains("timeout_ms"),
        "{problems:?}"
    );
}
