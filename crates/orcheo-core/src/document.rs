//! The workflow document `orcheo.workflow/1`: the one format that the canvas, the SDK, the CLI
//! and the API all read and write. Unknown fields are rejected; defaults are omitted when
//! serialising so that a parsed document serialises back to the same JSON.

use crate::duration::Duration;
use crate::ordered_map::OrderedMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The format tag every document carries.
pub const FORMAT: &str = "orcheo.workflow/1";
/// The pseudo-node edges leave to enter the graph.
pub const START: &str = "__start__";
/// The pseudo-node an edge may point at to end its branch explicitly.
pub const END: &str = "__end__";

/// The format tag, a single-valued enum so the schema pins it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Version 1 of the workflow format.
    #[default]
    #[serde(rename = "orcheo.workflow/1")]
    V1,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A whole workflow: what runs, in which order, with which state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Always `"orcheo.workflow/1"`.
    pub format: Format,
    /// A short human name.
    pub name: String,
    /// What the workflow does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form labels for search and grouping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// JSON Schema the run input must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Declared state fields with their reducers, keyed by field name.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub state: OrderedMap<StateField>,
    /// The steps of the workflow.
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// How control flows between nodes.
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// What starts the workflow (webhooks, schedules, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// Run-wide limits and defaults.
    #[serde(default, skip_serializing_if = "is_default")]
    pub settings: Settings,
    /// Canvas metadata for the whole workflow (viewport, sticky notes, ...), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<Map<String, Value>>,
}

/// How a state field combines the updates written to it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Reducer {
    /// The new value replaces the old one.
    #[default]
    Replace,
    /// Lists: the update's items (or the update itself) are appended.
    Append,
    /// Objects: the update's keys are merged over the old object (shallow).
    Merge,
    /// Objects: recursive merge; nested objects are merged, other values replaced.
    DeepMerge,
    /// Numbers: the update is added.
    Add,
    /// Lists: items not already present are appended (set union, order kept).
    Union,
    /// Numbers: the larger value is kept.
    Max,
    /// Numbers: the smaller value is kept.
    Min,
    /// Chat messages: items with an `id` already present replace it, others are appended.
    Messages,
}

impl Reducer {
    /// Every reducer, for docs and error messages.
    pub const ALL: [Reducer; 9] = [
        Reducer::Replace,
        Reducer::Append,
        Reducer::Merge,
        Reducer::DeepMerge,
        Reducer::Add,
        Reducer::Union,
        Reducer::Max,
        Reducer::Min,
        Reducer::Messages,
    ];
    /// The name used in documents.
    pub fn name(self) -> &'static str {
        match self {
            Reducer::Replace => "replace",
            Reducer::Append => "append",
            Reducer::Merge => "merge",
            Reducer::DeepMerge => "deep_merge",
            Reducer::Add => "add",
            Reducer::Union => "union",
            Reducer::Max => "max",
            Reducer::Min => "min",
            Reducer::Messages => "messages",
        }
    }
}

/// One declared state field.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct StateField {
    /// How updates to this field are combined.
    #[serde(default, skip_serializing_if = "is_default")]
    pub reducer: Reducer,
    /// The initial value (null when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Optional JSON Schema type for documentation and reducer checks.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub field_type: Option<FieldType>,
    /// What the field holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The JSON type of a state field.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Any string.
    String,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// true or false.
    Boolean,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
    /// Anything.
    Any,
}

/// One step of the workflow.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique id, referenced by edges and by `results.<id>` in expressions.
    pub id: String,
    /// The node type from the catalog (`orcheo nodes`).
    #[serde(rename = "type")]
    pub node_type: String,
    /// Display name on the canvas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What this step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The node type's configuration; strings may hold `{{ expressions }}`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// Credential slots of the node type mapped to credential names in the vault.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub credentials: OrderedMap<String>,
    /// State fields to write from this node's output: field name to expression over `output`.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub assign: OrderedMap<String>,
    /// Run the node once per item of a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapSpec>,
    /// Retry policy (overrides `settings.retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Time limit for one attempt (overrides `settings.node_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// What happens when the node fails after its retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Canvas metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<NodeUi>,
}

/// Map a node over a list: one execution per item, results collected in order.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    /// Expression yielding the list, e.g. `"{{ state.items }}"`.
    pub over: String,
    /// Name of the item variable in expressions (default `item`); `index` holds its position.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub item_var: Option<String>,
    /// How many items run at once (default: `settings.max_concurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// What to do when a node fails after its last attempt.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail the run.
    #[default]
    Fail,
    /// Record the error as the node's output and continue along normal edges.
    Continue,
    /// Follow the node's error edges with the error as output.
    Route,
}

/// Canvas metadata of a node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeUi {
    /// Position on the canvas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Colour (CSS colour string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// A note shown on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Whether the node is drawn collapsed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub collapsed: bool,
    /// Width on the canvas, when resized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<serde_json::Number>,
    /// Height on the canvas, when resized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<serde_json::Number>,
}

/// A point on the canvas.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Horizontal coordinate (kept exactly as written: `100` stays `100`).
    pub x: serde_json::Number,
    /// Vertical coordinate.
    pub y: serde_json::Number,
}

/// Which situations an edge is followed in.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Followed when the source completes (subject to `branch` and `condition`).
    #[default]
    Normal,
    /// Followed when no conditional or branch edge of the source was taken.
    Else,
    /// Followed when the source fails and its `on_error` is `route`.
    Error,
    /// Followed when the source's interrupt (e.g. human approval) times out.
    Timeout,
}

/// A connection between two nodes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Optional id (the canvas sets one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Source node id, or `__start__`.
    pub source: String,
    /// Target node id, or `__end__`.
    pub target: String,
    /// When the edge is followed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: EdgeKind,
    /// Follow only when the source chose this branch (e.g. `true`/`false` of `if_else`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Follow only when this expression is truthy (sees `state`, `output`, `results`, `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Label drawn on the canvas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Canvas metadata, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<Map<String, Value>>,
}

/// Something that starts runs. Stored with the document; the server acts on it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Unique id within the workflow.
    pub id: String,
    /// `manual`, `webhook`, `cron` or `polling`.
    #[serde(rename = "type")]
    pub trigger_type: TriggerType,
    /// Type-specific settings.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// Whether the trigger is active (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The kinds of trigger.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    /// Started by hand (UI, CLI, API).
    Manual,
    /// Started by an HTTP request.
    Webhook,
    /// Started on a schedule.
    Cron,
    /// Started when a polled URL yields new items.
    Polling,
}

/// Run-wide limits and defaults.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Most supersteps a run may take (default 200); stops runaway loops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursion_limit: Option<u32>,
    /// Most nodes (and map items) running at once (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Time limit for the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout: Option<Duration>,
    /// Default time limit for one node attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_timeout: Option<Duration>,
    /// Default retry policy for every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// Default recursion limit (supersteps per run).
pub const DEFAULT_RECURSION_LIMIT: u32 = 200;
/// Default bound on concurrently running nodes.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 16;

impl Settings {
    /// The recursion limit in force.
    pub fn recursion_limit(&self) -> u32 {
        self.recursion_limit.unwrap_or(DEFAULT_RECURSION_LIMIT)
    }
    /// The concurrency bound in force.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
            .unwrap_or(DEFAULT_MAX_CONCURRENCY)
            .max(1) as usize
    }
}

/// How the wait between attempts grows.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay every time.
    Fixed,
    /// `initial_delay * multiplier^(attempt-1)`, capped by `max_delay`.
    #[default]
    Exponential,
}

/// When and how a failed node is tried again.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts including the first (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Fixed or exponential (default exponential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Delay before the second attempt (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<Duration>,
    /// Upper bound of any delay (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Duration>,
    /// Growth factor for exponential backoff (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Random spread as a fraction of the delay, 0..=1 (default 0.1): the delay is
    /// multiplied by a factor in `[1 - jitter, 1 + jitter]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    /// Error kinds that are retried (default: every error marked retryable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
    /// Error kinds that are never retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub never_retry_on: Vec<String>,
}

impl RetryPolicy {
    /// Total attempts allowed.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(3).max(1)
    }
    /// Whether an error of `kind` (retryable by default or not) may be retried.
    pub fn retries(&self, kind: &str, retryable: bool) -> bool {
        if self.never_retry_on.iter().any(|k| k == kind) {
            return false;
        }
        if self.retry_on.is_empty() {
            retryable
        } else {
            self.retry_on.iter().any(|k| k == kind)
        }
    }
    /// The delay before attempt `next_attempt` (2 for the first retry), before jitter.
    pub fn base_delay_ms(&self, next_attempt: u32) -> u64 {
        let initial = self
            .initial_delay
            .as_ref()
            .map_or(1_000, Duration::as_millis) as f64;
        let max = self.max_delay.as_ref().map_or(60_000, Duration::as_millis) as f64;
        let d = match self.backoff.unwrap_or_default() {
            Backoff::Fixed => initial,
            Backoff::Exponential => {
                let m = self.multiplier.unwrap_or(2.0).max(1.0);
                initial * m.powi(next_attempt.saturating_sub(2).min(64) as i32)
            }
        };
        d.min(max).max(0.0) as u64
    }
    /// The delay before attempt `next_attempt` with jitter drawn from `unit` (in `[0, 1)`).
    pub fn delay_ms(&self, next_attempt: u32, unit: f64) -> u64 {
        let base = self.base_delay_ms(next_attempt) as f64;
        let j = self.jitter.unwrap_or(0.1).clamp(0.0, 1.0);
        let factor = 1.0 - j + 2.0 * j * unit.clamp(0.0, 1.0);
        let max = self.max_delay.as_ref().map_or(60_000, Duration::as_millis) as f64;
        (base * factor).min(max).round().max(0.0) as u64
    }
}

impl Workflow {
    /// Parses a document from JSON text (structure only; see [`crate::validate`] for the rest).
    pub fn from_json(text: &str) -> Result<Self, serde_path_to_error::Error<serde_json::Error>> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
    }
    /// Parses a document from a JSON value.
    pub fn from_value(value: Value) -> Result<Self, serde_path_to_error::Error<serde_json::Error>> {
        serde_path_to_error::deserialize(value)
    }
    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    /// Finds a node by id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// The published JSON Schema of the workflow document.
pub fn workflow_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Workflow)).unwrap_or(Value::Null);
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$id".into(),
            Value::String("https://orcheo.dev/schema/orcheo.workflow-1.json".into()),
        );
        obj.insert(
            "title".into(),
            Value::String("Orcheo workflow document (orcheo.workflow/1)".into()),
        );
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        let p = RetryPolicy {
            initial_delay: Some(Duration::from_millis(100)),
            max_delay: Some(Duration::from_millis(1_000)),
            jitter: Some(0.0),
            ..Default::default()
        };
        assert_eq!(p.delay_ms(2, 0.5), 100);
        assert_eq!(p.delay_ms(3, 0.5), 200);
        assert_eq!(p.delay_ms(4, 0.5), 400);
        assert_eq!(p.delay_ms(9, 0.5), 1_000);
        let j = RetryPolicy {
            jitter: Some(0.5),
            initial_delay: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        assert_eq!(j.delay_ms(2, 0.0), 50);
        assert_eq!(j.delay_ms(2, 1.0), 150);
        let capped = RetryPolicy {
            jitter: Some(0.5),
            initial_delay: Some(Duration::from_millis(1000)),
            max_delay: Some(Duration::from_millis(1000)),
            ..Default::default()
        };
        assert_eq!(
            capped.delay_ms(2, 1.0),
            1000,
            "jitter never pushes a delay past max_delay"
        );
        let fixed = RetryPolicy {
            backoff: Some(Backoff::Fixed),
            jitter: Some(0.0),
            ..Default::default()
        };
        assert_eq!(fixed.delay_ms(5, 0.3), 1_000);
    }

    #[test]
    fn retry_classes() {
        let p = RetryPolicy {
            never_retry_on: vec!["fail".into()],
            ..Default::default()
        };
        assert!(p.retries("http", true));
        assert!(!p.retries("http", false));
        assert!(!p.retries("fail", true));
        let q = RetryPolicy {
            retry_on: vec!["timeout".into()],
            ..Default::default()
        };
        assert!(q.retries("timeout", false));
        assert!(!q.retries("http", true));
    }
}
