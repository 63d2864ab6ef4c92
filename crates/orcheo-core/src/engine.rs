//! The engine: runs a compiled workflow in supersteps (LangGraph's model), durably.
//!
//! Each superstep runs every runnable activation concurrently (bounded by a per-run
//! semaphore), records each finished task as a write, then applies all updates in document
//! order through the reducers, routes along edges and writes a checkpoint. A run resumed from
//! any checkpoint continues exactly: tasks whose writes exist are not run again.

use crate::checkpoint::{
    Checkpoint, CheckpointError, Checkpointer, Pending, Route, RunStatus, TaskWrite, Waiting,
    WriteKind,
};
use crate::document::{EdgeKind, OnError, Workflow};
use crate::event::{Event, EventKind, EventSink, ForkRef, NullSink, ParentRef};
use crate::expr::Scope;
use crate::graph::{CompiledNode, CompiledWorkflow};
use crate::node::{
    Catalog, ChildOutcome, Credentials, Interrupt, NodeContext, NodeError, NodeEvents, NodeOutput,
    NodeResult, Runtime, WorkflowRef,
};
use crate::reducer;
use crate::results::Results;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Deepest nesting of sub-workflow runs.
pub const MAX_CHILD_DEPTH: usize = 16;

/// Wall-clock time, replaceable in tests.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to (tests of interrupt timeouts).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Starts at `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(Mutex::new(t))
    }
    /// Moves forward.
    pub fn advance(&self, d: std::time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += chrono::Duration::from_std(d).unwrap_or_default();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Loads stored workflows by id for sub-workflow nodes (the server provides one).
#[async_trait]
pub trait WorkflowLoader: Send + Sync {
    /// The document of workflow `id` at `version` (latest when None).
    async fn load(&self, id: &str, version: Option<u32>) -> Result<Workflow, String>;
}

/// Why the engine could not start or continue a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The input does not satisfy the workflow's input schema.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No such run or checkpoint.
    #[error("{0}")]
    NotFound(String),
    /// The run cannot be resumed in its current status.
    #[error("{0}")]
    NotResumable(String),
    /// The operation needs a checkpointer.
    #[error("checkpointing is off: {0}")]
    NoCheckpointer(String),
    /// Checkpoint storage failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Per-run options.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Run id (a UUIDv7 when absent).
    pub run_id: Option<String>,
    /// Cancels the run when fired.
    pub cancel: CancellationToken,
    /// The parent run, for sub-workflows.
    pub parent: Option<ParentRef>,
    /// With a resume value: answer only this interrupt; the run's other interrupts keep
    /// waiting. Without it a value answers every pending interrupt.
    pub resume_at: Option<ResumeTarget>,
    /// Debug mode: every node execution also emits `node_input` with its rendered config and
    /// the state it saw.
    pub debug: bool,
    /// Where nodes get credentials from; its masker scrubs node results, errors and events.
    pub credentials: Option<Arc<dyn Credentials>>,
    depth: usize,
}

/// One interrupt of a waiting run: a node, and the map item for mapped nodes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResumeTarget {
    /// The waiting node.
    pub node: String,
    /// The map item (None: every waiting item of the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl RunOptions {
    /// Options with a fixed run id.
    pub fn with_id(run_id: impl Into<String>) -> Self {
        Self {
            run_id: Some(run_id.into()),
            ..Default::default()
        }
    }
}

/// How a run call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// The run.
    pub run_id: String,
    /// Final (or current) status.
    pub status: RunStatus,
    /// The state.
    pub state: Value,
    /// Outputs of finished nodes.
    pub results: Value,
    /// The error of a failed run.
    pub error: Option<NodeError>,
    /// The node that failed.
    pub failed_node: Option<String>,
    /// Interrupts of a waiting run.
    pub waiting: Vec<Waiting>,
    /// The last checkpoint written (None without a checkpointer).
    pub checkpoint: Option<u64>,
    /// Supersteps completed.
    pub steps: u32,
}

struct Inner {
    catalog: Arc<Catalog>,
    checkpointer: Option<Arc<dyn Checkpointer>>,
    sink: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
    loader: Option<Arc<dyn WorkflowLoader>>,
}

/// The engine. Cheap to clone; one engine runs many runs at once.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    catalog: Arc<Catalog>,
    checkpointer: Option<Arc<dyn Checkpointer>>,
    sink: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
    loader: Option<Arc<dyn WorkflowLoader>>,
}

impl EngineBuilder {
    /// Stores checkpoints here (without one, runs cannot be resumed).
    pub fn checkpointer(mut self, c: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(c);
        self
    }
    /// Sends events here.
    pub fn sink(mut self, s: Arc<dyn EventSink>) -> Self {
        self.sink = s;
        self
    }
    /// Uses this clock for timestamps and interrupt deadlines.
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }
    /// Resolves sub-workflows by id.
    pub fn loader(mut self, l: Arc<dyn WorkflowLoader>) -> Self {
        self.loader = Some(l);
        self
    }
    /// Finishes.
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                catalog: self.catalog,
                checkpointer: self.checkpointer,
                sink: self.sink,
                clock: self.clock,
                loader: self.loader,
            }),
        }
    }
}

/// Emits a run's events with gapless sequence numbers.
struct Emitter {
    enabled: bool,
    run_id: Arc<str>,
    /// The next sequence number. Held while an event is handed to the sink, so events of
    /// concurrent tasks reach the sink in sequence order (live streams rely on it).
    seq: Mutex<u64>,
    sink: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
    /// Masks credential values in every event once a credential has been resolved.
    credentials: Option<Arc<dyn Credentials>>,
}

impl Emitter {
    fn emit(&self, kind: EventKind) {
        let mut seq = self.lock_seq();
        self.emit_at(*seq, kind);
        *seq += 1;
    }
    /// Emits an event built only when the sink keeps events (the number is used either way,
    /// so sequence numbers do not depend on the sink).
    fn emit_with(&self, kind: impl FnOnce() -> EventKind) {
        if self.enabled {
            let kind = kind();
            self.emit(kind);
        } else {
            self.reserve(1);
        }
    }
    fn lock_seq(&self) -> std::sync::MutexGuard<'_, u64> {
        self.seq.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Takes `n` consecutive numbers and returns the first.
    fn reserve(&self, n: u64) -> u64 {
        let mut seq = self.lock_seq();
        let first = *seq;
        *seq += n;
        first
    }
    fn emit_at(&self, seq: u64, kind: EventKind) {
        let kind = match &self.credentials {
            Some(c) if c.active() => mask_event(c.as_ref(), kind),
            _ => kind,
        };
        self.sink.emit(Event {
            run_id: self.run_id.clone(),
            seq,
            ts: self.clock.now(),
            kind,
        });
    }
}

/// A node's result with every credential value masked.
fn mask_result(
    c: &dyn Credentials,
    r: Result<NodeResult, NodeError>,
) -> Result<NodeResult, NodeError> {
    match r {
        Ok(NodeResult::Done(mut out)) => {
            c.mask_value(&mut out.output);
            for v in out.update.values_mut() {
                c.mask_value(v);
            }
            Ok(NodeResult::Done(out))
        }
        Ok(NodeResult::Interrupt(mut i)) => {
            c.mask_value(&mut i.payload);
            Ok(NodeResult::Interrupt(i))
        }
        Err(mut e) => {
            e.message = c.mask_text(&e.message);
            if let Some(d) = e.details.as_mut() {
                c.mask_value(d);
            }
            Err(e)
        }
    }
}

/// An event with every credential value masked (through JSON, so no field is missed).
fn mask_event(c: &dyn Credentials, kind: EventKind) -> EventKind {
    match serde_json::to_value(&kind) {
        Ok(mut v) => {
            c.mask_value(&mut v);
            serde_json::from_value(v).unwrap_or(kind)
        }
        Err(_) => kind,
    }
}

impl NodeEvents for Emitter {
    fn emit(&self, kind: EventKind) {
        Emitter::emit(self, kind)
    }
}

/// What the resumed tasks receive.
#[derive(Clone, Debug)]
enum ResumeInput {
    Value(Value),
    /// A value for one interrupt only.
    Only(ResumeTarget, Value),
    Timeout,
}

/// Writes from before this process picked the superstep up.
#[derive(Default)]
struct Prior {
    done: HashMap<(String, Option<usize>), (u32, WriteKind)>,
    attempts: HashMap<(String, Option<usize>), u32>,
}

impl Prior {
    fn from_writes(writes: &[TaskWrite]) -> Self {
        let mut p = Prior::default();
        let failed: Vec<(String, Option<usize>)> = writes
            .iter()
            .filter(|w| matches!(w.kind, WriteKind::Failed { .. }))
            .map(|w| (w.node.clone(), w.index))
            .collect();
        for w in writes {
            let key = (w.node.clone(), w.index);
            match &w.kind {
                WriteKind::Attempt { .. } => {
                    if !failed.contains(&key) {
                        let a = p.attempts.entry(key).or_default();
                        *a = (*a).max(w.attempt);
                    }
                }
                WriteKind::Failed { .. } => {}
                k => {
                    p.done.insert(key, (w.attempt, k.clone()));
                }
            }
        }
        p
    }
}

/// One run in this process.
struct Run {
    /// Emit `node_input` events.
    debug: bool,
    /// Credentials for nodes, and the masker for their results.
    credentials: Option<Arc<dyn Credentials>>,
    wf: Arc<CompiledWorkflow>,
    run_id: Arc<str>,
    input: Arc<Value>,
    state: Arc<Value>,
    results: Results,
    pending: Vec<Pending>,
    step: u32,
    checkpoint_id: u64,
    emitter: Arc<Emitter>,
    cancel: CancellationToken,
    timed_out: Arc<AtomicBool>,
    sem: Arc<Semaphore>,
    runtime: Arc<dyn Runtime>,
    active_before_ms: u64,
    started: Instant,
    /// Writes of the unfinished superstep embedded in the checkpoint this run continued from.
    carried: Vec<TaskWrite>,
    forked_from: Option<(String, u64)>,
    wrote_checkpoint: bool,
    /// Sequence number reserved in the last checkpoint for the run's closing event, so a
    /// resumed run continues the stream without gaps or duplicates.
    closing_seq: Option<u64>,
}

impl Run {
    /// Emits the closing event (completed/failed/waiting/cancelled) at its reserved number.
    fn emit_closing(&mut self, kind: EventKind) {
        match self.closing_seq.take() {
            Some(seq) => self.emitter.emit_at(seq, kind),
            None => self.emitter.emit(kind),
        }
    }
}

/// The outcome of one node execution (or map item).
enum ItemOutcome {
    Done { output: NodeOutput, route: Route },
    Failed(NodeError),
    Interrupted { interrupt: Interrupt },
    Cancelled,
}

/// The outcome of a task (a node, all its map items included).
enum TaskOutcome {
    Done {
        output: Arc<Value>,
        updates: Vec<Map<String, Value>>,
        branch: Option<String>,
        route: Route,
        stop: bool,
    },
    Failed {
        error: NodeError,
    },
    Interrupted {
        waiting: Vec<(Option<usize>, Interrupt)>,
    },
    Cancelled,
}

fn jitter_unit(run_id: &str, node: &str, index: Option<usize>, attempt: u32) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (run_id, node, index, attempt).hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn millis(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Engine {
    /// Starts building an engine over a node catalog.
    pub fn builder(catalog: Arc<Catalog>) -> EngineBuilder {
        EngineBuilder {
            catalog,
            checkpointer: None,
            sink: Arc::new(NullSink),
            clock: Arc::new(SystemClock),
            loader: None,
        }
    }

    /// The node catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// The checkpointer, if any.
    pub fn checkpointer(&self) -> Option<&Arc<dyn Checkpointer>> {
        self.inner.checkpointer.as_ref()
    }

    /// Validates and compiles a document with this engine's catalog.
    pub fn compile(
        &self,
        doc: Workflow,
    ) -> Result<Arc<CompiledWorkflow>, Vec<crate::validate::Problem>> {
        CompiledWorkflow::compile(doc, &self.inner.catalog).map(Arc::new)
    }

    /// Starts a run and drives it until it completes, fails, waits or is cancelled.
    pub async fn start(
        &self,
        wf: &Arc<CompiledWorkflow>,
        input: Value,
        opts: RunOptions,
    ) -> Result<RunOutcome, EngineError> {
        if let Some(v) = &wf.input_validator {
            let errs: Vec<String> = v
                .iter_errors(&input)
                .map(|e| {
                    let p = e.instance_path().as_str().to_string();
                    format!(
                        "{}: {}",
                        if p.is_empty() {
                            "input".to_string()
                        } else {
                            format!("input{p}")
                        },
                        e
                    )
                })
                .collect();
            if !errs.is_empty() {
                return Err(EngineError::InvalidInput(format!(
                    "the input does not match the workflow's input_schema: {}",
                    errs.join("; ")
                )));
            }
        }
        let run_id: Arc<str> = opts
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
            .into();
        let mut state = Map::new();
        for (k, v) in &wf.defaults {
            state.insert(k.clone(), v.clone());
        }
        if let Value::Object(obj) = &input {
            for (k, v) in obj {
                let slot = state.entry(k.clone()).or_insert(Value::Null);
                reducer::apply(wf.reducer(k), k, slot, v.clone()).map_err(|e| {
                    EngineError::InvalidInput(format!(
                        "input field `{k}` does not fit its state field: {e}"
                    ))
                })?;
            }
        }
        let emitter = self.emitter(run_id.clone(), 1, &opts);
        emitter.emit(EventKind::RunStarted {
            workflow: wf.doc.name.clone(),
            input: input.clone(),
            parent: opts.parent.clone(),
            resumed_from: None,
            forked_from: None,
        });
        let mut run = self.new_run(
            wf,
            run_id,
            Arc::new(input),
            Arc::new(Value::Object(state)),
            Results::default(),
            emitter,
            &opts,
            0,
            None,
        );

        // Entry edges are evaluated on the initial state.
        let scope = run.scope(None);
        let mut pending = Vec::new();
        if let Err(e) = route_edges(
            &run.wf.start_edges,
            None,
            Route::Normal,
            &scope,
            &Arc::from(crate::document::START),
            &mut pending,
            &run.wf,
        ) {
            return self.finish_failed(run, e, None).await;
        }
        run.pending = pending;
        run.pending
            .sort_by_key(|p| wf.index.get(&*p.node).copied().unwrap_or(usize::MAX));
        let status = if run.pending.is_empty() {
            RunStatus::Completed
        } else {
            RunStatus::Running
        };
        self.save(&mut run, status, Vec::new(), Vec::new(), None)
            .await?;
        if status == RunStatus::Completed {
            return Ok(self.finish_completed(run));
        }
        self.drive(run, Prior::default(), None).await
    }

    /// Resumes a run from its latest checkpoint: after a crash (running), with a value for a
    /// waiting run (`resume`), or to retry the failed node of a failed run.
    pub async fn resume(
        &self,
        wf: &Arc<CompiledWorkflow>,
        run_id: &str,
        resume: Option<Value>,
        opts: RunOptions,
    ) -> Result<RunOutcome, EngineError> {
        let cp = self.latest_checkpoint(run_id).await?;
        self.continue_from(wf, cp, resume, opts).await
    }

    async fn latest_checkpoint(&self, run_id: &str) -> Result<Checkpoint, EngineError> {
        let store = self.require_checkpointer("resuming a run needs its checkpoints")?;
        store.latest(run_id).await?.ok_or_else(|| {
            EngineError::NotFound(format!("run `{run_id}` has no checkpoint to resume from"))
        })
    }

    /// Resumes a run from one of its checkpoints. Only the latest checkpoint can be continued
    /// in place; use [`Engine::fork`] to run again from an earlier one.
    pub async fn resume_from(
        &self,
        wf: &Arc<CompiledWorkflow>,
        run_id: &str,
        checkpoint: u64,
        resume: Option<Value>,
        opts: RunOptions,
    ) -> Result<RunOutcome, EngineError> {
        let latest = self.latest_checkpoint(run_id).await?;
        if latest.id != checkpoint {
            return Err(EngineError::NotResumable(format!(
                "checkpoint {checkpoint} is not the latest of run `{run_id}` (that is {}); fork from it to run again from there",
                latest.id
            )));
        }
        self.continue_from(wf, latest, resume, opts).await
    }

    /// Starts a new run from a copy of checkpoint `checkpoint` of `run_id`, with `patch`
    /// replacing state fields (replay when None). Nodes finished before it are not re-run.
    pub async fn fork(
        &self,
        wf: &Arc<CompiledWorkflow>,
        run_id: &str,
        checkpoint: u64,
        patch: Option<Map<String, Value>>,
        opts: RunOptions,
    ) -> Result<RunOutcome, EngineError> {
        let store = self.require_checkpointer("forking needs checkpoints")?;
        let mut cp = store.get(run_id, checkpoint).await?.ok_or_else(|| {
            EngineError::NotFound(format!("run `{run_id}` has no checkpoint {checkpoint}"))
        })?;
        let new_id = opts
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        // Writes recorded after the checkpoint belong to the original run's future; a fork
        // keeps only what the checkpoint itself holds.
        cp.forked_from = Some((run_id.to_string(), checkpoint));
        cp.run_id = new_id.clone();
        cp.id = 0;
        cp.parent = None;
        cp.next_seq = 1;
        cp.created_at = self.inner.clock.now();
        if let Some(patch) = patch {
            if let Value::Object(state) = Arc::make_mut(&mut cp.state) {
                for (k, v) in patch {
                    state.insert(k, v);
                }
            }
        }
        if cp.status != RunStatus::Waiting {
            cp.status = RunStatus::Running;
            cp.error = None;
        }
        let fork_ref = ForkRef {
            run_id: run_id.to_string(),
            checkpoint,
        };
        if cp.status == RunStatus::Waiting {
            // A fork of a paused run is paused too: record it and let the caller resume it.
            let emitter = self.emitter(new_id.as_str().into(), 1, &opts);
            emitter.emit(EventKind::RunStarted {
                workflow: wf.doc.name.clone(),
                input: (*cp.input).clone(),
                parent: opts.parent.clone(),
                resumed_from: None,
                forked_from: Some(fork_ref),
            });
            cp.next_seq = 3;
            store.put(cp.clone()).await?;
            if let Some(w) = cp.waiting.first() {
                emitter.emit(EventKind::RunWaiting {
                    node: w.node.clone(),
                    index: w.index,
                    interrupt: w.interrupt.clone(),
                    timeout_at: w.timeout_at,
                    waiting: cp.waiting.clone(),
                });
            }
            return Ok(RunOutcome {
                run_id: new_id,
                status: RunStatus::Waiting,
                state: (*cp.state).clone(),
                results: cp.results.to_value(),
                error: None,
                failed_node: None,
                waiting: cp.waiting,
                checkpoint: Some(0),
                steps: cp.step,
            });
        }
        store.put(cp.clone()).await?;
        let opts = RunOptions {
            run_id: Some(new_id),
            ..opts
        };
        self.continue_from_inner(wf, cp, None, opts, Some(fork_ref))
            .await
    }

    /// The event emitter of a run whose next sequence number is `next_seq`.
    fn emitter(&self, run_id: Arc<str>, next_seq: u64, opts: &RunOptions) -> Arc<Emitter> {
        Arc::new(Emitter {
            enabled: self.inner.sink.enabled(),
            run_id,
            seq: Mutex::new(next_seq.max(1)),
            sink: self.inner.sink.clone(),
            clock: self.inner.clock.clone(),
            credentials: opts.credentials.clone(),
        })
    }

    fn require_checkpointer(&self, why: &str) -> Result<&Arc<dyn Checkpointer>, EngineError> {
        self.inner
            .checkpointer
            .as_ref()
            .ok_or_else(|| EngineError::NoCheckpointer(why.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_run(
        &self,
        wf: &Arc<CompiledWorkflow>,
        run_id: Arc<str>,
        input: Arc<Value>,
        state: Arc<Value>,
        results: Results,
        emitter: Arc<Emitter>,
        opts: &RunOptions,
        active_before_ms: u64,
        forked_from: Option<(String, u64)>,
    ) -> Run {
        let cancel = opts.cancel.child_token();
        let runtime: Arc<dyn Runtime> = Arc::new(EngineRuntime {
            engine: self.clone(),
            wf: wf.clone(),
            depth: opts.depth,
            debug: opts.debug,
            credentials: opts.credentials.clone(),
        });
        Run {
            debug: opts.debug,
            credentials: opts.credentials.clone(),
            wf: wf.clone(),
            run_id,
            input,
            state,
            results,
            pending: Vec::new(),
            step: 0,
            checkpoint_id: 0,
            emitter,
            cancel,
            timed_out: Arc::new(AtomicBool::new(false)),
            sem: Arc::new(Semaphore::new(wf.doc.settings.max_concurrency())),
            runtime,
            active_before_ms,
            started: Instant::now(),
            carried: Vec::new(),
            forked_from,
            wrote_checkpoint: false,
            closing_seq: None,
        }
    }

    async fn continue_from(
        &self,
        wf: &Arc<CompiledWorkflow>,
        cp: Checkpoint,
        resume: Option<Value>,
        opts: RunOptions,
    ) -> Result<RunOutcome, EngineError> {
        self.continue_from_inner(wf, cp, resume, opts, None).await
    }

    async fn continue_from_inner(
        &self,
        wf: &Arc<CompiledWorkflow>,
        cp: Checkpoint,
        resume: Option<Value>,
        opts: RunOptions,
        fork: Option<ForkRef>,
    ) -> Result<RunOutcome, EngineError> {
        let run_id: Arc<str> = cp.run_id.as_str().into();
        match cp.status {
            RunStatus::Completed => {
                return Err(EngineError::NotResumable(format!("run `{run_id}` already completed; fork from one of its checkpoints to run it again")))
            }
            RunStatus::Cancelled => {
                return Err(EngineError::NotResumable(format!("run `{run_id}` was cancelled; fork from one of its checkpoints to run it again")))
            }
            _ => {}
        }
        let now = self.inner.clock.now();
        let resume_input = if cp.status == RunStatus::Waiting {
            let expired = cp
                .waiting
                .iter()
                .any(|w| w.timeout_at.is_some_and(|t| now >= t));
            match (expired, resume) {
                (true, _) => Some(ResumeInput::Timeout),
                (false, Some(v)) => match &opts.resume_at {
                    None => Some(ResumeInput::Value(v)),
                    Some(t) => {
                        let hit = cp
                            .waiting
                            .iter()
                            .any(|w| w.node == t.node && (t.index.is_none() || w.index == t.index));
                        if !hit {
                            let waiting: Vec<String> = cp
                                .waiting
                                .iter()
                                .map(|w| match w.index {
                                    Some(i) => format!("{}[{i}]", w.node),
                                    None => w.node.clone(),
                                })
                                .collect();
                            return Err(EngineError::NotResumable(format!(
                                "run `{run_id}` is not waiting at `{}`{}; it waits at {}",
                                t.node,
                                t.index.map(|i| format!(" item {i}")).unwrap_or_default(),
                                waiting.join(", ")
                            )));
                        }
                        Some(ResumeInput::Only(t.clone(), v))
                    }
                },
                (false, None) => {
                    let mut nodes: Vec<&str> = cp.waiting.iter().map(|w| w.node.as_str()).collect();
                    nodes.dedup();
                    return Err(EngineError::NotResumable(format!(
                        "run `{run_id}` is waiting for input at {}; resume it with a value",
                        nodes.join(", ")
                    )));
                }
            }
        } else {
            resume.map(ResumeInput::Value)
        };
        let mut writes = cp.writes.clone();
        if let Some(store) = &self.inner.checkpointer {
            writes.extend(store.writes(&cp.run_id, cp.id).await?);
        }
        let next = cp
            .next_seq
            .max(self.inner.sink.next_seq(&run_id).unwrap_or(1));
        let emitter = self.emitter(run_id.clone(), next, &opts);
        emitter.emit(EventKind::RunStarted {
            workflow: wf.doc.name.clone(),
            input: (*cp.input).clone(),
            parent: opts.parent.clone(),
            resumed_from: if fork.is_some() { None } else { Some(cp.id) },
            forked_from: fork,
        });
        let mut run = self.new_run(
            wf,
            run_id,
            cp.input.clone(),
            cp.state.clone(),
            cp.results.clone(),
            emitter,
            &opts,
            cp.active_ms,
            cp.forked_from.clone(),
        );
        run.pending = cp.pending.clone();
        run.step = cp.step;
        run.checkpoint_id = cp.id;
        run.carried = cp.writes.clone();
        run.wrote_checkpoint = true;
        if run.pending.is_empty() {
            self.save(&mut run, RunStatus::Completed, Vec::new(), Vec::new(), None)
                .await?;
            return Ok(self.finish_completed(run));
        }
        self.drive(run, Prior::from_writes(&writes), resume_input)
            .await
    }

    /// Writes a checkpoint (a new id) with the run's current position.
    async fn save(
        &self,
        run: &mut Run,
        status: RunStatus,
        writes: Vec<TaskWrite>,
        waiting: Vec<Waiting>,
        error: Option<NodeError>,
    ) -> Result<(), EngineError> {
        let Some(store) = &self.inner.checkpointer else {
            return Ok(());
        };
        // One number for checkpoint_saved, one more for the closing event of a pause or an end.
        let reserve = if status == RunStatus::Running { 1 } else { 2 };
        let saved_seq = run.emitter.reserve(reserve);
        let parent = if run.wrote_checkpoint {
            Some(run.checkpoint_id)
        } else {
            None
        };
        let id = if run.wrote_checkpoint {
            run.checkpoint_id + 1
        } else {
            0
        };
        let cp = Checkpoint {
            run_id: run.run_id.to_string(),
            id,
            parent,
            step: run.step,
            status,
            input: run.input.clone(),
            state: run.state.clone(),
            results: run.results.clone(),
            pending: run.pending.clone(),
            writes,
            waiting,
            error,
            next_seq: saved_seq + reserve,
            active_ms: run.active_before_ms + run.started.elapsed().as_millis() as u64,
            created_at: self.inner.clock.now(),
            workflow_hash: run.wf.hash.clone(),
            forked_from: run.forked_from.clone(),
        };
        // Announced before the write: a storing sink that writes events and checkpoints in one
        // ordered queue then never holds a checkpoint without the events numbered before it.
        run.emitter.emit_at(
            saved_seq,
            EventKind::CheckpointSaved {
                checkpoint: id,
                step: run.step,
            },
        );
        store.put(cp).await?;
        run.checkpoint_id = id;
        run.wrote_checkpoint = true;
        run.closing_seq = (reserve == 2).then_some(saved_seq + 1);
        Ok(())
    }

    fn outcome(&self, run: &Run, status: RunStatus) -> RunOutcome {
        RunOutcome {
            run_id: run.run_id.to_string(),
            status,
            state: (*run.state).clone(),
            results: run.results.to_value(),
            error: None,
            failed_node: None,
            waiting: Vec::new(),
            checkpoint: if run.wrote_checkpoint && self.inner.checkpointer.is_some() {
                Some(run.checkpoint_id)
            } else {
                None
            },
            steps: run.step,
        }
    }

    fn finish_completed(&self, mut run: Run) -> RunOutcome {
        run.emit_closing(EventKind::RunCompleted {
            state: (*run.state).clone(),
            duration_ms: millis(run.started.elapsed()),
        });
        self.outcome(&run, RunStatus::Completed)
    }

    async fn finish_failed(
        &self,
        mut run: Run,
        error: NodeError,
        node: Option<String>,
    ) -> Result<RunOutcome, EngineError> {
        let writes = self.step_writes(&mut run).await?;
        self.save(
            &mut run,
            RunStatus::Failed,
            writes,
            Vec::new(),
            Some(error.clone()),
        )
        .await?;
        tracing::warn!(run_id = %run.run_id, node = ?node, error = %error.message, "run failed");
        run.emit_closing(EventKind::RunFailed {
            error: error.clone(),
            node: node.clone(),
        });
        let mut out = self.outcome(&run, RunStatus::Failed);
        out.error = Some(error);
        out.failed_node = node;
        Ok(out)
    }

    async fn finish_cancelled(&self, mut run: Run) -> Result<RunOutcome, EngineError> {
        if run.timed_out.load(Ordering::Relaxed) {
            let limit = run
                .wf
                .doc
                .settings
                .run_timeout
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default();
            let err = NodeError::new(
                "run_timeout",
                format!("the run exceeded its time limit of {limit} (settings.run_timeout)"),
            );
            return self.finish_failed(run, err, None).await;
        }
        let writes = self.step_writes(&mut run).await?;
        self.save(&mut run, RunStatus::Cancelled, writes, Vec::new(), None)
            .await?;
        run.emit_closing(EventKind::RunCancelled {
            reason: "cancelled on request".into(),
        });
        Ok(self.outcome(&run, RunStatus::Cancelled))
    }

    /// Runs supersteps until the run ends or pauses.
    async fn drive(
        &self,
        mut run: Run,
        mut prior: Prior,
        mut resume: Option<ResumeInput>,
    ) -> Result<RunOutcome, EngineError> {
        let watchdog = run.wf.doc.settings.run_timeout.as_ref().map(|limit| {
            let remaining = limit.as_millis().saturating_sub(run.active_before_ms);
            let token = run.cancel.clone();
            let flag = run.timed_out.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(remaining)).await;
                flag.store(true, Ordering::Relaxed);
                token.cancel();
            })
        });
        let result = self.drive_loop(&mut run, &mut prior, &mut resume).await;
        if let Some(w) = watchdog {
            w.abort();
        }
        match result {
            Ok(()) => Ok(self.finish_completed(run)),
            Err(Stop::Failed(e, node)) => self.finish_failed(run, e, node).await,
            Err(Stop::Cancelled) => self.finish_cancelled(run).await,
            Err(Stop::Waiting(waiting)) => {
                let writes = self.step_writes(&mut run).await?;
                self.save(&mut run, RunStatus::Waiting, writes, waiting.clone(), None)
                    .await?;
                if let Some(w) = waiting.first() {
                    run.emit_closing(EventKind::RunWaiting {
                        node: w.node.clone(),
                        index: w.index,
                        interrupt: w.interrupt.clone(),
                        timeout_at: w.timeout_at,
                        waiting: waiting.clone(),
                    });
                }
                let mut out = self.outcome(&run, RunStatus::Waiting);
                out.waiting = waiting;
                Ok(out)
            }
            Err(Stop::Storage(e)) => Err(e),
        }
    }

    async fn drive_loop(
        &self,
        run: &mut Run,
        prior: &mut Prior,
        resume: &mut Option<ResumeInput>,
    ) -> Result<(), Stop> {
        let limit = run.wf.doc.settings.recursion_limit();
        loop {
            if run.pending.is_empty() {
                return Ok(());
            }
            if run.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            let step_no = run.step + 1;
            if step_no > limit {
                let pending: Vec<&str> = run.pending.iter().map(|p| &*p.node).collect();
                return Err(Stop::Failed(
                    NodeError::new(
                        "recursion_limit",
                        format!(
                            "recursion limit of {limit} supersteps reached; nodes still pending: {}. Raise settings.recursion_limit or give the loop an exit condition",
                            pending.join(", ")
                        ),
                    ),
                    run.pending.first().map(|p| p.node.to_string()),
                ));
            }
            // Fan-in: a join waits while another pending activation can still reach it.
            let wf = run.wf.clone();
            let idx = |p: &Pending| wf.index.get(&*p.node).copied().unwrap_or(usize::MAX);
            let mut runnable = Vec::new();
            let mut deferred = Vec::new();
            for p in &run.pending {
                let i = idx(p);
                let blocked = i < wf.nodes.len()
                    && wf.nodes[i].is_join
                    && run.pending.iter().any(|q| {
                        q.node != p.node && idx(q) < wf.nodes.len() && wf.reaches(idx(q), i)
                    });
                if blocked {
                    deferred.push(p.clone());
                } else {
                    runnable.push(p.clone());
                }
            }
            if runnable.is_empty() {
                // Joins waiting on each other (a cycle): run them all rather than deadlock.
                runnable = std::mem::take(&mut deferred);
            }
            run.emitter.emit_with(|| EventKind::StepStarted {
                step: step_no,
                nodes: runnable
                    .iter()
                    .map(|p| {
                        wf.nodes
                            .get(idx(p))
                            .map_or_else(|| p.node.clone(), |n| n.id.clone())
                    })
                    .collect(),
            });
            let span = tracing::debug_span!("superstep", run_id = %run.run_id, step = step_no);
            let run_ref = &*run;
            let prior_ref = &*prior;
            let resume_ref = resume.as_ref();
            let futures = runnable.iter().map(|p| {
                let i = idx(p);
                async move {
                    (
                        i,
                        self.run_task(run_ref, i, &p.sources, step_no, prior_ref, resume_ref)
                            .await,
                    )
                }
            });
            let mut outcomes: Vec<(usize, TaskOutcome)> = if runnable.len() == 1 {
                // A step with one task (a chain) needs no join machinery.
                let p = &runnable[0];
                let i = idx(p);
                let o = self
                    .run_task(run_ref, i, &p.sources, step_no, prior_ref, resume_ref)
                    .instrument(span)
                    .await;
                vec![(i, o)]
            } else {
                futures::future::join_all(futures).instrument(span).await
            };
            outcomes.sort_by_key(|(i, _)| *i);
            *prior = Prior::default();
            *resume = None;

            if run.cancel.is_cancelled()
                || outcomes
                    .iter()
                    .any(|(_, o)| matches!(o, TaskOutcome::Cancelled))
            {
                return Err(Stop::Cancelled);
            }
            if let Some((i, TaskOutcome::Failed { error })) = outcomes
                .iter()
                .find(|(_, o)| matches!(o, TaskOutcome::Failed { .. }))
            {
                return Err(Stop::Failed(
                    error.clone(),
                    Some(wf.nodes[*i].id.to_string()),
                ));
            }
            let mut waiting = Vec::new();
            for (i, o) in &outcomes {
                if let TaskOutcome::Interrupted { waiting: w } = o {
                    for (index, interrupt) in w {
                        let timeout_at = interrupt.timeout_ms.map(|ms| {
                            self.inner.clock.now()
                                + chrono::Duration::milliseconds(ms.min(i64::MAX as u64) as i64)
                        });
                        waiting.push(Waiting {
                            node: wf.nodes[*i].id.to_string(),
                            index: *index,
                            interrupt: interrupt.clone(),
                            timeout_at,
                        });
                    }
                }
            }
            if !waiting.is_empty() {
                return Err(Stop::Waiting(waiting));
            }

            // Apply every update in document order, then route.
            {
                let state = Arc::make_mut(&mut run.state);
                let results = &mut run.results;
                let Value::Object(state) = state else {
                    return Err(Stop::Failed(
                        NodeError::new("internal", "state is not an object"),
                        None,
                    ));
                };
                for (i, o) in &mut outcomes {
                    let TaskOutcome::Done {
                        output, updates, ..
                    } = o
                    else {
                        continue;
                    };
                    let node = &wf.nodes[*i];
                    results.insert(node.id.clone(), output.clone());
                    for u in std::mem::take(updates) {
                        for (k, v) in u {
                            let reducer = wf.reducer(&k);
                            let slot = state.entry(k.clone()).or_insert(Value::Null);
                            if let Err(e) = reducer::apply(reducer, &k, slot, v) {
                                return Err(Stop::Failed(
                                    NodeError::new(
                                        "state",
                                        format!(
                                            "node `{}` wrote an update that does not fit: {e}",
                                            node.id
                                        ),
                                    ),
                                    Some(node.id.to_string()),
                                ));
                            }
                        }
                    }
                }
            }
            let mut next = deferred;
            let mut stop = false;
            for (i, o) in &outcomes {
                let TaskOutcome::Done {
                    output,
                    branch,
                    route,
                    stop: s,
                    ..
                } = o
                else {
                    continue;
                };
                stop |= *s;
                let node = &wf.nodes[*i];
                // Conditions see the updated state and this node's output; skip building the
                // scope when no edge has a condition.
                let scope = if node.edges.iter().any(|e| e.condition.is_some()) {
                    Scope {
                        output: Some(output.clone()),
                        ..run.scope(None)
                    }
                } else {
                    Scope::default()
                };
                route_edges(
                    &node.edges,
                    branch.as_deref(),
                    *route,
                    &scope,
                    &node.id,
                    &mut next,
                    &wf,
                )
                .map_err(|e| Stop::Failed(e, Some(node.id.to_string())))?;
            }
            if stop {
                next.clear();
            }
            next.sort_by_key(&idx);
            run.pending = next;
            run.step = step_no;
            run.carried.clear();
            let status = if run.pending.is_empty() {
                RunStatus::Completed
            } else {
                RunStatus::Running
            };
            self.save(run, status, Vec::new(), Vec::new(), None)
                .await
                .map_err(Stop::Storage)?;
        }
    }

    /// Records a write built only when a checkpointer will keep it.
    async fn record_with(
        &self,
        run: &Run,
        write: impl FnOnce() -> TaskWrite,
    ) -> Result<(), EngineError> {
        match &self.inner.checkpointer {
            Some(store) => Ok(store
                .put_write(&run.run_id, run.checkpoint_id, write())
                .await?),
            None => Ok(()),
        }
    }

    async fn record(&self, run: &Run, write: TaskWrite) -> Result<(), EngineError> {
        if let Some(store) = &self.inner.checkpointer {
            store
                .put_write(&run.run_id, run.checkpoint_id, write)
                .await?;
        }
        Ok(())
    }

    /// Every write of the unfinished superstep: those carried in from the checkpoint the run
    /// continued from, and those recorded since.
    async fn step_writes(&self, run: &mut Run) -> Result<Vec<TaskWrite>, EngineError> {
        let mut writes = std::mem::take(&mut run.carried);
        if let Some(store) = &self.inner.checkpointer {
            writes.extend(store.writes(&run.run_id, run.checkpoint_id).await?);
        }
        Ok(writes)
    }

    async fn run_task(
        &self,
        run: &Run,
        ni: usize,
        sources: &[Arc<str>],
        step: u32,
        prior: &Prior,
        resume: Option<&ResumeInput>,
    ) -> TaskOutcome {
        let node = &run.wf.nodes[ni];
        // Outputs of the activating nodes, in document order (not activation order).
        let mut sources: Vec<&Arc<str>> = sources.iter().collect();
        sources.sort_by_key(|s| run.wf.index.get(&***s).copied().unwrap_or(usize::MAX));
        let inputs: Vec<(String, Arc<Value>)> = sources
            .into_iter()
            .filter_map(|s| {
                run.results
                    .get_shared(s)
                    .map(|v| (s.to_string(), v.clone()))
            })
            .collect();
        let inputs = Arc::new(inputs);
        let Some(map) = &node.map else {
            return match self
                .run_item(run, node, &inputs, step, None, None, prior, resume)
                .await
            {
                ItemOutcome::Done { output, route } => TaskOutcome::Done {
                    output: Arc::new(output.output),
                    updates: vec![output.update],
                    branch: output.branch,
                    route,
                    stop: output.stop,
                },
                ItemOutcome::Failed(error) => TaskOutcome::Failed { error },
                ItemOutcome::Interrupted { interrupt } => TaskOutcome::Interrupted {
                    waiting: vec![(None, interrupt)],
                },
                ItemOutcome::Cancelled => TaskOutcome::Cancelled,
            };
        };
        let started = Instant::now();
        let items = match map.over.eval(&run.scope(None)) {
            Ok(Value::Array(a)) => a,
            Ok(Value::Null) => Vec::new(),
            Ok(other) => {
                let e = NodeError::new(
                    "expression",
                    format!(
                        "node `{}`: map.over must yield a list, got {}",
                        node.id,
                        short(&other)
                    ),
                );
                return self.handle_map_error(run, node, step, e).await;
            }
            Err(e) => {
                let e = NodeError::new(
                    "expression",
                    format!("node `{}`: map.over: {}", node.id, e.message),
                );
                return self.handle_map_error(run, node, step, e).await;
            }
        };
        let results: Vec<ItemOutcome> = futures::stream::iter(items.into_iter().enumerate())
            .map(|(i, item)| {
                let inputs = &inputs;
                async move {
                    self.run_item(
                        run,
                        node,
                        inputs,
                        step,
                        Some(i),
                        Some(Arc::new(item)),
                        prior,
                        resume,
                    )
                    .await
                }
            })
            .buffered(map.concurrency)
            .collect()
            .await;
        let mut outputs = Vec::with_capacity(results.len());
        let mut updates = Vec::new();
        let mut waiting = Vec::new();
        let mut route = Route::Normal;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                ItemOutcome::Done { output, route: r } => {
                    if r == Route::Error {
                        route = Route::Error;
                    }
                    outputs.push(output.output);
                    if !output.update.is_empty() {
                        updates.push(output.update);
                    }
                }
                ItemOutcome::Failed(error) => return TaskOutcome::Failed { error },
                ItemOutcome::Interrupted { interrupt } => waiting.push((Some(i), interrupt)),
                ItemOutcome::Cancelled => return TaskOutcome::Cancelled,
            }
        }
        if !waiting.is_empty() {
            return TaskOutcome::Interrupted { waiting };
        }
        let output = Value::Array(outputs);
        run.emitter.emit_with(|| EventKind::NodeCompleted {
            node: node.id.clone(),
            step,
            attempt: 1,
            index: None,
            output: output.clone(),
            update: Map::new(),
            branch: None,
            duration_ms: millis(started.elapsed()),
        });
        TaskOutcome::Done {
            output: Arc::new(output),
            updates,
            branch: None,
            route,
            stop: false,
        }
    }

    async fn handle_map_error(
        &self,
        run: &Run,
        node: &CompiledNode,
        step: u32,
        e: NodeError,
    ) -> TaskOutcome {
        match self.final_failure(run, node, step, None, 1, e).await {
            ItemOutcome::Done { output, route } => TaskOutcome::Done {
                output: Arc::new(output.output),
                updates: vec![],
                branch: None,
                route,
                stop: false,
            },
            ItemOutcome::Failed(error) => TaskOutcome::Failed { error },
            ItemOutcome::Interrupted { interrupt } => TaskOutcome::Interrupted {
                waiting: vec![(None, interrupt)],
            },
            ItemOutcome::Cancelled => TaskOutcome::Cancelled,
        }
    }

    /// After the last attempt failed: fail, continue or route per `on_error`.
    async fn final_failure(
        &self,
        run: &Run,
        node: &CompiledNode,
        step: u32,
        index: Option<usize>,
        attempt: u32,
        e: NodeError,
    ) -> ItemOutcome {
        let handling = match node.on_error {
            OnError::Fail => "fail",
            OnError::Continue => "continue",
            OnError::Route => "route",
        };
        run.emitter.emit(EventKind::NodeFailed {
            node: node.id.clone(),
            step,
            attempt,
            index,
            error: e.clone(),
            will_retry: false,
            retry_in_ms: None,
            handling: handling.into(),
        });
        let (kind, out) = match node.on_error {
            OnError::Fail => (
                WriteKind::Failed { error: e.clone() },
                ItemOutcome::Failed(e.clone()),
            ),
            OnError::Continue | OnError::Route => {
                let route = if node.on_error == OnError::Route {
                    Route::Error
                } else {
                    Route::Normal
                };
                let output = NodeOutput::output(json!({ "error": e.to_value() }));
                (
                    WriteKind::Done {
                        output: output.clone(),
                        route,
                    },
                    ItemOutcome::Done { output, route },
                )
            }
        };
        if let Err(err) = self
            .record(
                run,
                TaskWrite {
                    node: node.id.to_string(),
                    index,
                    attempt,
                    kind,
                },
            )
            .await
        {
            return ItemOutcome::Failed(NodeError::new("storage", err.to_string()));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_item(
        &self,
        run: &Run,
        node: &CompiledNode,
        inputs: &Arc<Vec<(String, Arc<Value>)>>,
        step: u32,
        index: Option<usize>,
        item: Option<Arc<Value>>,
        prior: &Prior,
        resume: Option<&ResumeInput>,
    ) -> ItemOutcome {
        // Most executions have no earlier writes: skip building the lookup key then.
        let key = (!prior.done.is_empty() || !prior.attempts.is_empty())
            .then(|| (node.id.to_string(), index));
        let mut resume_value = None;
        if let Some((attempt, kind)) = key.as_ref().and_then(|k| prior.done.get(k)) {
            match kind {
                WriteKind::Done { output, route } => {
                    return ItemOutcome::Done {
                        output: output.clone(),
                        route: *route,
                    };
                }
                WriteKind::Interrupted { interrupt } => match resume {
                    None => {
                        return ItemOutcome::Interrupted {
                            interrupt: interrupt.clone(),
                        }
                    }
                    Some(ResumeInput::Value(v)) => resume_value = Some(v.clone()),
                    Some(ResumeInput::Only(t, v))
                        if *t.node == *node.id && (t.index.is_none() || t.index == index) =>
                    {
                        resume_value = Some(v.clone())
                    }
                    // Another interrupt is answered: this one keeps waiting.
                    Some(ResumeInput::Only(..)) => {
                        return ItemOutcome::Interrupted {
                            interrupt: interrupt.clone(),
                        }
                    }
                    Some(ResumeInput::Timeout) => {
                        let has_timeout_edge =
                            node.edges.iter().any(|e| e.kind == EdgeKind::Timeout);
                        if has_timeout_edge {
                            let output = NodeOutput::output(
                                json!({ "timed_out": true, "interrupt": interrupt.payload }),
                            );
                            let w = TaskWrite {
                                node: node.id.to_string(),
                                index,
                                attempt: *attempt,
                                kind: WriteKind::Done {
                                    output: output.clone(),
                                    route: Route::Timeout,
                                },
                            };
                            if let Err(e) = self.record(run, w).await {
                                return ItemOutcome::Failed(NodeError::new(
                                    "storage",
                                    e.to_string(),
                                ));
                            }
                            run.emitter.emit_with(|| EventKind::NodeCompleted {
                                node: node.id.clone(),
                                step,
                                attempt: *attempt,
                                index,
                                output: output.output.clone(),
                                update: Map::new(),
                                branch: None,
                                duration_ms: 0.0,
                            });
                            return ItemOutcome::Done {
                                output,
                                route: Route::Timeout,
                            };
                        }
                        let e = NodeError::new(
                            "timeout",
                            format!("node `{}` waited for input past its timeout", node.id),
                        );
                        return self
                            .final_failure(run, node, step, index, *attempt, e)
                            .await;
                    }
                },
                _ => {}
            }
        }
        let mut attempt = key
            .as_ref()
            .and_then(|k| prior.attempts.get(k))
            .copied()
            .unwrap_or(0)
            + 1;
        let policy = node.retry.clone().unwrap_or(crate::document::RetryPolicy {
            max_attempts: Some(1),
            ..Default::default()
        });
        let max_attempts = if node.retry.is_some() {
            policy.max_attempts()
        } else {
            1
        };
        let mut scope = run.scope(None);
        if let Some(item) = item {
            if let Some(map) = &node.map {
                scope.item = Some((map.var.clone(), item));
            }
            scope.index = index;
        }
        loop {
            let span = tracing::info_span!("node", run_id = %run.run_id, node_id = %node.id, attempt, index = ?index);
            run.emitter.emit_with(|| EventKind::NodeStarted {
                node: node.id.clone(),
                step,
                attempt,
                index,
            });
            let started = Instant::now();
            let result = match node.render_config(&scope) {
                Err((path, e)) => Err(NodeError::new(
                    "expression",
                    format!("node `{}`: config field `{path}`: {}", node.id, e.message),
                )),
                Ok(config) => {
                    if run.debug {
                        run.emitter.emit_with(|| EventKind::NodeInput {
                            node: node.id.clone(),
                            step,
                            attempt,
                            index,
                            config: config.clone(),
                            state: (*run.state).clone(),
                        });
                    }
                    let ctx = NodeContext {
                        run_id: run.run_id.clone(),
                        node_id: node.id.clone(),
                        node_type: node.node_type.clone(),
                        step,
                        attempt,
                        index,
                        config,
                        scope: scope.clone(),
                        inputs: inputs.clone(),
                        resume: resume_value.clone(),
                        cancel: run.cancel.clone(),
                        runtime: run.runtime.clone(),
                        events: run.emitter.clone(),
                        credentials: run.credentials.clone(),
                        credential_slots: node.credentials.clone(),
                    };
                    // A free permit is taken at once; otherwise wait, unless cancelled.
                    let permit = match run.sem.try_acquire() {
                        Ok(p) => Some(p),
                        Err(_) => tokio::select! {
                            p = run.sem.acquire() => p.ok(),
                            _ = run.cancel.cancelled() => return ItemOutcome::Cancelled,
                        },
                    };
                    let fut = node.imp.run(&ctx).instrument(span.clone());
                    let r = tokio::select! {
                        r = async {
                            match node.timeout {
                                Some(t) => match tokio::time::timeout(t, fut).await {
                                    Ok(r) => r,
                                    Err(_) => Err(NodeError::transient("timeout", format!("node `{}` timed out after {} ms", node.id, t.as_millis()))),
                                },
                                None => fut.await,
                            }
                        } => r,
                        _ = run.cancel.cancelled() => Err(NodeError::new("cancelled", "the run was cancelled")),
                    };
                    drop(permit);
                    r
                }
            };
            if run.cancel.is_cancelled() {
                return ItemOutcome::Cancelled;
            }
            let elapsed = started.elapsed();
            let result = result.and_then(|r| match r {
                NodeResult::Done(mut out) if !node.assign.is_empty() => {
                    let s = Scope {
                        output: Some(Arc::new(out.output.clone())),
                        ..scope.clone()
                    };
                    for (field, t) in &node.assign {
                        let v = t.render(&s).map_err(|(_, e)| {
                            NodeError::new(
                                "expression",
                                format!("node `{}`: assign `{field}`: {}", node.id, e.message),
                            )
                        })?;
                        out.update.insert(field.clone(), v);
                    }
                    Ok(NodeResult::Done(out))
                }
                other => Ok(other),
            });
            // Secrets never reach state, checkpoints or errors: mask at the source.
            let result = match &run.credentials {
                Some(c) if c.active() => mask_result(c.as_ref(), result),
                _ => result,
            };
            match result {
                Ok(NodeResult::Done(output)) => {
                    let w = || TaskWrite {
                        node: node.id.to_string(),
                        index,
                        attempt,
                        kind: WriteKind::Done {
                            output: output.clone(),
                            route: Route::Normal,
                        },
                    };
                    if let Err(e) = self.record_with(run, w).await {
                        return ItemOutcome::Failed(NodeError::new("storage", e.to_string()));
                    }
                    run.emitter.emit_with(|| EventKind::NodeCompleted {
                        node: node.id.clone(),
                        step,
                        attempt,
                        index,
                        output: output.output.clone(),
                        update: output.update.clone(),
                        branch: output.branch.clone(),
                        duration_ms: millis(elapsed),
                    });
                    return ItemOutcome::Done {
                        output,
                        route: Route::Normal,
                    };
                }
                Ok(NodeResult::Interrupt(interrupt)) => {
                    let w = TaskWrite {
                        node: node.id.to_string(),
                        index,
                        attempt,
                        kind: WriteKind::Interrupted {
                            interrupt: interrupt.clone(),
                        },
                    };
                    if let Err(e) = self.record(run, w).await {
                        return ItemOutcome::Failed(NodeError::new("storage", e.to_string()));
                    }
                    return ItemOutcome::Interrupted { interrupt };
                }
                Err(e) => {
                    if e.kind == "cancelled" && run.cancel.is_cancelled() {
                        return ItemOutcome::Cancelled;
                    }
                    if attempt < max_attempts && policy.retries(&e.kind, e.retryable) {
                        let delay = policy.delay_ms(
                            attempt + 1,
                            jitter_unit(&run.run_id, &node.id, index, attempt),
                        );
                        run.emitter.emit(EventKind::NodeFailed {
                            node: node.id.clone(),
                            step,
                            attempt,
                            index,
                            error: e.clone(),
                            will_retry: true,
                            retry_in_ms: Some(delay),
                            handling: "retry".into(),
                        });
                        let w = TaskWrite {
                            node: node.id.to_string(),
                            index,
                            attempt,
                            kind: WriteKind::Attempt { error: e },
                        };
                        if let Err(e) = self.record(run, w).await {
                            return ItemOutcome::Failed(NodeError::new("storage", e.to_string()));
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_millis(delay)) => {}
                            _ = run.cancel.cancelled() => return ItemOutcome::Cancelled,
                        }
                        attempt += 1;
                        continue;
                    }
                    return self.final_failure(run, node, step, index, attempt, e).await;
                }
            }
        }
    }
}

enum Stop {
    Failed(NodeError, Option<String>),
    Cancelled,
    Waiting(Vec<Waiting>),
    Storage(EngineError),
}

impl Run {
    fn scope(&self, output: Option<Arc<Value>>) -> Scope {
        Scope {
            state: Some(self.state.clone()),
            input: Some(self.input.clone()),
            results: Some(self.results.clone()),
            output,
            ..Default::default()
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(60).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// Follows the edges of one finished task, adding activations to `next`.
fn route_edges(
    edges: &[crate::graph::CompiledEdge],
    branch: Option<&str>,
    route: Route,
    scope: &Scope,
    source: &Arc<str>,
    next: &mut Vec<Pending>,
    wf: &CompiledWorkflow,
) -> Result<(), NodeError> {
    let activate = |target: Option<usize>, next: &mut Vec<Pending>| {
        let Some(t) = target else { return };
        let id = &wf.nodes[t].id;
        match next.iter_mut().find(|p| p.node == *id) {
            Some(p) => {
                if !p.sources.iter().any(|s| s == source) {
                    p.sources.push(source.clone());
                }
            }
            None => next.push(Pending {
                node: id.clone(),
                sources: vec![source.clone()],
            }),
        }
    };
    match route {
        Route::Error | Route::Timeout => {
            let want = if route == Route::Error {
                EdgeKind::Error
            } else {
                EdgeKind::Timeout
            };
            for e in edges.iter().filter(|e| e.kind == want) {
                activate(e.target, next);
            }
        }
        Route::Normal => {
            let mut conditional_taken = false;
            for e in edges.iter().filter(|e| e.kind == EdgeKind::Normal) {
                if let Some(b) = &e.branch {
                    if branch != Some(b.as_str()) {
                        continue;
                    }
                }
                if let Some(c) = &e.condition {
                    let ok = c.truthy(scope).map_err(|err| {
                        NodeError::new(
                            "expression",
                            format!(
                                "condition of edge #{} from `{source}` failed: {}",
                                e.doc_index, err.message
                            ),
                        )
                    })?;
                    if !ok {
                        continue;
                    }
                }
                conditional_taken |= e.is_conditional();
                activate(e.target, next);
            }
            if !conditional_taken {
                for e in edges.iter().filter(|e| e.kind == EdgeKind::Else) {
                    activate(e.target, next);
                }
            }
        }
    }
    Ok(())
}

/// The engine's services for nodes of one run.
struct EngineRuntime {
    engine: Engine,
    wf: Arc<CompiledWorkflow>,
    depth: usize,
    /// Child runs inherit debug mode.
    debug: bool,
    /// Child runs use the same credentials (and masker).
    credentials: Option<Arc<dyn Credentials>>,
}

impl EngineRuntime {
    async fn resolve(&self, wref: &WorkflowRef) -> Result<Arc<CompiledWorkflow>, NodeError> {
        let key = match wref {
            WorkflowRef::Inline { inline: doc } => {
                format!("inline:{}", crate::graph::content_hash(doc))
            }
            WorkflowRef::Path { path: p } => format!("path:{p}"),
            WorkflowRef::Id { id, version } => format!("id:{id}@{version:?}"),
        };
        if let Some(c) = self
            .wf
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let invalid = |what: String, problems: Vec<crate::validate::Problem>| {
            let lines: Vec<String> = problems
                .iter()
                .filter(|p| p.severity == crate::validate::Severity::Error)
                .map(|p| format!("{} {}", p.path, p.message))
                .collect();
            NodeError::new(
                "subworkflow",
                format!("{what} is invalid: {}", lines.join("; ")),
            )
        };
        let catalog = &self.engine.inner.catalog;
        let compiled = match wref {
            WorkflowRef::Inline { inline: doc } => {
                CompiledWorkflow::compile((**doc).clone(), catalog)
                    .map_err(|p| invalid("the inline sub-workflow".into(), p))?
                    .with_base_dir(self.wf.base_dir.clone().unwrap_or_default())
            }
            WorkflowRef::Path { path: p } => {
                let path = match &self.wf.base_dir {
                    Some(d) => d.join(p),
                    None => std::path::PathBuf::from(p),
                };
                let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
                    NodeError::new(
                        "subworkflow",
                        format!("cannot read sub-workflow {}: {e}", path.display()),
                    )
                })?;
                let (doc, _) = crate::validate::validate_text(&text, catalog)
                    .map_err(|p| invalid(format!("sub-workflow {}", path.display()), p))?;
                let c = CompiledWorkflow::compile(doc, catalog)
                    .map_err(|p| invalid(format!("sub-workflow {}", path.display()), p))?;
                match path.parent() {
                    Some(d) => c.with_base_dir(d),
                    None => c,
                }
            }
            WorkflowRef::Id { id, version } => {
                let loader = self.engine.inner.loader.as_ref().ok_or_else(|| {
                    NodeError::new("subworkflow", format!("workflow `{id}` is referenced by id, which only a server can resolve; use a path or an inline document locally"))
                })?;
                let doc = loader
                    .load(id, *version)
                    .await
                    .map_err(|e| NodeError::new("subworkflow", e))?;
                CompiledWorkflow::compile(doc, catalog)
                    .map_err(|p| invalid(format!("workflow `{id}`"), p))?
            }
        };
        let compiled = Arc::new(compiled);
        self.wf
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, compiled.clone());
        Ok(compiled)
    }
}

#[async_trait]
impl Runtime for EngineRuntime {
    async fn run_child(
        &self,
        ctx: &NodeContext,
        workflow: &WorkflowRef,
        input: Value,
    ) -> Result<ChildOutcome, NodeError> {
        if self.depth + 1 > MAX_CHILD_DEPTH {
            return Err(NodeError::new("subworkflow", format!("sub-workflows nest deeper than {MAX_CHILD_DEPTH} levels; is a workflow calling itself?")));
        }
        let child = self.resolve(workflow).await?;
        let mut child_id = format!("{}.{}.s{}", ctx.run_id, ctx.node_id, ctx.step);
        if let Some(i) = ctx.index {
            child_id.push_str(&format!(".i{i}"));
        }
        let opts = RunOptions {
            run_id: Some(child_id.clone()),
            cancel: ctx.cancel.clone(),
            parent: Some(ParentRef {
                run_id: ctx.run_id.to_string(),
                node: ctx.node_id.to_string(),
            }),
            resume_at: None,
            debug: self.debug,
            credentials: self.credentials.clone(),
            depth: self.depth + 1,
        };
        let engine = &self.engine;
        let existing = match &engine.inner.checkpointer {
            Some(store) => store
                .latest(&child_id)
                .await
                .map_err(|e| NodeError::new("storage", e.to_string()))?,
            None => None,
        };
        let result = match existing {
            Some(cp) if cp.status == RunStatus::Completed => {
                return Ok(ChildOutcome::Completed {
                    run_id: child_id,
                    state: (*cp.state).clone(),
                });
            }
            Some(cp) if cp.status == RunStatus::Waiting && ctx.resume.is_none() => {
                let interrupt =
                    cp.waiting
                        .first()
                        .map(|w| w.interrupt.clone())
                        .unwrap_or(Interrupt {
                            payload: Value::Null,
                            timeout_ms: None,
                        });
                return Ok(ChildOutcome::Waiting {
                    run_id: child_id,
                    interrupt,
                });
            }
            Some(_) => Box::pin(engine.resume(&child, &child_id, ctx.resume.clone(), opts)).await,
            None => Box::pin(engine.start(&child, input, opts)).await,
        };
        let out = result.map_err(|e| {
            NodeError::new("subworkflow", format!("sub-workflow run `{child_id}`: {e}"))
        })?;
        match out.status {
            RunStatus::Completed => Ok(ChildOutcome::Completed {
                run_id: child_id,
                state: out.state,
            }),
            RunStatus::Waiting => {
                Ok(ChildOutcome::Waiting {
                    run_id: child_id,
                    interrupt: out.waiting.first().map(|w| w.interrupt.clone()).unwrap_or(
                        Interrupt {
                            payload: Value::Null,
                            timeout_ms: None,
                        },
                    ),
                })
            }
            RunStatus::Cancelled => Err(NodeError::new(
                "cancelled",
                "the sub-workflow run was cancelled",
            )),
            _ => {
                let e = out
                    .error
                    .unwrap_or_else(|| NodeError::new("subworkflow", "failed"));
                Err(NodeError {
                    kind: "subworkflow".into(),
                    message: format!(
                        "sub-workflow run `{child_id}` failed{}: {}",
                        out.failed_node
                            .map(|n| format!(" at node `{n}`"))
                            .unwrap_or_default(),
                        e.message
                    ),
                    retryable: e.retryable,
                    details: Some(Box::new(
                        json!({ "child_run_id": child_id, "error": e.to_value() }),
                    )),
                })
            }
        }
    }
}
