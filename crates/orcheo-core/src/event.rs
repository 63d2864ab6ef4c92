//! The run event stream: every run emits an ordered sequence of events, each with a per-run
//! sequence number so that a client can resume after a disconnect without gaps or duplicates.

use crate::node::{Interrupt, NodeError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Verbose detail.
    Debug,
    /// Normal information.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The run this event belongs to.
    pub run_id: Arc<str>,
    /// Position in the run's stream, from 1, without gaps.
    pub seq: u64,
    /// When the event happened.
    pub ts: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The origin of a forked run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForkRef {
    /// The run forked from.
    pub run_id: String,
    /// Its checkpoint the fork started from.
    pub checkpoint: u64,
}

/// Where a child run hangs in its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent run.
    pub run_id: String,
    /// The parent's node that started the child.
    pub node: String,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The run started (or resumed from a checkpoint).
    RunStarted {
        /// Workflow name.
        workflow: String,
        /// The run input.
        input: Value,
        /// The parent run, for sub-workflows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentRef>,
        /// The checkpoint the run continued from, when resumed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed_from: Option<u64>,
        /// The run and checkpoint this run was forked from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forked_from: Option<ForkRef>,
    },
    /// A superstep began.
    StepStarted {
        /// Superstep number.
        step: u32,
        /// Nodes running in it, in document order.
        nodes: Vec<Arc<str>>,
    },
    /// A node attempt began.
    NodeStarted {
        /// Node id.
        node: Arc<str>,
        /// Superstep number.
        step: u32,
        /// Attempt number from 1.
        attempt: u32,
        /// Map item index.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
    },
    /// A node wrote a log line.
    NodeLog {
        /// Node id.
        node: Arc<str>,
        /// Map item index.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
        /// Severity.
        level: LogLevel,
        /// The line.
        message: String,
        /// Structured data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
    },
    /// Debug mode: what a node execution received (rendered config, state).
    NodeInput {
        /// The node.
        node: Arc<str>,
        /// Superstep.
        step: u32,
        /// Attempt, from 1.
        attempt: u32,
        /// Map item index.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
        /// The config after templates were rendered.
        config: Value,
        /// The state the node saw.
        state: Value,
    },
    /// A node finished.
    NodeCompleted {
        /// Node id.
        node: Arc<str>,
        /// Superstep number.
        step: u32,
        /// Attempt that succeeded.
        attempt: u32,
        /// Map item index (the collected map result has none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
        /// The node's output.
        output: Value,
        /// The state update it made.
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        update: Map<String, Value>,
        /// The branch it chose.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        /// Wall time of the successful attempt in milliseconds.
        duration_ms: f64,
    },
    /// A node attempt failed.
    NodeFailed {
        /// Node id.
        node: Arc<str>,
        /// Superstep number.
        step: u32,
        /// Attempt that failed.
        attempt: u32,
        /// Map item index.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
        /// The error.
        error: NodeError,
        /// Whether another attempt follows.
        will_retry: bool,
        /// Delay before the next attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
        /// What the engine does with the failure: `fail`, `continue`, `route` or `retry`.
        handling: String,
    },
    /// A checkpoint was written.
    CheckpointSaved {
        /// Checkpoint id.
        checkpoint: u64,
        /// Superstep number.
        step: u32,
    },
    /// The run paused waiting for input.
    RunWaiting {
        /// The waiting node.
        node: String,
        /// Map item index.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
        /// What the node asks.
        interrupt: Interrupt,
        /// When the wait times out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at: Option<DateTime<Utc>>,
        /// Every interrupt the run waits on (parallel nodes or map items can wait together);
        /// the first is also given by `node`, `index` and `interrupt`.
        waiting: Vec<crate::checkpoint::Waiting>,
    },
    /// The run finished successfully.
    RunCompleted {
        /// Final state.
        state: Value,
        /// Run time in milliseconds (this process's part).
        duration_ms: f64,
    },
    /// The run failed.
    RunFailed {
        /// The error.
        error: NodeError,
        /// The node that failed, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// The run was cancelled.
    RunCancelled {
        /// Why.
        reason: String,
    },
}

impl EventKind {
    /// The `type` tag of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::StepStarted { .. } => "step_started",
            EventKind::NodeStarted { .. } => "node_started",
            EventKind::NodeLog { .. } => "node_log",
            EventKind::NodeInput { .. } => "node_input",
            EventKind::NodeCompleted { .. } => "node_completed",
            EventKind::NodeFailed { .. } => "node_failed",
            EventKind::CheckpointSaved { .. } => "checkpoint_saved",
            EventKind::RunWaiting { .. } => "run_waiting",
            EventKind::RunCompleted { .. } => "run_completed",
            EventKind::RunFailed { .. } => "run_failed",
            EventKind::RunCancelled { .. } => "run_cancelled",
        }
    }
}

/// Where events go (a terminal, a database, a broadcast channel, a test vector).
pub trait EventSink: Send + Sync {
    /// Receives one event. Must not block for long.
    fn emit(&self, event: Event);
    /// The next unused sequence number of a run, when the sink stores events. A run resumed
    /// after a crash continues after the last stored event, so numbers are never reused.
    fn next_seq(&self, _run_id: &str) -> Option<u64> {
        None
    }
    /// Whether the sink keeps events at all; when false the engine skips building them.
    fn enabled(&self) -> bool {
        true
    }
}

/// Drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
    fn enabled(&self) -> bool {
        false
    }
}

/// Keeps every event in memory (tests, `--json` replays).
#[derive(Debug, Default, Clone)]
pub struct VecSink(pub Arc<Mutex<Vec<Event>>>);

impl VecSink {
    /// A new empty sink.
    pub fn new() -> Self {
        Self::default()
    }
    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    /// The events of one run.
    pub fn run_events(&self, run_id: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| &*e.run_id == run_id)
            .collect()
    }
}

impl EventSink for VecSink {
    fn emit(&self, event: Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event);
        }
    }
}

/// Calls a function for every event.
pub struct FnSink<F: Fn(Event) + Send + Sync>(pub F);

impl<F: Fn(Event) + Send + Sync> EventSink for FnSink<F> {
    fn emit(&self, event: Event) {
        (self.0)(event)
    }
}
