//! The node model: what a node type declares about itself ([`NodeSpec`]), what it receives
//! when it runs ([`NodeContext`]) and what it returns ([`NodeResult`]). The engine talks to
//! nodes only through the [`Node`] trait; the catalog holds the registered types.

use crate::event::{EventKind, LogLevel};
use crate::expr::Scope;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A node failed. `kind` classifies the error for retry policies and error routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct NodeError {
    /// Error class: `config`, `expression`, `timeout`, `fail`, `http`, `cancelled`, ...
    pub kind: String,
    /// What went wrong, for people.
    pub message: String,
    /// Whether retrying can help (policies may override by kind).
    #[serde(default)]
    pub retryable: bool,
    /// Structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<Value>>,
}

impl NodeError {
    /// A non-retryable error of `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retryable: false,
            details: None,
        }
    }
    /// A retryable error of `kind` (transient failures: network, 5xx, rate limits).
    pub fn transient(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            ..Self::new(kind, message)
        }
    }
    /// The node's configuration is wrong.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new("config", message)
    }
    /// Attaches structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }
    /// The error as a JSON object (used as output for on_error continue/route).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// What a node produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeOutput {
    /// The node's output, kept under `results.<node_id>`.
    pub output: Value,
    /// State fields to update (each combined through its reducer).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub update: Map<String, Value>,
    /// The branch the node chose (edges with a matching `branch` are followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// End the run successfully after this superstep.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop: bool,
}

impl NodeOutput {
    /// An output with no state update.
    pub fn output(output: Value) -> Self {
        Self {
            output,
            ..Default::default()
        }
    }
}

/// A node pauses the run to wait for outside input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interrupt {
    /// What the waiting party is shown (question, options, data to review).
    pub payload: Value,
    /// How long to wait before following the node's timeout edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The result of running a node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeResult {
    /// The node finished.
    Done(NodeOutput),
    /// The node waits for a value (see [`NodeContext::resume`]).
    Interrupt(Interrupt),
}

impl From<NodeOutput> for NodeResult {
    fn from(o: NodeOutput) -> Self {
        NodeResult::Done(o)
    }
}

/// An example configuration shown in the catalog and docs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeExample {
    /// What the example shows.
    pub title: String,
    /// A complete `config` object.
    pub config: Value,
}

/// A credential a node type can use: the key in a node's `credentials` map, the credential
/// types that fit it, and whether the node needs it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CredentialSlot {
    /// The slot name (`"credentials": {"<slot>": "<credential name>"}`).
    pub name: String,
    /// Credential types that fit (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Whether the node cannot run without it.
    pub required: bool,
    /// What the node uses it for.
    pub description: String,
}

/// How a node type describes itself to the catalog, the canvas, the SDK and the docs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeSpec {
    /// The id used in documents (`"type": "..."`).
    #[serde(rename = "type")]
    pub type_id: String,
    /// Display name.
    pub name: String,
    /// Palette group.
    pub category: String,
    /// What the node does, in a sentence or two.
    pub description: String,
    /// Icon name for the canvas.
    pub icon: String,
    /// JSON Schema of `config`.
    pub config_schema: Value,
    /// JSON Schema of the output.
    pub output_schema: Value,
    /// Branch names the node may choose; empty when it does not choose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// Whether the node can pause the run (then timeout edges are allowed).
    #[serde(default)]
    pub interrupts: bool,
    /// Top-level config keys passed through without template rendering (e.g. code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw_fields: Vec<String>,
    /// Example configurations.
    pub examples: Vec<NodeExample>,
    /// Credentials the node can use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialSlot>,
}

impl NodeSpec {
    /// Starts a spec whose config schema and output schema come from Rust types.
    pub fn new<C: schemars::JsonSchema, O: schemars::JsonSchema>(
        type_id: &str,
        name: &str,
        category: &str,
        description: &str,
    ) -> Self {
        Self {
            type_id: type_id.into(),
            name: name.into(),
            category: category.into(),
            description: description.into(),
            icon: type_id.into(),
            config_schema: schema_of::<C>(),
            output_schema: schema_of::<O>(),
            branches: Vec::new(),
            interrupts: false,
            raw_fields: Vec::new(),
            examples: Vec::new(),
            credentials: Vec::new(),
        }
    }
    /// Declares a credential slot.
    pub fn credential(
        mut self,
        name: &str,
        types: &[&str],
        required: bool,
        description: &str,
    ) -> Self {
        self.credentials.push(CredentialSlot {
            name: name.into(),
            types: types.iter().map(|t| t.to_string()).collect(),
            required,
            description: description.into(),
        });
        self
    }
    /// Sets the icon name.
    pub fn icon(mut self, icon: &str) -> Self {
        self.icon = icon.into();
        self
    }
    /// Adds an example.
    pub fn example(mut self, title: &str, config: Value) -> Self {
        self.examples.push(NodeExample {
            title: title.into(),
            config,
        });
        self
    }
    /// Declares fixed branch names.
    pub fn branches(mut self, names: &[&str]) -> Self {
        self.branches = names.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Marks the node as able to interrupt.
    pub fn interrupts(mut self) -> Self {
        self.interrupts = true;
        self
    }
    /// Declares config keys that are not rendered as templates.
    pub fn raw(mut self, fields: &[&str]) -> Self {
        self.raw_fields = fields.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// The JSON Schema of a Rust type, self-contained.
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let generator = settings.into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or(Value::Null)
}

/// A problem a node type finds in its own configuration beyond its JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// JSON Pointer relative to the node's `config`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// A node type. Implementations are stateless; everything per-run comes in the context.
#[async_trait]
pub trait Node: Send + Sync + 'static {
    /// Describes the node type.
    fn spec(&self) -> NodeSpec;
    /// Runs one execution.
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError>;
    /// Branch names this configuration may choose (default: the spec's fixed branches).
    fn branches(&self, _config: &Map<String, Value>) -> Option<Vec<String>> {
        None
    }
    /// Checks beyond the JSON Schema (e.g. that a jq program compiles).
    fn check(&self, _config: &Map<String, Value>) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// Which workflow a sub-workflow node runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum WorkflowRef {
    /// A document embedded in the config: `{"inline": {...}}`.
    Inline {
        /// The child document.
        inline: Box<crate::document::Workflow>,
    },
    /// A file path, relative to the parent workflow's file: `{"path": "child.json"}`.
    Path {
        /// The path.
        path: String,
    },
    /// A stored workflow by id, optionally a version (latest when absent): `{"id": "...", "version": 3}`.
    Id {
        /// Workflow id.
        id: String,
        /// Version number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
}

/// How a child run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildOutcome {
    /// The child completed with this final state.
    Completed {
        /// The child's run id.
        run_id: String,
        /// The child's final state.
        state: Value,
    },
    /// The child is waiting for input.
    Waiting {
        /// The child's run id.
        run_id: String,
        /// The child's interrupt.
        interrupt: Interrupt,
    },
}

/// Services the engine offers to nodes.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Runs (or resumes) the child run of this node execution and waits for it.
    async fn run_child(
        &self,
        ctx: &NodeContext,
        workflow: &WorkflowRef,
        input: Value,
    ) -> Result<ChildOutcome, NodeError>;
}

/// A credential as a node receives it: its type and data, secrets included. Only the node that
/// names it gets it, and only while it runs.
#[derive(Clone)]
pub struct CredentialValue {
    /// The credential's name in the vault.
    pub name: String,
    /// Its type (`bearer`, `openai`, …): tells the node how to apply it.
    pub kind: String,
    /// The version resolved.
    pub version: i64,
    /// The data, secrets included.
    pub data: Value,
}

impl std::fmt::Debug for CredentialValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialValue")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("version", &self.version)
            .field("data", &"***")
            .finish()
    }
}

/// Supplies credentials to the nodes that name them and hides their values: the engine masks
/// every node result, error and event with it, so secrets never reach state, checkpoints,
/// events or logs.
#[async_trait]
pub trait Credentials: Send + Sync {
    /// The credential named `name`, for node `node` of this run.
    async fn resolve(&self, node: &str, name: &str) -> Result<Arc<CredentialValue>, NodeError>;
    /// Replaces every secret resolved so far (and its encodings) with `***`.
    fn mask_value(&self, value: &mut Value);
    /// The same for text.
    fn mask_text(&self, text: &str) -> String;
    /// Whether any secret has been resolved (until then masking is skipped).
    fn active(&self) -> bool;
}

/// Receives a node's log lines and other events.
pub trait NodeEvents: Send + Sync {
    /// Emits an event on behalf of the node.
    fn emit(&self, kind: EventKind);
}

/// Everything a node execution sees.
pub struct NodeContext {
    /// The run.
    pub run_id: Arc<str>,
    /// The node's id in the document.
    pub node_id: Arc<str>,
    /// The node's type.
    pub node_type: Arc<str>,
    /// Superstep number.
    pub step: u32,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Map item index, when mapped.
    pub index: Option<usize>,
    /// The rendered configuration.
    pub config: Value,
    /// Expression scope: state, input, results, map item.
    pub scope: Scope,
    /// Outputs of the nodes whose edges activated this one, in document order.
    pub inputs: Arc<Vec<(String, Arc<Value>)>>,
    /// The value this execution was resumed with after an interrupt.
    pub resume: Option<Value>,
    /// Fires when the run is cancelled or times out.
    pub cancel: CancellationToken,
    /// Engine services.
    pub runtime: Arc<dyn Runtime>,
    /// Event emitter.
    pub events: Arc<dyn NodeEvents>,
    /// The run's credential provider (none in local runs without a vault).
    pub credentials: Option<Arc<dyn Credentials>>,
    /// This node's credential slots mapped to credential names.
    pub credential_slots: Arc<[(String, String)]>,
}

impl NodeContext {
    /// Deserialises the rendered config into the node's typed config struct.
    pub fn config_as<T: DeserializeOwned>(&self) -> Result<T, NodeError> {
        // Fast path; on failure decode again while tracking the path for the message.
        if let Ok(v) = T::deserialize(&self.config) {
            return Ok(v);
        }
        serde_path_to_error::deserialize(&self.config).map_err(|e| {
            let path = e.path().to_string();
            let where_ = if path == "." {
                "config".to_string()
            } else {
                format!("config.{path}")
            };
            NodeError::config(format!(
                "invalid {where_} for node `{}` ({}): {}",
                self.node_id,
                self.node_type,
                e.inner()
            ))
        })
    }
    /// The credential the node's `credentials` map names for `slot`. Fails with a
    /// `credential` error naming the slot when it is not mapped or cannot be resolved.
    pub async fn credential(&self, slot: &str) -> Result<Arc<CredentialValue>, NodeError> {
        let Some((_, name)) = self.credential_slots.iter().find(|(s, _)| s == slot) else {
            return Err(NodeError::new(
                "credential",
                format!(
                    "node `{}` needs a credential for slot `{slot}`: add \"credentials\": {{\"{slot}\": \"<credential name>\"}} to the node",
                    self.node_id
                ),
            ));
        };
        let Some(c) = &self.credentials else {
            return Err(NodeError::new(
                "credential",
                format!(
                    "node `{}` uses credential `{name}`, but this run has no vault: run it on a server (`orcheo serve`) where the credential exists",
                    self.node_id
                ),
            ));
        };
        c.resolve(&self.node_id, name).await
    }
    /// The run state as of the start of this superstep.
    pub fn state(&self) -> &Value {
        self.scope.state.as_deref().unwrap_or(&Value::Null)
    }
    /// Records a log line in the run's event stream.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.events.emit(EventKind::NodeLog {
            node: self.node_id.clone(),
            index: self.index,
            level,
            message: message.into(),
            data: None,
        });
    }
    /// Records a log line with structured data.
    pub fn log_data(&self, level: LogLevel, message: impl Into<String>, data: Value) {
        self.events.emit(EventKind::NodeLog {
            node: self.node_id.clone(),
            index: self.index,
            level,
            message: message.into(),
            data: Some(data),
        });
    }
    /// Sleeps, returning early with a `cancelled` error if the run is cancelled.
    pub async fn sleep(&self, d: std::time::Duration) -> Result<(), NodeError> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.cancel.cancelled() => Err(NodeError::new("cancelled", "the run was cancelled")),
        }
    }
}

/// The registered node types.
#[derive(Clone, Default)]
pub struct Catalog {
    nodes: HashMap<String, Arc<dyn Node>>,
    specs: HashMap<String, Arc<NodeSpec>>,
    validators: HashMap<String, Arc<jsonschema::Validator>>,
    order: Vec<String>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers a node type (a later registration of the same id replaces it).
    pub fn register(&mut self, node: impl Node) -> &mut Self {
        self.register_arc(Arc::new(node))
    }
    /// Registers a shared node type.
    pub fn register_arc(&mut self, node: Arc<dyn Node>) -> &mut Self {
        let spec = node.spec();
        let id = spec.type_id.clone();
        if let Ok(v) = jsonschema::validator_for(&spec.config_schema) {
            self.validators.insert(id.clone(), Arc::new(v));
        }
        if !self.nodes.contains_key(&id) {
            self.order.push(id.clone());
        }
        self.specs.insert(id.clone(), Arc::new(spec));
        self.nodes.insert(id, node);
        self
    }
    /// The node type with this id.
    pub fn get(&self, type_id: &str) -> Option<&Arc<dyn Node>> {
        self.nodes.get(type_id)
    }
    /// The spec of this node type.
    pub fn spec(&self, type_id: &str) -> Option<&Arc<NodeSpec>> {
        self.specs.get(type_id)
    }
    /// The config validator of this node type.
    pub fn validator(&self, type_id: &str) -> Option<&jsonschema::Validator> {
        self.validators.get(type_id).map(|v| &**v)
    }
    /// Every spec in registration order.
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.order
            .iter()
            .filter_map(|id| self.specs.get(id))
            .map(|s| (**s).clone())
            .collect()
    }
    /// Every type id in registration order.
    pub fn type_ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }
}

/// A short log level type re-exported for node authors.
pub use crate::event::LogLevel as Level;
