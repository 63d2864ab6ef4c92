//! Orcheo core: the workflow document, its validation, expressions and the durable graph
//! engine. It knows nothing of HTTP or SQL; storage and nodes plug in through traits.

pub mod checkpoint;
pub mod document;
pub mod duration;
pub mod engine;
pub mod event;
pub mod expr;
pub mod graph;
pub mod jq;
pub mod node;
pub mod ordered_map;
pub mod reducer;
pub mod results;
pub mod validate;

pub use checkpoint::{Checkpoint, Checkpointer, FileCheckpointer, MemoryCheckpointer, RunStatus};
pub use document::Workflow;
pub use engine::{Engine, EngineError, ResumeTarget, RunOptions, RunOutcome};
pub use event::{Event, EventKind, EventSink};
pub use graph::CompiledWorkflow;
pub use node::{
    Catalog, CredentialSlot, CredentialValue, Credentials, Node, NodeContext, NodeError,
    NodeOutput, NodeResult, NodeSpec,
};
