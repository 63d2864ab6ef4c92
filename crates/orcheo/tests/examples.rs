//! Runs every workflow in `examples/` with the real `orcheo` binary, as a subprocess, and checks
//! what each one is there to show: exit code, final state, which nodes ran (and which did not),
//! retry attempts, map items, child runs, interrupts and resumes.
//!
//! A new example file needs a test here: `every_example_is_covered` fails until it is listed in
//! [`COVERED`] (and [`example`] refuses names that are not).
//!
//! The examples must stay canonical (parse + re-serialise gives the same text). To rewrite them
//! in canonical form after an edit: `ORCHEO_BLESS_EXAMPLES=1 cargo test -p orcheo --test examples`.

mod support;

use orcheo_core::Workflow;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_orcheo");

/// Every file under `examples/` (relative path). Each is run by at least one test below.
const COVERED: &[&str] = &[
    "approval-refund.json",
    "checkout-tax-inline.json",
    "csv-sales-rollup.json",
    "enrich-lead.json",
    "exchange-rate-fetch.json",
    "expense-escalation.json",
    "js-order-score.json",
    "lead-enrichment-map.json",
    "nightly-sales-report.json",
    "order-ledger-file.json",
    "order-routing.json",
    "paginated-sync-loop.json",
    "parallel-quotes-fanin.json",
    "python-invoice-total.json",
    "retry-and-fallback.json",
    "signup-quality-gate.json",
    "support-ticket-triage.json",
    "webhook-order-intake.json",
];

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The path of a covered example.
fn example(name: &str) -> PathBuf {
    assert!(
        COVERED.contains(&name),
        "{name} is not listed in COVERED; add it there"
    );
    examples_dir().join(name)
}

/// Every file under `examples/`, as paths relative to it with `/` separators.
fn example_files() -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.file_type().expect("file type").is_dir() {
                walk(&e.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(&examples_dir(), "", &mut out);
    out
}

/// A fresh directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "orcheo-examples-{}-{}-{nanos}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating scratch dir");
        Scratch(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn checkpoints(&self) -> String {
        self.0.join("runs").display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `orcheo` with `args`: (exit code, stdout, stderr).
fn orcheo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("ORCHEO_CHECKPOINT_DIR")
        .env_remove("ORCHEO_LOG")
        .output()
        .expect("running the orcheo binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One `orcheo run --json` process: its exit code and event stream.
struct Run {
    code: i32,
    events: Vec<Value>,
    stderr: String,
    /// The run this process drove (the first event's run; child runs have their own ids).
    run_id: String,
}

/// `orcheo run EXAMPLE --json --checkpoint-dir DIR [--input JSON] EXTRA...`.
fn run_example(name: &str, input: Option<Value>, scratch: &Scratch, extra: &[&str]) -> Run {
    let file = example(name).display().to_string();
    let cp = scratch.checkpoints();
    let input_text = input.map(|v| v.to_string());
    let mut args = vec![
        "run",
        file.as_str(),
        "--json",
        "--checkpoint-dir",
        cp.as_str(),
    ];
    if let Some(i) = &input_text {
        args.extend(["--input", i.as_str()]);
    }
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = orcheo(&args);
    let events: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("{name}: stdout line is not a JSON event ({e}): {l}\nstderr: {stderr}")
            })
        })
        .collect();
    let run_id = events
        .first()
        .and_then(|e| e["run_id"].as_str())
        .unwrap_or_default()
        .to_string();
    let run = Run {
        code,
        events,
        stderr,
        run_id,
    };
    run.check_stream(name);
    run
}

fn resume(name: &str, scratch: &Scratch, run_id: &str, value: Option<&str>) -> Run {
    let mut extra = vec!["--resume", run_id];
    if let Some(v) = value {
        extra.extend(["--resume-value", v]);
    }
    run_example(name, None, scratch, &extra)
}

impl Run {
    fn dump(&self) -> String {
        let events: Vec<String> = self
            .events
            .iter()
            .filter(|e| e["type"] != "checkpoint_saved")
            .map(|e| e.to_string())
            .collect();
        format!(
            "exit code {}\nstderr:\n{}\nevents:\n{}",
            self.code,
            self.stderr,
            events.join("\n")
        )
    }

    /// Invariants of every event stream: only events on stdout, each run's sequence numbers
    /// consecutive, the root run started first and ended with the event its exit code implies.
    fn check_stream(&self, name: &str) {
        if self.events.is_empty() {
            return; // rejected before running (exit 2); the caller checks stderr
        }
        let mut last: HashMap<&str, u64> = HashMap::new();
        for e in &self.events {
            let id = e["run_id"].as_str().expect("run_id");
            let seq = e["seq"].as_u64().expect("seq");
            assert!(e["ts"].is_string(), "{name}: event without ts: {e}");
            if let Some(prev) = last.insert(id, seq) {
                assert_eq!(
                    seq,
                    prev + 1,
                    "{name}: run {id} skipped or repeated a sequence number\n{}",
                    self.dump()
                );
            }
        }
        let root: Vec<&Value> = self.root().collect();
        assert_eq!(root[0]["type"], "run_started", "{name}\n{}", self.dump());
        let end = root.last().map(|e| e["type"].as_str().unwrap_or(""));
        let want = match self.code {
            0 => "run_completed",
            1 => "run_failed",
            3 => "run_waiting",
            4 => "run_cancelled",
            c => panic!("{name}: unexpected exit code {c}\n{}", self.dump()),
        };
        assert_eq!(
            end,
            Some(want),
            "{name}: last event of the run\n{}",
            self.dump()
        );
    }

    fn expect_exit(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "{}", self.dump());
        self
    }

    /// Events of the run itself (not of its child runs).
    fn root(&self) -> impl Iterator<Item = &Value> {
        self.events.iter().filter(|e| e["run_id"] == self.run_id)
    }

    fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.root().filter(|e| e["type"] == ty).collect()
    }

    fn only(&self, ty: &str) -> &Value {
        let v = self.of_type(ty);
        assert_eq!(v.len(), 1, "expected one {ty} event\n{}", self.dump());
        v[0]
    }

    /// The final state of a completed run.
    fn state(&self) -> &Value {
        &self.only("run_completed")["state"]
    }

    fn node_events(&self, ty: &str, node: &str) -> Vec<&Value> {
        self.of_type(ty)
            .into_iter()
            .filter(|e| e["node"] == node)
            .collect()
    }

    /// `node_started` events of `node` (one per attempt and map item).
    fn started(&self, node: &str) -> Vec<&Value> {
        self.node_events("node_started", node)
    }

    fn ran(&self, node: &str) -> bool {
        !self.started(node).is_empty()
    }

    /// Nodes started in this process, in order, each once.
    fn nodes_run(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.of_type("node_started") {
            let n = e["node"].as_str().unwrap_or_default().to_string();
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// The `node_completed` event of `node` (the collected one for a map).
    fn completed(&self, node: &str) -> &Value {
        let v: Vec<&Value> = self
            .node_events("node_completed", node)
            .into_iter()
            .filter(|e| e.get("index").is_none())
            .collect();
        assert_eq!(
            v.len(),
            1,
            "expected {node} to complete once\n{}",
            self.dump()
        );
        v[0]
    }

    fn failures(&self, node: &str) -> Vec<&Value> {
        self.node_events("node_failed", node)
    }

    fn attempts(&self, node: &str) -> Vec<u64> {
        self.started(node)
            .iter()
            .map(|e| e["attempt"].as_u64().unwrap_or(0))
            .collect()
    }

    /// The superstep `node` ran in.
    fn step_of(&self, node: &str) -> u64 {
        self.started(node)[0]["step"].as_u64().expect("step")
    }

    /// Ids of child runs started by this run's nodes, in start order.
    fn children(&self) -> Vec<(String, Value)> {
        self.events
            .iter()
            .filter(|e| e["type"] == "run_started" && e["parent"]["run_id"] == self.run_id)
            .map(|e| (e["run_id"].as_str().unwrap_or("").to_string(), e.clone()))
            .collect()
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// The examples as documents
// ---------------------------------------------------------------------------------------------

#[test]
fn every_example_is_covered() {
    let on_disk: BTreeSet<String> = example_files().into_iter().collect();
    let covered: BTreeSet<String> = COVERED.iter().map(|s| s.to_string()).collect();
    let untested: Vec<&String> = on_disk.difference(&covered).collect();
    let missing: Vec<&String> = covered.difference(&on_disk).collect();
    assert!(
        untested.is_empty(),
        "examples without a test: {untested:?}; add a test that runs each and list it in COVERED"
    );
    assert!(
        missing.is_empty(),
        "COVERED lists files that are not in examples/: {missing:?}"
    );
    assert!(
        (12..=18).contains(&on_disk.len()),
        "keep the examples a small set"
    );
}

#[test]
fn examples_validate() {
    let files: Vec<String> = COVERED
        .iter()
        .map(|f| example(f).display().to_string())
        .collect();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = orcheo(&args);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "validation printed warnings:\n{stderr}"
    );
    for f in &files {
        assert!(
            stdout.contains(&format!("{f}: ok")),
            "{f} not reported ok:\n{stdout}"
        );
    }
}

/// Parsing then re-serialising each file gives back the same JSON, key order and layout
/// included (2-space indent): no defaults written out, nothing lost.
#[test]
fn examples_are_canonical() {
    let bless = std::env::var_os("ORCHEO_BLESS_EXAMPLES").is_some();
    let mut wrong = Vec::new();
    for name in COVERED {
        let path = example(name);
        let text = std::fs::read_to_string(&path).expect("reading example");
        let doc = Workflow::from_json(&text)
            .unwrap_or_else(|e| panic!("{name} does not parse: {} at {}", e.inner(), e.path()));
        let written: Value = serde_json::from_str(&text).expect("JSON");
        let again = doc.to_value();
        let canonical = serde_json::to_string_pretty(&again).expect("serialising") + "\n";
        if bless {
            std::fs::write(&path, &canonical).expect("rewriting example");
            continue;
        }
        assert_eq!(
            written, again,
            "{name}: the document changes when parsed and serialised again"
        );
        if text != canonical {
            wrong.push(*name);
        }
        // Parsing the canonical text gives the same document again (a fixed point).
        let twice = Workflow::from_json(&canonical).expect("canonical text parses");
        assert_eq!(twice, doc, "{name}: not a fixed point");
    }
    assert!(
        wrong.is_empty(),
        "not in canonical layout (key order, defaults or indentation): {wrong:?}; \
         run ORCHEO_BLESS_EXAMPLES=1 cargo test -p orcheo --test examples to rewrite them"
    );
}

/// The canvas (JavaScript) writes whole-number positions as `100`, not `100.0`; such a document
/// must round-trip to the same JSON, as Contract 1 promises for UI positions.
#[test]
fn whole_number_canvas_positions_round_trip() {
    let written = json!({
        "format": "orcheo.workflow/1",
        "name": "Canvas",
        "nodes": [
            { "id": "a", "type": "noop", "ui": { "position": { "x": 100, "y": -40 }, "width": 240 } }
        ],
        "edges": [ { "source": "__start__", "target": "a" } ]
    });
    let doc = Workflow::from_value(written.clone()).expect("valid document");
    assert_eq!(doc.to_value(), written);
}

/// Every document, plus the inline sub-workflows inside them.
fn all_documents() -> Vec<(String, Value)> {
    fn inline(name: &str, doc: &Value, out: &mut Vec<(String, Value)>) {
        for n in doc["nodes"].as_array().into_iter().flatten() {
            let w = &n["config"]["workflow"]["inline"];
            if w.is_object() {
                let label = format!("{name}#{}", n["id"].as_str().unwrap_or(""));
                out.push((label.clone(), w.clone()));
                inline(&label, w, out);
            }
        }
    }
    let mut out = Vec::new();
    for name in COVERED {
        let text = std::fs::read_to_string(example(name)).expect("reading example");
        let doc: Value = serde_json::from_str(&text).expect("JSON");
        out.push((name.to_string(), doc.clone()));
        inline(name, &doc, &mut out);
    }
    out
}

/// The examples together show every feature of the format (so that none silently drops out).
#[test]
fn examples_show_every_feature() {
    let docs = all_documents();
    let mut reducers = BTreeSet::new();
    let mut node_types = BTreeSet::new();
    let mut edge_kinds = BTreeSet::new();
    let mut branch_sources = BTreeSet::new();
    let mut trigger_types = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut note = |what: &str| {
        seen.insert(what.to_string());
    };
    for (name, doc) in &docs {
        if !name.contains('#') {
            assert!(
                doc["description"].as_str().is_some_and(|d| d.len() > 40),
                "{name} needs a real description"
            );
            assert!(
                doc["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{name} needs tags"
            );
        }
        for (_, f) in doc["state"].as_object().into_iter().flatten() {
            reducers.insert(f["reducer"].as_str().unwrap_or("replace").to_string());
        }
        if doc["input_schema"].is_object() {
            note("input_schema");
        }
        if doc["settings"]["recursion_limit"].is_u64() {
            note("settings.recursion_limit");
        }
        for t in doc["triggers"].as_array().into_iter().flatten() {
            trigger_types.insert(t["type"].as_str().unwrap_or("").to_string());
        }
        let nodes = doc["nodes"].as_array().cloned().unwrap_or_default();
        let type_of: HashMap<String, String> = nodes
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap_or("").to_string(),
                    n["type"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for n in &nodes {
            let ty = n["type"].as_str().unwrap_or("");
            node_types.insert(ty.to_string());
            let map = &n["map"];
            if map.is_object() {
                note("map");
                if map["as"].is_string() && map["concurrency"].is_u64() {
                    note("map with as + concurrency");
                }
                if ty == "sub_workflow" {
                    note("map over a sub_workflow");
                }
            }
            let w = &n["config"]["workflow"];
            if w["path"].is_string() {
                note("sub_workflow by path");
            }
            if w["inline"].is_object() {
                note("sub_workflow inline");
            }
            if ty == "human_approval" && n["config"]["timeout"].is_string() {
                note("human_approval with timeout");
            }
            if n["retry"].is_object() {
                note("retry");
            }
            if n["timeout"].is_string() {
                note("node timeout");
            }
            if let Some(h) = n["on_error"].as_str() {
                note(&format!("on_error {h}"));
            }
            if n["assign"].is_object() {
                note("assign");
            }
            let ui = &n["ui"];
            for k in ["position", "color", "note"] {
                if !ui[k].is_null() {
                    note(&format!("ui.{k}"));
                }
            }
        }
        let mut sources_into: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for e in doc["edges"].as_array().into_iter().flatten() {
            let kind = e["kind"].as_str().unwrap_or("normal");
            edge_kinds.insert(kind.to_string());
            let src = e["source"].as_str().unwrap_or("");
            let dst = e["target"].as_str().unwrap_or("");
            if e["condition"].is_string() {
                note("conditional edge");
            }
            if e["branch"].is_string() {
                branch_sources.insert(type_of.get(src).cloned().unwrap_or_default());
            }
            if dst == "__end__" {
                note("edge to __end__");
            }
            if src == dst {
                note("loop back edge");
            }
            sources_into.entry(dst).or_default().insert(src);
        }
        for (dst, srcs) in sources_into {
            if type_of.get(dst).map(String::as_str) == Some("merge") && srcs.len() > 1 {
                note("fan-in into merge");
            }
        }
    }
    let all_reducers: BTreeSet<String> = strs(&[
        "replace",
        "append",
        "merge",
        "deep_merge",
        "add",
        "union",
        "max",
        "min",
        "messages",
    ])
    .into_iter()
    .collect();
    assert_eq!(reducers, all_reducers, "reducers shown by the examples");

    let (code, stdout, _) = orcheo(&["nodes"]);
    assert_eq!(code, 0);
    let catalog: Vec<Value> = serde_json::from_str(&stdout).expect("orcheo nodes prints JSON");
    let all_types: BTreeSet<String> = catalog
        .iter()
        .map(|s| s["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        node_types, all_types,
        "node types used by the examples vs the catalog"
    );

    assert_eq!(
        edge_kinds,
        strs(&["else", "error", "normal", "timeout"])
            .into_iter()
            .collect(),
        "edge kinds"
    );
    for t in ["if_else", "switch", "human_approval"] {
        assert!(
            branch_sources.contains(t),
            "no branch edge leaves a {t} node"
        );
    }
    for t in ["cron", "webhook"] {
        assert!(trigger_types.contains(t), "no {t} trigger");
    }
    for f in [
        "input_schema",
        "settings.recursion_limit",
        "map",
        "map with as + concurrency",
        "map over a sub_workflow",
        "sub_workflow by path",
        "sub_workflow inline",
        "human_approval with timeout",
        "retry",
        "node timeout",
        "on_error continue",
        "on_error route",
        "assign",
        "ui.position",
        "ui.color",
        "ui.note",
        "conditional edge",
        "edge to __end__",
        "loop back edge",
        "fan-in into merge",
    ] {
        assert!(seen.contains(f), "no example shows: {f}");
    }
}

#[test]
fn validate_rejects_a_broken_document() {
    let scratch = Scratch::new("broken");
    let file = scratch.path().join("broken.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({
            "format": "orcheo.workflow/1",
            "name": "Broken",
            "nodes": [
                { "id": "greet", "type": "templat", "config": { "template": "hi" } }
            ],
            "edges": [
                { "source": "__start__", "target": "greet" },
                { "source": "greet", "target": "gret" }
            ]
        }))
        .expect("json"),
    )
    .expect("writing");
    let f = file.display().to_string();
    let (code, stdout, stderr) = orcheo(&["validate", &f]);
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Every problem at once, each with its path and a fix.
    assert!(
        stderr.contains("/nodes/0/type") && stderr.contains("unknown node type `templat`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `template`?"), "{stderr}");
    assert!(
        stderr.contains("/edges/1/target") && stderr.contains("did you mean `greet`?"),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("{f}: 2 error(s)")), "{stdout}");

    // Not JSON at all.
    let bad = scratch.path().join("not-json.json");
    std::fs::write(&bad, "{ \"format\": ").expect("writing");
    let (code, _, stderr) = orcheo(&["validate", &bad.display().to_string()]);
    assert_eq!(code, 2);
    assert!(!stderr.trim().is_empty(), "no message for malformed JSON");

    // `run` refuses it too, with the same problems, and runs nothing.
    let cp = scratch.checkpoints();
    let (code, stdout, stderr) = orcheo(&["run", &f, "--json", "--checkpoint-dir", &cp]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "events printed for an invalid document");
    assert!(stderr.contains("the workflow was not run"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// One test (or a few) per example
// ---------------------------------------------------------------------------------------------

#[test]
fn order_routing_switch_picks_one_lane() {
    let s = Scratch::new("order");
    let cases = [
        (
            json!({"order_id": "A-1", "country": "DE", "total": 1200}),
            "priority_desk",
            "priority",
            "same-day courier",
            "vip",
        ),
        (
            json!({"order_id": "A-2", "country": "DE", "total": 120}),
            "local_warehouse",
            "domestic",
            "DHL",
            "domestic",
        ),
        (
            json!({"order_id": "A-3", "country": "FR", "total": 50.5}),
            "international",
            "international",
            "UPS",
            "international",
        ),
    ];
    for (input, lane_node, lane, carrier, branch) in cases {
        let r = run_example("order-routing.json", Some(input.clone()), &s, &[]);
        r.expect_exit(0);
        assert_eq!(r.completed("route_order")["branch"], branch);
        assert_eq!(
            r.nodes_run(),
            strs(&["route_order", lane_node, "lane_chosen", "confirm"]),
            "exactly one lane runs"
        );
        let mut want = json!({
            "lane": lane,
            "carrier": carrier,
            "confirmation": format!(
                "Order {} ({} EUR) ships with {carrier} on the {lane} lane.",
                input["order_id"].as_str().unwrap_or(""),
                input["total"]
            ),
        });
        for (k, v) in input.as_object().expect("object") {
            want[k] = v.clone();
        }
        assert_eq!(r.state(), &want);
    }
    // The input schema is enforced before anything runs.
    let r = run_example(
        "order-routing.json",
        Some(json!({"order_id": "A-4", "total": 10})),
        &s,
        &[],
    );
    r.expect_exit(2);
    assert!(r.events.is_empty(), "{}", r.dump());
    assert!(
        r.stderr.contains("input_schema")
            && r.stderr.contains("\"country\" is a required property"),
        "{}",
        r.stderr
    );
}

#[test]
fn refund_up_to_100_is_approved_without_waiting() {
    let s = Scratch::new("refund-small");
    let r = run_example(
        "approval-refund.json",
        Some(json!({"order_id": "o-1", "customer": "Ada", "amount": 40})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert!(!r.ran("manager_approval"));
    assert!(r.of_type("run_waiting").is_empty());
    assert_eq!(
        r.state(),
        &json!({
            "status": "auto_approved",
            "audit": ["auto-approved: 40 EUR is within the limit"],
            "notice": "Hello Ada, your refund request for order o-1 is auto approved.",
            "order_id": "o-1", "customer": "Ada", "amount": 40
        })
    );
}

#[test]
fn refund_over_100_waits_for_the_manager_and_follows_the_decision() {
    let s = Scratch::new("refund-large");
    let input =
        json!({"order_id": "o-2", "customer": "Bob", "amount": 400, "reason": "arrived broken"});

    // Approve, with a comment.
    let first = run_example("approval-refund.json", Some(input.clone()), &s, &[]);
    first.expect_exit(3);
    let waiting = first.only("run_waiting");
    assert_eq!(waiting["node"], "manager_approval");
    assert_eq!(
        waiting["interrupt"]["payload"],
        json!({
            "message": "Refund 400 EUR to Bob?",
            "options": ["approve", "reject"],
            "data": {"order_id": "o-2", "reason": "arrived broken"}
        })
    );
    assert!(
        waiting.get("timeout_at").is_none(),
        "no timeout was configured"
    );
    assert!(!first.ran("issue_refund") && !first.ran("notify_customer"));

    let second = resume(
        "approval-refund.json",
        &s,
        &first.run_id,
        Some(r#"{"decision": "approve", "comment": "loyal customer"}"#),
    );
    second.expect_exit(0);
    assert_eq!(
        second.run_id, first.run_id,
        "resuming continues the same run"
    );
    assert!(
        second.only("run_started")["resumed_from"].is_u64(),
        "{}",
        second.dump()
    );
    assert!(
        !second.ran("check_amount"),
        "finished nodes are not run again"
    );
    assert_eq!(
        second.nodes_run(),
        strs(&["manager_approval", "issue_refund", "notify_customer"])
    );
    assert_eq!(second.completed("manager_approval")["branch"], "approve");
    assert_eq!(
        second.state(),
        &json!({
            "status": "refunded",
            "audit": ["approved by manager: loyal customer"],
            "notice": "Hello Bob, your refund request for order o-2 is refunded.",
            "order_id": "o-2", "customer": "Bob", "amount": 400, "reason": "arrived broken"
        })
    );
    // A completed run cannot be resumed again.
    let again = resume("approval-refund.json", &s, &first.run_id, Some("true"));
    again.expect_exit(2);
    assert!(
        again.stderr.contains("already completed"),
        "{}",
        again.stderr
    );

    // Reject: a plain option name as the answer.
    let first = run_example("approval-refund.json", Some(input), &s, &[]);
    first.expect_exit(3);
    let second = resume(
        "approval-refund.json",
        &s,
        &first.run_id,
        Some(r#""reject""#),
    );
    second.expect_exit(0);
    assert!(!second.ran("issue_refund"));
    assert_eq!(second.state()["status"], "rejected");
    assert_eq!(
        second.state()["audit"],
        json!(["rejected by manager: no comment"])
    );
}

/// Contract 2: sequence numbers let a client resume a stream after a disconnect, so a resumed
/// run continues its stream right after the last event the previous process emitted (the
/// `run_waiting` event), with no gap and no number used twice.
#[test]
fn resumed_run_continues_the_event_sequence() {
    let s = Scratch::new("refund-seq");
    let input = json!({"order_id": "o-3", "customer": "Cy", "amount": 250});
    let first = run_example("approval-refund.json", Some(input), &s, &[]);
    first.expect_exit(3);
    let last = first.root().map(|e| e["seq"].as_u64().unwrap_or(0)).max();
    let second = resume("approval-refund.json", &s, &first.run_id, Some("true"));
    second.expect_exit(0);
    let next = second.root().map(|e| e["seq"].as_u64().unwrap_or(0)).min();
    assert_eq!(
        next,
        last.map(|l| l + 1),
        "the resumed stream must start right after the last event of the waiting run"
    );
}

#[test]
fn expense_team_lead_answers_within_the_sla() {
    let s = Scratch::new("expense-ok");
    let first = run_example(
        "expense-escalation.json",
        Some(json!({"employee": "Eve", "amount": 120})),
        &s,
        &[],
    );
    first.expect_exit(3);
    let waiting = first.only("run_waiting");
    assert_eq!(waiting["node"], "team_lead");
    assert_eq!(
        waiting["interrupt"]["timeout_ms"],
        4 * 3_600_000,
        "default SLA of 4h"
    );
    assert!(waiting["timeout_at"].is_string());

    let second = resume("expense-escalation.json", &s, &first.run_id, Some("true"));
    second.expect_exit(0);
    assert_eq!(second.nodes_run(), strs(&["team_lead", "pay_by_lead"]));
    assert!(!second.ran("escalate") && !second.ran("finance"));
    assert_eq!(
        second.state(),
        &json!({
            "status": "paid", "approved_by": "team lead", "history": ["approved by the team lead"],
            "employee": "Eve", "amount": 120
        })
    );
}

#[test]
fn expense_escalates_to_finance_when_the_sla_passes() {
    let s = Scratch::new("expense-timeout");
    let first = run_example(
        "expense-escalation.json",
        Some(json!({"employee": "Eve", "amount": 120, "sla": "20ms"})),
        &s,
        &[],
    );
    first.expect_exit(3);
    assert_eq!(
        first.only("run_waiting")["interrupt"]["timeout_ms"],
        20,
        "{}",
        first.dump()
    );
    // The engine decides by the clock at resume time: let the 20 ms pass.
    std::thread::sleep(std::time::Duration::from_millis(80));

    // Resuming without an answer follows the timeout edge, then finance waits.
    let second = resume("expense-escalation.json", &s, &first.run_id, None);
    second.expect_exit(3);
    assert_eq!(
        second.completed("team_lead")["output"]["timed_out"],
        true,
        "{}",
        second.dump()
    );
    assert!(!second.ran("pay_by_lead") && !second.ran("reject"));
    assert!(second.ran("escalate"));
    assert_eq!(second.only("run_waiting")["node"], "finance");
    assert!(
        second.only("run_waiting").get("timeout_at").is_none(),
        "finance has no SLA"
    );

    let third = resume(
        "expense-escalation.json",
        &s,
        &first.run_id,
        Some(r#""approve""#),
    );
    third.expect_exit(0);
    assert_eq!(third.nodes_run(), strs(&["finance", "pay_by_finance"]));
    assert_eq!(
        third.state(),
        &json!({
            "status": "paid", "approved_by": "finance",
            "history": ["team lead did not answer within 20ms", "approved by finance"],
            "employee": "Eve", "amount": 120, "sla": "20ms"
        })
    );
}

#[test]
fn enrich_lead_runs_alone() {
    let s = Scratch::new("enrich");
    let r = run_example(
        "enrich-lead.json",
        Some(json!({"email": "Ada@ACME.io"})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert_eq!(
        r.state(),
        &json!({"domain": "acme.io", "free_mail": false, "score": 80, "email": "Ada@ACME.io"})
    );
    assert_eq!(r.completed("parse_domain")["output"], "acme.io");
    let r = run_example(
        "enrich-lead.json",
        Some(json!({"email": "bob@gmail.com"})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert_eq!(r.state()["score"], 20);
    assert_eq!(r.state()["free_mail"], true);
    let r = run_example(
        "enrich-lead.json",
        Some(json!({"email": "not an address"})),
        &s,
        &[],
    );
    r.expect_exit(2);
    assert!(r.stderr.contains("input/email"), "{}", r.stderr);
}

#[test]
fn lead_enrichment_maps_a_sub_workflow_over_the_leads() {
    let s = Scratch::new("leads");
    let leads = json!([
        {"email": "ada@acme.io", "name": "Ada"},
        {"email": "bob@gmail.com"},
        {"email": "cy@acme.io", "name": "Cy"},
        {"email": "dee@globex.com", "name": "Dee"}
    ]);
    let r = run_example(
        "lead-enrichment-map.json",
        Some(json!({ "leads": leads })),
        &s,
        &[],
    );
    r.expect_exit(0);

    // One map item per lead, collected in input order.
    let items: Vec<u64> = r
        .started("enrich")
        .iter()
        .map(|e| e["index"].as_u64().expect("map items have an index"))
        .collect();
    let mut sorted = items.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 1, 2, 3]);
    let collected = &r.completed("enrich")["output"];
    assert_eq!(collected.as_array().map(Vec::len), Some(4));
    assert_eq!(collected[1]["domain"], "gmail.com");

    // Never more than `concurrency: 2` items in flight.
    let mut in_flight = 0i32;
    let mut most = 0;
    for e in r
        .root()
        .filter(|e| e["node"] == "enrich" && e.get("index").is_some())
    {
        match e["type"].as_str() {
            Some("node_started") => in_flight += 1,
            Some("node_completed") | Some("node_failed") => in_flight -= 1,
            _ => {}
        }
        most = most.max(in_flight);
    }
    assert!(
        most <= 2,
        "{most} items ran at once, above the map's concurrency of 2"
    );

    // Each item is a linked child run of enrich-lead.json that completed.
    let children = r.children();
    assert_eq!(children.len(), 4, "{}", r.dump());
    for (i, (id, started)) in children.iter().enumerate() {
        assert_eq!(started["workflow"], "Enrich one lead");
        assert_eq!(started["parent"]["node"], "enrich");
        assert!(id.starts_with(&r.run_id), "child id {id}");
        let done = r
            .events
            .iter()
            .find(|e| e["run_id"] == id.as_str() && e["type"] == "run_completed")
            .unwrap_or_else(|| panic!("child {i} did not complete\n{}", r.dump()));
        assert!(done["state"]["score"].is_u64());
    }

    assert_eq!(
        r.state(),
        &json!({
            "enriched": [
                {"email": "ada@acme.io", "domain": "acme.io", "score": 80},
                {"email": "bob@gmail.com", "domain": "gmail.com", "score": 20},
                {"email": "cy@acme.io", "domain": "acme.io", "score": 80},
                {"email": "dee@globex.com", "domain": "globex.com", "score": 80}
            ],
            "domains": ["acme.io", "gmail.com", "globex.com"],
            "best_score": 80,
            "worst_score": 20,
            "qualified": ["ada@acme.io", "cy@acme.io", "dee@globex.com"],
            "summary": "3 of 4 leads qualified (best score 80, domains: acme.io, gmail.com, globex.com)",
            "leads": leads
        })
    );
}

#[test]
fn retry_then_fallback_then_continue() {
    let s = Scratch::new("retry");
    let r = run_example("retry-and-fallback.json", None, &s, &[]);
    r.expect_exit(0);

    // The hanging rate API: two attempts, each cut off by the 20 ms timeout, then routed.
    assert_eq!(r.attempts("fetch_live_rates"), vec![1, 2]);
    let f = r.failures("fetch_live_rates");
    assert_eq!(f.len(), 2, "{}", r.dump());
    assert_eq!(f[0]["error"]["kind"], "timeout");
    assert_eq!(f[0]["will_retry"], true);
    assert_eq!(f[0]["handling"], "retry");
    assert_eq!(
        f[0]["retry_in_ms"], 5,
        "fixed backoff of 5ms without jitter"
    );
    assert_eq!(f[1]["will_retry"], false);
    assert_eq!(f[1]["handling"], "route");
    assert!(
        !r.ran("store_live_rates"),
        "the normal edge is not followed after a routed failure"
    );
    assert!(r.ran("use_cached_rates"), "the error edge is followed");

    // The fee service: three attempts with exponential backoff, then the run continues.
    assert_eq!(r.attempts("fetch_fees"), vec![1, 2, 3]);
    let f = r.failures("fetch_fees");
    let delays: Vec<&Value> = f.iter().map(|e| &e["retry_in_ms"]).collect();
    assert_eq!(delays, vec![&json!(2), &json!(4), &Value::Null]);
    assert_eq!(f[2]["handling"], "continue");
    assert_eq!(f[2]["error"]["kind"], "http");
    assert!(r.ran("publish"));

    assert_eq!(
        r.state(),
        &json!({
            "rates": {"EUR": 1.0, "USD": 1.08},
            "source": "cache",
            "warnings": ["live rates unavailable (timeout): node `fetch_live_rates` timed out after 20 ms"],
            "summary": "rates from cache; fees unavailable (http)"
        })
    );
}

#[test]
fn paginated_sync_loops_until_the_last_page() {
    let s = Scratch::new("loop");
    let r = run_example(
        "paginated-sync-loop.json",
        Some(json!({"pages": 3})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert_eq!(r.attempts("fetch_page"), vec![1, 1, 1], "three passes");
    let steps: Vec<u64> = r
        .started("fetch_page")
        .iter()
        .map(|e| e["step"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(steps, vec![1, 2, 3], "one pass per superstep");
    assert_eq!(r.step_of("summarize"), 4, "the else edge leaves the loop");
    assert_eq!(
        r.state(),
        &json!({
            "page": 3,
            "contacts": ["contact-1a", "contact-1b", "contact-2a", "contact-2b", "contact-3a", "contact-3b"],
            "report": {"pages": 3, "contacts": 6, "last": "contact-3b"},
            "pages": 3
        })
    );
}

#[test]
fn paginated_sync_is_stopped_by_the_recursion_limit() {
    let s = Scratch::new("loop-limit");
    let r = run_example(
        "paginated-sync-loop.json",
        Some(json!({"pages": 50})),
        &s,
        &[],
    );
    r.expect_exit(1);
    let failed = r.only("run_failed");
    assert_eq!(failed["error"]["kind"], "recursion_limit", "{}", r.dump());
    assert!(failed["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("recursion limit of 12")));
    assert_eq!(
        r.started("fetch_page").len(),
        12,
        "settings.recursion_limit is 12"
    );
    assert!(!r.ran("summarize"));
}

#[test]
fn quotes_fan_in_does_not_wait_for_the_branch_not_taken() {
    let s = Scratch::new("quotes-light");
    let r = run_example(
        "parallel-quotes-fanin.json",
        Some(json!({"weight_kg": 10})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert!(
        !r.ran("quote_freight"),
        "the freight branch is not taken for 10 kg"
    );
    // The branches fan out in the first superstep...
    let first = r.of_type("step_started")[0].clone();
    assert_eq!(first["nodes"], json!(["quote_dhl", "ups_login"]));
    // ...and the merge waits for the longer UPS branch, once, then goes on.
    assert_eq!(r.started("compare").len(), 1);
    assert!(r.step_of("compare") > r.step_of("quote_ups"));
    assert!(r.step_of("quote_ups") > r.step_of("quote_dhl"));
    assert_eq!(
        r.state(),
        &json!({
            "cheapest": 12.5,
            "slowest_days": 3,
            "quotes": {
                "quote_dhl": {"cheapest": 12.5, "slowest_days": 2},
                "quote_ups": {"cheapest": 13.0, "slowest_days": 3}
            },
            "recommendation": "2 quotes; cheapest 12.5 EUR; slowest delivery 3 days",
            "weight_kg": 10
        })
    );
}

#[test]
fn quotes_heavy_parcel_merges_all_three_branches() {
    let s = Scratch::new("quotes-heavy");
    let r = run_example(
        "parallel-quotes-fanin.json",
        Some(json!({"weight_kg": 40})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert!(r.ran("quote_freight"));
    assert_eq!(r.started("compare").len(), 1);
    assert_eq!(
        r.state(),
        &json!({
            "cheapest": 23.0,
            "slowest_days": 6,
            "quotes": {
                "quote_dhl": {"cheapest": 36.5, "slowest_days": 2},
                "quote_ups": {"cheapest": 34.0, "slowest_days": 3},
                "quote_freight": {"cheapest": 23.0, "slowest_days": 6}
            },
            "recommendation": "3 quotes; cheapest 23.0 EUR; slowest delivery 6 days",
            "weight_kg": 40
        })
    );
}

/// `NodeContext::inputs` is documented as "in document order" (and `merge` says the same), so a
/// fan-in sees its branches in the order the document lists them, whatever their lengths.
#[test]
fn fan_in_inputs_arrive_in_document_order() {
    let s = Scratch::new("quotes-order");
    let r = run_example(
        "parallel-quotes-fanin.json",
        Some(json!({"weight_kg": 40})),
        &s,
        &[],
    );
    r.expect_exit(0);
    let keys: Vec<&String> = r.completed("compare")["output"]
        .as_object()
        .expect("by_node output")
        .keys()
        .collect();
    assert_eq!(keys, vec!["quote_dhl", "quote_ups", "quote_freight"]);
}

#[test]
fn csv_sales_rollup_groups_and_ranks_regions() {
    let s = Scratch::new("rollup");
    let csv = "region,qty,price,status\nEU,2,10,paid\nUS,1,99.5,paid\nEU,3,4,paid\nUS,5,99.5,refunded\nAPAC,0,7,paid\n";
    let r = run_example(
        "csv-sales-rollup.json",
        Some(json!({ "csv": csv, "day": "2024-05-01" })),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert_eq!(r.completed("parse_lines")["output"]["count"], 5);
    let regions = json!([
        {"key": "US", "count": 1, "revenue": 99.5, "units": 1},
        {"key": "EU", "count": 2, "revenue": 32, "units": 5}
    ]);
    let state = r.state();
    assert_eq!(state["regions"], regions);
    assert_eq!(state["ranking"], "US > EU");
    assert_eq!(state["report_day"], "Wednesday 1 May 2024");
    assert_eq!(
        state["report_csv"],
        "key,units,revenue\nUS,1,99.5\nEU,5,32\n"
    );
    let copy: Value = serde_json::from_str(state["report_json"].as_str().unwrap()).unwrap();
    assert_eq!(copy, regions);
    // sha256 of the CSV text above.
    assert_eq!(
        state["checksum"],
        "a66ee5f241e1954de44e188e2e0514f1df892ff70cc9ba7bb3e9a35c88fae896"
    );
}

#[test]
fn nightly_report_maps_a_template_over_the_regions() {
    let s = Scratch::new("report");
    let sales = json!([
        {"region": "EU", "amount": 100},
        {"region": "US", "amount": 150},
        {"region": "EU", "amount": 200.5}
    ]);
    let r = run_example(
        "nightly-sales-report.json",
        Some(json!({ "sales": sales })),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert!(!r.ran("nothing_to_report"));
    let items: Vec<&Value> = r
        .started("region_line")
        .iter()
        .map(|e| &e["index"])
        .collect();
    assert_eq!(items.len(), 2, "one template per region");
    assert_eq!(
        r.completed("region_line")["output"],
        json!([{"text": "EU: 300.5 EUR"}, {"text": "US: 150 EUR"}])
    );
    let report = "Sales report\n- EU: 300.5 EUR\n- US: 150 EUR\nTotal: 450.5 EUR";
    let logs: Vec<&Value> = r.node_events("node_log", "log_report");
    assert_eq!(logs.len(), 1, "{}", r.dump());
    assert_eq!(logs[0]["message"], "report ready");
    assert_eq!(logs[0]["level"], "info");
    assert_eq!(logs[0]["data"], report);
    assert_eq!(
        r.state(),
        &json!({
            "regions": [{"region": "EU", "total": 300.5}, {"region": "US", "total": 150}],
            "grand_total": 450.5,
            "lines": ["EU: 300.5 EUR", "US: 150 EUR"],
            "report": report,
            "sales": sales
        })
    );
}

#[test]
fn nightly_report_stops_early_without_sales() {
    let s = Scratch::new("report-empty");
    let r = run_example(
        "nightly-sales-report.json",
        Some(json!({"sales": []})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert_eq!(r.completed("any_sales")["branch"], "false");
    assert_eq!(
        r.completed("nothing_to_report")["output"],
        json!({"reason": "no sales yesterday"})
    );
    assert_eq!(r.nodes_run(), strs(&["any_sales", "nothing_to_report"]));
    assert_eq!(
        r.state(),
        &json!({"regions": null, "grand_total": null, "lines": [], "report": null, "sales": []})
    );
}

const SYSTEM_MESSAGE: &str = "You are the Orcheo support assistant.";

#[test]
fn ticket_triage_billing_question_gets_a_polished_reply() {
    let s = Scratch::new("ticket-billing");
    let text = "Question about my INVOICE from May";
    let r = run_example(
        "support-ticket-triage.json",
        Some(json!({"email": "ann@example.com", "text": text})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert!(!r.ran("page_on_call") && !r.ran("human_queue"));
    assert_eq!(
        r.nodes_run(),
        strs(&["receive", "classify", "draft_reply", "polish_reply"])
    );
    assert_eq!(
        r.state(),
        &json!({
            "messages": [
                {"id": "system", "role": "system", "content": SYSTEM_MESSAGE},
                {"id": "customer-1", "role": "user", "content": text},
                {"id": "reply", "role": "assistant", "content": "Thanks for reaching out about your invoice. A billing specialist will reply within one business day. Your ticket is handled with normal priority. — Orcheo Support"}
            ],
            "ticket": {
                "status": "answered",
                "customer": {"tier": "standard", "email": "ann@example.com"},
                "category": "billing",
                "priority": "normal"
            },
            "meta": {"source": "helpdesk", "channel": "email", "classified_by": "rules-v1"},
            "email": "ann@example.com",
            "text": text
        })
    );
}

#[test]
fn ticket_triage_urgent_billing_takes_both_conditional_edges() {
    let s = Scratch::new("ticket-urgent");
    let r = run_example(
        "support-ticket-triage.json",
        Some(
            json!({"email": "ann@example.com", "text": "URGENT: refund please, checkout is down", "channel": "chat"}),
        ),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert!(r.ran("page_on_call") && r.ran("draft_reply"));
    assert!(
        !r.ran("human_queue"),
        "the else edge is skipped when a condition matched"
    );
    assert_eq!(r.step_of("page_on_call"), r.step_of("draft_reply"));
    let st = r.state();
    assert_eq!(
        st["ticket"],
        json!({
            "status": "answered",
            "customer": {"tier": "priority", "email": "ann@example.com"},
            "category": "billing",
            "priority": "urgent",
            "on_call": "paged"
        }),
        "deep_merge keeps nested keys from every update"
    );
    assert_eq!(
        st["meta"],
        json!({"source": "helpdesk", "channel": "chat", "classified_by": "rules-v1", "paged": true})
    );
    assert_eq!(st["messages"].as_array().map(Vec::len), Some(3));
}

#[test]
fn ticket_triage_anything_else_falls_through_the_else_edge() {
    let s = Scratch::new("ticket-else");
    let r = run_example(
        "support-ticket-triage.json",
        Some(json!({"email": "bo@example.com", "text": "How do I change my password?"})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert_eq!(r.nodes_run(), strs(&["receive", "classify", "human_queue"]));
    let st = r.state();
    assert_eq!(
        st["messages"],
        json!([
            {"id": "system", "role": "system", "content": SYSTEM_MESSAGE},
            {"id": "customer-1", "role": "user", "content": "How do I change my password?"}
        ])
    );
    assert_eq!(
        st["ticket"],
        json!({
            "status": "queued",
            "customer": {"tier": "standard", "email": "bo@example.com"},
            "category": "account",
            "priority": "normal"
        })
    );
}

#[test]
fn checkout_runs_an_inline_sub_workflow() {
    let s = Scratch::new("checkout");
    let items = json!([
        {"sku": "mug", "price": 10, "qty": 3},
        {"sku": "shirt", "price": 25.5, "qty": 2}
    ]);
    let r = run_example(
        "checkout-tax-inline.json",
        Some(json!({"country": "DE", "items": items})),
        &s,
        &[],
    );
    r.expect_exit(0);
    let children = r.children();
    assert_eq!(children.len(), 1, "{}", r.dump());
    let (child, started) = &children[0];
    assert_eq!(started["workflow"], "VAT calculator");
    assert_eq!(started["parent"]["node"], "vat");
    assert_eq!(started["input"], json!({"amount": 81.0, "country": "DE"}));
    let child_state = r
        .events
        .iter()
        .find(|e| e["run_id"] == child.as_str() && e["type"] == "run_completed")
        .map(|e| e["state"].clone());
    assert_eq!(
        child_state,
        Some(json!({"rate": 0.19, "vat": 15.39, "amount": 81.0, "country": "DE"}))
    );
    assert_eq!(
        r.state(),
        &json!({
            "subtotal": 81.0,
            "vat": 15.39,
            "total": 96.39,
            "receipt": "3 x mug\n2 x shirt\nSubtotal 81.0 EUR, VAT 15.39 EUR, total 96.39 EUR",
            "country": "DE",
            "items": items
        })
    );
}

#[test]
fn python_invoice_totals_are_exact() {
    let s = Scratch::new("python-invoice");
    let items = json!([
        {"description": "Widget", "unit_price": "19.99", "qty": 3},
        {"description": "Gadget", "unit_price": "0.10", "qty": 7},
        {"description": "Service hour", "unit_price": "85.00", "qty": 1}
    ]);
    let r = run_example(
        "python-invoice-total.json",
        Some(json!({"invoice_id": "INV-7", "items": items})),
        &s,
        &[],
    );
    let refusal = r
        .of_type("node_failed")
        .into_iter()
        .any(|e| e.to_string().contains("ORCHEO_PYTHON_UNSANDBOXED=1"));
    if refusal {
        // A machine that cannot isolate Python: the node must refuse, saying how to opt out.
        r.expect_exit(1);
        eprintln!("code_python refused on this machine (no isolation); accepted");
        return;
    }
    r.expect_exit(0);
    let totals = json!({
        "lines": [
            {"description": "Widget", "amount": "59.97"},
            {"description": "Gadget", "amount": "0.70"},
            {"description": "Service hour", "amount": "85.00"}
        ],
        "subtotal": "145.67",
        "vat": "27.68",
        "total": "173.35"
    });
    assert_eq!(r.state()["totals"], totals, "{}", r.dump());
    assert_eq!(
        r.state()["summary"],
        "Invoice INV-7: 3 lines, subtotal 145.67, VAT 27.68, total 173.35"
    );
    let logs: Vec<&str> = r
        .node_events("node_log", "totals")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(
        logs,
        [
            "3 x Widget: 59.97",
            "7 x Gadget: 0.70",
            "1 x Service hour: 85.00"
        ],
        "{}",
        r.dump()
    );
}

#[test]
fn signup_gate_fails_the_run_on_bad_input() {
    let s = Scratch::new("signup-bad");
    let r = run_example(
        "signup-quality-gate.json",
        Some(json!({"email": "kid.example.com", "age": 12})),
        &s,
        &[],
    );
    r.expect_exit(1);
    assert!(!r.ran("welcome"));
    let failed = r.only("run_failed");
    assert_eq!(failed["node"], "reject");
    assert_eq!(
        failed["error"],
        json!({
            "kind": "validation",
            "message": "signup rejected: email has no @; must be 18 or older",
            "retryable": false,
            "details": {"problems": ["email has no @", "must be 18 or older"]}
        })
    );
    assert_eq!(r.failures("reject")[0]["handling"], "fail");
}

#[test]
fn signup_gate_welcomes_a_good_signup() {
    let s = Scratch::new("signup-ok");
    let r = run_example(
        "signup-quality-gate.json",
        Some(json!({"email": "ada@example.com", "age": 36, "name": "Ada"})),
        &s,
        &[],
    );
    r.expect_exit(0);
    assert!(!r.ran("reject"));
    assert_eq!(
        r.state(),
        &json!({
            "problems": [], "welcome": "Welcome aboard, Ada!",
            "email": "ada@example.com", "age": 36, "name": "Ada"
        })
    );
}

#[test]
fn js_order_score_routes_by_the_computed_score() {
    let s = Scratch::new("js-score");
    let risky = json!({ "order": {
        "id": "A-1", "billing_country": "FR", "shipping_country": "BR",
        "customer": { "orders": 0 },
        "items": [{ "sku": "tv", "qty": 2, "price": 649.5 }, { "sku": "cable", "qty": 3, "price": 9.99 }]
    }});
    let r = run_example("js-order-score.json", Some(risky), &s, &[]);
    r.expect_exit(0);
    assert_eq!(r.nodes_run(), strs(&["score", "risky", "review"]));
    let state = r.state();
    assert_eq!(state["subtotal"], json!(1328.97));
    assert_eq!(state["score"], json!(90));
    assert_eq!(
        state["reasons"],
        json!(["large order", "ships abroad", "first order"])
    );
    assert_eq!(state["lane"], "review");
    assert_eq!(r.completed("score")["output"]["items"], json!(5));
    let logs: Vec<(&str, &str)> = r
        .node_events("node_log", "score")
        .iter()
        .map(|e| {
            (
                e["level"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        logs,
        vec![
            ("info", "order A-1: subtotal 1328.97, score 90"),
            (
                "warn",
                "order A-1 needs review: large order, ships abroad, first order"
            ),
        ],
        "{}",
        r.dump()
    );

    let plain = json!({ "order": {
        "id": "B-2", "billing_country": "DE", "shipping_country": "DE",
        "customer": { "orders": 4 },
        "items": [{ "sku": "book", "qty": 1, "price": 12 }]
    }});
    let r = run_example("js-order-score.json", Some(plain), &s, &[]);
    r.expect_exit(0);
    assert_eq!(r.nodes_run(), strs(&["score", "risky", "fulfil"]));
    assert_eq!(r.state()["score"], json!(0));
    assert_eq!(r.state()["lane"], "fulfil");

    // A broken order fails with the line of the code that broke.
    let broken = json!({ "order": { "id": "C-3", "customer": {} } });
    let r = run_example("js-order-score.json", Some(broken), &s, &[]);
    r.expect_exit(1);
    let failed = r.only("run_failed");
    assert_eq!(failed["node"], "score");
    assert_eq!(failed["error"]["kind"], "code");
    let message = failed["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("code_js node `score`: TypeError: ") && message.ends_with("(line 2)"),
        "{message}"
    );
}

#[test]
fn order_ledger_writes_only_inside_the_files_directory() {
    let scratch = Scratch::new("ledger");
    let files = scratch.0.join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let file = example("order-ledger-file.json").display().to_string();
    let run = |order: &str, dir: Option<&std::path::Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", file.as_str(), "--no-checkpoint", "--input"])
            .arg(json!({"order_id": order, "total": 12.5}).to_string())
            .env_remove("ORCHEO_FILES_DIR")
            .env_remove("ORCHEO_LOG");
        if let Some(d) = dir {
            cmd.env("ORCHEO_FILES_DIR", d);
        }
        let out = cmd.output().expect("orcheo runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    assert_eq!(run("A-1", Some(&files)).0, 0);
    assert_eq!(run("A-2", Some(&files)).0, 0);
    let ledger = std::fs::read_to_string(files.join("ledger/orders.csv")).expect("ledger");
    assert_eq!(ledger, "A-1,12.5\nA-2,12.5\n");
    let last = std::fs::read_to_string(files.join("ledger/last-order.txt")).expect("last");
    assert_eq!(last, "A-2\n");
    // Without the operator's directory the node refuses, and says how to enable it.
    let (code, text) = run("A-3", None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("ORCHEO_FILES_DIR"), "{text}");
}

/// A rates API on 127.0.0.1 that fails its first `failures` requests with 503.
fn rates_api(failures: usize) -> (String, std::sync::Arc<AtomicUsize>) {
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let (base, _) = support::http_service(move |head| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        if n < failures {
            (
                "503 Service Unavailable".into(),
                r#"{"error": "busy"}"#.into(),
            )
        } else if head.starts_with("GET /rates/EUR?base=USD ") {
            ("200 OK".into(), r#"{"rate": 0.5}"#.into())
        } else {
            (
                "404 Not Found".into(),
                r#"{"error": "unknown currency"}"#.into(),
            )
        }
    });
    (base, hits)
}

#[test]
fn exchange_rate_is_fetched_with_retries_and_needs_the_allowlist() {
    let file = example("exchange-rate-fetch.json").display().to_string();
    let run = |api: &str, currency: &str, allow: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", file.as_str(), "--no-checkpoint", "--json", "--input"])
            .arg(json!({"api": api, "currency": currency, "amount": 80}).to_string())
            .env_remove("ORCHEO_HTTP_ALLOW")
            .env_remove("ORCHEO_LOG");
        if allow {
            cmd.env("ORCHEO_HTTP_ALLOW", "127.0.0.1");
        }
        let out = cmd.output().expect("orcheo runs");
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (out.status.code().unwrap_or(-1), events)
    };
    // Two 503s, then the rate: the retry policy carries the node through.
    let (api, hits) = rates_api(2);
    let (code, events) = run(&api, "EUR", true);
    assert_eq!(code, 0, "{events:?}");
    let last = events.last().expect("events");
    assert_eq!(last["state"]["rate"], 0.5, "{last}");
    assert_eq!(last["state"]["converted"], 40.0, "{last}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let retried = events
        .iter()
        .filter(|e| e["type"] == "node_failed" && e["error"]["kind"] == "http_5xx")
        .count();
    assert_eq!(retried, 2);
    // A 404 is not retried: the run fails at once with the status in the error.
    let (code, events) = run(&api, "XYZ", true);
    assert_eq!(code, 1);
    let failed = events
        .iter()
        .find(|e| e["type"] == "run_failed")
        .expect("failed");
    assert_eq!(failed["error"]["kind"], "http_4xx", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("404"),
        "{failed}"
    );
    // Without the operator's allowlist, 127.0.0.1 is refused before any request is sent.
    let before = hits.load(Ordering::SeqCst);
    let (code, events) = run(&api, "EUR", false);
    assert_eq!(code, 1);
    let failed = events
        .iter()
        .find(|e| e["type"] == "run_failed")
        .expect("failed");
    let msg = failed["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("ORCHEO_HTTP_ALLOW") && msg.contains("loopback"),
        "{failed}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), before);
}

#[test]
fn webhook_order_intake_reads_the_request_body() {
    let scratch = Scratch::new("webhook-intake");
    let run = run_example(
        "webhook-order-intake.json",
        Some(
            json!({"method": "POST", "body": {"order_id": "A-1", "total": 1250}, "query": {"source": "shop"}}),
        ),
        &scratch,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let state = &run.events.last().expect("events")["state"];
    assert_eq!(state["order_id"], "A-1");
    assert_eq!(state["lane"], "review");
    assert_eq!(state["source"], "shop");
    let small = run_example(
        "webhook-order-intake.json",
        Some(json!({"body": {"order_id": "A-2", "total": 20}})),
        &scratch,
        &[],
    );
    assert_eq!(
        small.events.last().expect("events")["state"]["lane"],
        "auto"
    );
    // A request without an order id does not fit the input schema.
    let bad = run_example(
        "webhook-order-intake.json",
        Some(json!({"body": {}})),
        &scratch,
        &[],
    );
    assert_eq!(bad.code, 2);
}
