//! Flow-control nodes: delay, fail, stop, human approval (an interrupt) and sub-workflow.

use async_trait::async_trait;
use orcheo_core::duration::Duration;
use orcheo_core::node::{
    ChildOutcome, ConfigProblem, Interrupt, Node, NodeContext, NodeError, NodeOutput, NodeResult,
    NodeSpec, WorkflowRef,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Waits for a duration or until a time.
pub struct Delay;

/// Config of `delay`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    /// How long to wait, e.g. `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Wait until this RFC 3339 time instead (no wait if it has passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Output of `delay`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DelayOutput {
    /// Milliseconds waited.
    pub waited_ms: u64,
}

#[async_trait]
impl Node for Delay {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<DelayConfig, DelayOutput>(
            "delay",
            "Delay",
            "flow",
            "Pauses this branch for a duration or until a time; cancelling the run interrupts the wait.",
        )
        .icon("clock")
        .example("Wait 30 seconds", json!({ "duration": "30s" }))
        .example("Wait until a time", json!({ "until": "{{ input.send_at }}" }))
    }
    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        let has = |k: &str| config.get(k).is_some_and(|v| !v.is_null());
        match (has("duration"), has("until")) {
            (false, false) => vec![ConfigProblem {
                path: String::new(),
                message: "delay needs `duration` or `until`".into(),
                fix: "add \"duration\": \"30s\" (or an RFC 3339 `until` time)".into(),
            }],
            (true, true) => vec![ConfigProblem {
                path: String::new(),
                message: "delay has both `duration` and `until`".into(),
                fix: "keep one of them".into(),
            }],
            _ => Vec::new(),
        }
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: DelayConfig = ctx.config_as()?;
        let ms = match (c.duration, c.until) {
            (Some(d), _) => d.as_millis(),
            (None, Some(t)) => {
                let at = chrono::DateTime::parse_from_rfc3339(&t).map_err(|e| {
                    NodeError::config(format!(
                        "node `{}`: `until` {t:?} is not an RFC 3339 time: {e}",
                        ctx.node_id
                    ))
                })?;
                (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .num_milliseconds()
                    .max(0) as u64
            }
            (None, None) => {
                return Err(NodeError::config(format!(
                    "node `{}`: delay needs `duration` or `until`",
                    ctx.node_id
                )))
            }
        };
        ctx.sleep(std::time::Duration::from_millis(ms)).await?;
        Ok(NodeOutput::output(json!({ "waited_ms": ms })).into())
    }
}

/// Fails the node with a message (and so the run, unless on_error handles it).
pub struct Fail;

/// Config of `fail`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailConfig {
    /// The error message.
    pub message: String,
    /// Error kind for retry policies and routing (default `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether retry policies may retry it (default false).
    #[serde(default)]
    pub retryable: bool,
    /// Structured details attached to the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

#[async_trait]
impl Node for Fail {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<FailConfig, Value>(
            "fail",
            "Fail",
            "flow",
            "Raises an error with your message: the run fails unless the node's on_error continues or routes.",
        )
        .icon("x-octagon")
        .example("Reject bad input", json!({ "message": "order {{ input.id }} has no items", "kind": "validation" }))
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: FailConfig = ctx.config_as()?;
        let mut e = NodeError::new(c.kind.unwrap_or_else(|| "fail".into()), c.message);
        e.retryable = c.retryable;
        e.details = c.details.map(Box::new);
        Err(e)
    }
}

/// Ends the run successfully after this superstep.
pub struct Stop;

/// Config of `stop`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopConfig {
    /// Output recorded for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the run stops (kept in the output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[async_trait]
impl Node for Stop {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<StopConfig, Value>(
            "stop",
            "Stop",
            "flow",
            "Ends the whole run successfully once the current superstep finishes; pending branches are dropped.",
        )
        .icon("square")
        .example("Nothing to do", json!({ "reason": "no new items" }))
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: StopConfig = ctx.config_as()?;
        let output = match (c.output, c.reason) {
            (Some(o), _) => o,
            (None, Some(r)) => json!({ "reason": r }),
            (None, None) => Value::Null,
        };
        Ok(NodeOutput {
            output,
            stop: true,
            ..Default::default()
        }
        .into())
    }
}

/// Pauses the run until a person decides.
pub struct HumanApproval;

/// Config of `human_approval`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// What the approver is asked.
    pub message: String,
    /// The choices, which are also the branch names (default `approve`, `reject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Data shown to the approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// How long to wait before following the timeout edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Output of `human_approval`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApprovalOutput {
    /// The chosen option.
    pub decision: String,
    /// True when the first option (approve) was chosen.
    pub approved: bool,
    /// The approver's comment.
    pub comment: Option<String>,
    /// The raw resume value.
    pub value: Value,
}

fn options(config: &Map<String, Value>) -> Vec<String> {
    config
        .get("options")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec!["approve".into(), "reject".into()])
}

#[async_trait]
impl Node for HumanApproval {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<ApprovalConfig, ApprovalOutput>(
            "human_approval",
            "Human approval",
            "flow",
            "Pauses the run (status `waiting`) until someone resumes it with a decision; follows the edge whose `branch` is the decision, or the timeout edges when nobody answers in time.",
        )
        .icon("user-check")
        .interrupts()
        .branches(&["approve", "reject"])
        .example("Approve a refund", json!({ "message": "Refund {{ input.amount }} EUR to {{ input.customer }}?", "timeout": "24h" }))
        .example("Pick a plan", json!({ "message": "Which plan?", "options": ["basic", "pro", "enterprise"] }))
    }
    fn branches(&self, config: &Map<String, Value>) -> Option<Vec<String>> {
        Some(options(config))
    }
    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        let opts = options(config);
        let mut seen = std::collections::HashSet::new();
        opts.iter()
            .filter(|o| !seen.insert(o.as_str()))
            .map(|o| ConfigProblem {
                path: "/options".into(),
                message: format!("option `{o}` appears twice"),
                fix: "list each option once".into(),
            })
            .collect()
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: ApprovalConfig = ctx.config_as()?;
        let opts = c
            .options
            .clone()
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| vec!["approve".into(), "reject".into()]);
        let Some(value) = &ctx.resume else {
            return Ok(NodeResult::Interrupt(Interrupt {
                payload: json!({ "message": c.message, "options": opts, "data": c.data }),
                timeout_ms: c.timeout.as_ref().map(Duration::as_millis),
            }));
        };
        // Accepted answers: true/false, an option name, or {"decision"|"approved", "comment"}.
        let (decision, comment) = match value {
            Value::Bool(true) => (opts[0].clone(), None),
            Value::Bool(false) => (
                opts.get(1).cloned().unwrap_or_else(|| "reject".into()),
                None,
            ),
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => {
                let comment = o.get("comment").and_then(Value::as_str).map(str::to_string);
                match (
                    o.get("decision").and_then(Value::as_str),
                    o.get("approved").and_then(Value::as_bool),
                ) {
                    (Some(d), _) => (d.to_string(), comment),
                    (None, Some(true)) => (opts[0].clone(), comment),
                    (None, Some(false)) => (
                        opts.get(1).cloned().unwrap_or_else(|| "reject".into()),
                        comment,
                    ),
                    _ => return Err(bad_answer(ctx, value, &opts)),
                }
            }
            _ => return Err(bad_answer(ctx, value, &opts)),
        };
        if !opts.contains(&decision) {
            return Err(bad_answer(ctx, value, &opts));
        }
        let approved = decision == opts[0];
        Ok(NodeOutput {
            output: json!({ "decision": decision, "approved": approved, "comment": comment, "value": value }),
            branch: Some(decision),
            ..Default::default()
        }
        .into())
    }
}

fn bad_answer(ctx: &NodeContext, value: &Value, opts: &[String]) -> NodeError {
    NodeError::new(
        "input",
        format!(
            "node `{}`: {} is not a valid answer; resume with true/false, one of {:?}, or {{\"decision\": ..., \"comment\": ...}}",
            ctx.node_id, value, opts
        ),
    )
}

/// Runs another workflow as a linked child run.
pub struct SubWorkflow;

/// Config of `sub_workflow`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubWorkflowConfig {
    /// Which workflow: `{"path": "child.json"}`, `{"inline": {...}}` or `{"id": "...", "version": 3}`.
    pub workflow: WorkflowRef,
    /// The child's input (default: an empty object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// A jq program picking this node's output from the child's final state, e.g.
    /// `{score, tier}` (default: the whole state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[async_trait]
impl Node for SubWorkflow {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<SubWorkflowConfig, Value>(
            "sub_workflow",
            "Sub-workflow",
            "flow",
            "Runs another workflow as a linked child run and outputs its final state; a child that waits for input makes this node wait too. Map it over a list to run one child per item.",
        )
        .icon("workflow")
        .interrupts()
        .raw(&["workflow", "output"])
        .example("Enrich one lead", json!({ "workflow": { "path": "enrich-lead.json" }, "input": { "email": "{{ item.email }}" } }))
        .example("Keep only the score", json!({ "workflow": { "id": "enrich-lead", "version": 2 }, "input": { "email": "{{ state.email }}" }, "output": "{score}" }))
    }
    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        if let Some(Value::String(p)) = config.get("output") {
            if let Err(e) = orcheo_core::jq::check(p) {
                return vec![ConfigProblem {
                    path: "/output".into(),
                    message: format!("the output program does not compile: {e}"),
                    fix: "write a jq program over the child's final state, e.g. `{score}`".into(),
                }];
            }
        }
        match config.get("workflow").and_then(|w| w.get("inline")) {
            Some(doc) => match serde_json::from_value::<orcheo_core::Workflow>(doc.clone()) {
                Ok(_) => Vec::new(),
                Err(e) => vec![ConfigProblem {
                    path: "/workflow/inline".into(),
                    message: format!("the inline workflow is not a valid document: {e}"),
                    fix: "make it a complete orcheo.workflow/1 document".into(),
                }],
            },
            None => Vec::new(),
        }
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: SubWorkflowConfig = ctx.config_as()?;
        let input = c.input.unwrap_or_else(|| json!({}));
        match ctx.runtime.run_child(ctx, &c.workflow, input).await? {
            ChildOutcome::Completed { state, .. } => match &c.output {
                None => Ok(NodeOutput::output(state).into()),
                Some(p) => {
                    let picked = orcheo_core::jq::run_one(p, &state).map_err(|e| {
                        NodeError::new("expression", format!("node `{}`: output: {e}", ctx.node_id))
                    })?;
                    Ok(NodeOutput::output(picked).into())
                }
            },
            ChildOutcome::Waiting { run_id, interrupt } => Ok(NodeResult::Interrupt(Interrupt {
                payload: json!({ "child_run_id": run_id, "interrupt": interrupt.payload }),
                timeout_ms: interrupt.timeout_ms,
            })),
        }
    }
}
