//! Test nodes and helpers shared by the engine tests.
#![allow(dead_code)]

use async_trait::async_trait;
use orcheo_core::checkpoint::MemoryCheckpointer;
use orcheo_core::engine::{Engine, RunOptions, RunOutcome};
use orcheo_core::event::{Event, EventKind, VecSink};
use orcheo_core::node::{
    Catalog, ChildOutcome, Interrupt, Node, NodeContext, NodeError, NodeOutput, NodeResult,
    NodeSpec, WorkflowRef,
};
use orcheo_core::{CompiledWorkflow, Workflow};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counts executions per node id and tracks concurrency.
#[derive(Default)]
pub struct Counters {
    pub runs: Mutex<HashMap<String, usize>>,
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
}

impl Counters {
    pub fn get(&self, node: &str) -> usize {
        self.runs.lock().unwrap().get(node).copied().unwrap_or(0)
    }
    pub fn total(&self) -> usize {
        self.runs.lock().unwrap().values().sum()
    }
    fn bump(&self, node: &str) {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(node.to_string())
            .or_default() += 1;
    }
}

#[derive(Deserialize, schemars::JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EmitConfig {
    #[serde(default)]
    pub update: Map<String, Value>,
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub branch: Option<String>,
    /// Fail the first N attempts of each execution (per run+node+index).
    #[serde(default)]
    pub fail_times: u32,
    #[serde(default)]
    pub fail_kind: Option<String>,
    #[serde(default)]
    pub retryable: Option<bool>,
    /// Sleep this many ms (tokio time) before answering.
    #[serde(default)]
    pub sleep_ms: u64,
    /// Ask for input (interrupt) unless resumed.
    #[serde(default)]
    pub ask: Option<Value>,
    #[serde(default)]
    pub ask_timeout_ms: Option<u64>,
    #[serde(default)]
    pub stop: bool,
    /// Run a child workflow (inline).
    #[serde(default)]
    pub child: Option<Value>,
}

/// A configurable test node: `emit`.
pub struct Emit(pub Arc<Counters>, pub Arc<Mutex<HashMap<String, u32>>>);

#[async_trait]
impl Node for Emit {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<EmitConfig, Value>("emit", "Emit", "test", "Test node")
            .interrupts()
            .branches(&["a", "b", "c"])
    }
    fn branches(&self, _config: &Map<String, Value>) -> Option<Vec<String>> {
        Some(vec!["a".into(), "b".into(), "c".into()])
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: EmitConfig = ctx.config_as()?;
        let n = self.0.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_active.fetch_max(n, Ordering::SeqCst);
        struct Guard<'a>(&'a AtomicUsize);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _g = Guard(&self.0.active);
        self.0.bump(&ctx.node_id);
        if c.sleep_ms > 0 {
            ctx.sleep(std::time::Duration::from_millis(c.sleep_ms))
                .await?;
        }
        if c.fail_times > 0 {
            let key = format!("{}/{}/{:?}", ctx.run_id, ctx.node_id, ctx.index);
            let mut f = self.1.lock().unwrap();
            let done = f.entry(key).or_default();
            if *done < c.fail_times {
                *done += 1;
                let mut e = NodeError::new(
                    c.fail_kind.clone().unwrap_or_else(|| "flaky".into()),
                    format!("planned failure {}", *done),
                );
                e.retryable = c.retryable.unwrap_or(true);
                return Err(e);
            }
        }
        if let Some(q) = &c.ask {
            match &ctx.resume {
                None => {
                    return Ok(NodeResult::Interrupt(Interrupt {
                        payload: q.clone(),
                        timeout_ms: c.ask_timeout_ms,
                    }))
                }
                Some(v) if *v == json!("again") => {
                    return Ok(NodeResult::Interrupt(Interrupt {
                        payload: json!("asked again"),
                        timeout_ms: None,
                    }))
                }
                Some(v) => {
                    return Ok(NodeOutput {
                        output: json!({ "answer": v }),
                        update: c.update,
                        branch: c.branch,
                        stop: c.stop,
                    }
                    .into())
                }
            }
        }
        if let Some(child) = &c.child {
            let doc: Workflow = serde_json::from_value(child.clone())
                .map_err(|e| NodeError::config(e.to_string()))?;
            return match ctx
                .runtime
                .run_child(
                    ctx,
                    &WorkflowRef::Inline {
                        inline: Box::new(doc),
                    },
                    json!({}),
                )
                .await?
            {
                ChildOutcome::Completed { state, .. } => Ok(NodeOutput::output(state).into()),
                ChildOutcome::Waiting { interrupt, .. } => Ok(NodeResult::Interrupt(interrupt)),
            };
        }
        let mut output = c.output;
        if output.is_null() {
            output = json!({ "node": &*ctx.node_id, "index": ctx.index });
        }
        Ok(NodeOutput {
            output,
            update: c.update,
            branch: c.branch,
            stop: c.stop,
        }
        .into())
    }
}

pub struct Harness {
    pub counters: Arc<Counters>,
    pub store: Arc<MemoryCheckpointer>,
    pub sink: VecSink,
    pub engine: Engine,
}

pub fn harness() -> Harness {
    harness_with(|b| b)
}

pub fn harness_with(
    f: impl FnOnce(orcheo_core::engine::EngineBuilder) -> orcheo_core::engine::EngineBuilder,
) -> Harness {
    let counters = Arc::new(Counters::default());
    let mut catalog = Catalog::new();
    catalog.register(Emit(counters.clone(), Arc::new(Mutex::new(HashMap::new()))));
    let store = Arc::new(MemoryCheckpointer::new());
    let sink = VecSink::new();
    let engine = f(Engine::builder(Arc::new(catalog))
        .checkpointer(store.clone())
        .sink(Arc::new(sink.clone())))
    .build();
    Harness {
        counters,
        store,
        sink,
        engine,
    }
}

impl Harness {
    pub fn compile(&self, doc: Value) -> Arc<CompiledWorkflow> {
        let mut doc = doc;
        if doc.get("format").is_none() {
            doc["format"] = json!("orcheo.workflow/1");
        }
        if doc.get("name").is_none() {
            doc["name"] = json!("test");
        }
        let wf: Workflow = serde_json::from_value(doc).expect("document parses");
        self.engine
            .compile(wf)
            .unwrap_or_else(|p| panic!("document invalid: {p:#?}"))
    }
    pub async fn run(&self, wf: &Arc<CompiledWorkflow>, input: Value) -> RunOutcome {
        self.engine
            .start(wf, input, RunOptions::default())
            .await
            .expect("run starts")
    }
    pub fn events(&self, run_id: &str) -> Vec<Event> {
        self.sink.run_events(run_id)
    }
    /// Node ids in NodeCompleted order (whole-node completions only).
    pub fn completed(&self, run_id: &str) -> Vec<String> {
        self.events(run_id)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::NodeCompleted {
                    node, index: None, ..
                } => Some(node.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// A node of the `emit` type.
pub fn emit(id: &str, config: Value) -> Value {
    json!({ "id": id, "type": "emit", "config": config })
}

pub fn edge(s: &str, t: &str) -> Value {
    json!({ "source": s, "target": t })
}
