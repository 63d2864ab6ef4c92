//! Data and logic nodes: set variables, if/else, switch, merge, transform (jq), template text,
//! debug, no-op.

use async_trait::async_trait;
use orcheo_core::event::LogLevel;
use orcheo_core::expr::{is_template, json_truthy};
use orcheo_core::node::{
    ConfigProblem, Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Writes values into state fields.
pub struct SetVariables;

/// Config of `set_variables`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// State field name to value; values may be expressions such as `{{ state.count + 1 }}`.
    pub values: Map<String, Value>,
}

#[async_trait]
impl Node for SetVariables {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<SetConfig, Map<String, Value>>(
            "set_variables",
            "Set variables",
            "data",
            "Writes values into state fields (each combined through the field's reducer). The output is the values written.",
        )
        .icon("variable")
        .example("Count and greet", json!({ "values": { "count": "{{ state.count + 1 }}", "greeting": "Hello {{ input.name }}" } }))
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        // The common, well-formed case reads `values` directly; anything else gets the typed
        // decode and its precise error message.
        let values = match ctx.config.as_object().and_then(|c| c.get("values")) {
            Some(Value::Object(v)) if ctx.config.as_object().is_some_and(|c| c.len() == 1) => {
                v.clone()
            }
            _ => ctx.config_as::<SetConfig>()?.values,
        };
        Ok(NodeOutput {
            output: Value::Object(values.clone()),
            update: values,
            ..Default::default()
        }
        .into())
    }
}

/// Chooses the `true` or `false` branch.
pub struct IfElse;

/// Config of `if_else`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IfConfig {
    /// The condition, e.g. `{{ state.amount > 100 }}`; Jinja truthiness decides.
    pub condition: Value,
}

/// Output of `if_else`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IfOutput {
    /// The condition's truth value.
    pub result: bool,
}

fn condition_needs_braces(config: &Map<String, Value>, key: &str) -> Vec<ConfigProblem> {
    match config.get(key) {
        Some(Value::String(s)) if !is_template(s) => vec![ConfigProblem {
            path: format!("/{key}"),
            message: format!("condition {s:?} is plain text, which is always true"),
            fix: format!("wrap the expression in braces: \"{{{{ {s} }}}}\""),
        }],
        _ => Vec::new(),
    }
}

#[async_trait]
impl Node for IfElse {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<IfConfig, IfOutput>(
            "if_else",
            "If / else",
            "logic",
            "Evaluates a condition and follows the edges with `branch: \"true\"` or `branch: \"false\"`.",
        )
        .icon("git-branch")
        .branches(&["true", "false"])
        .example("Large orders", json!({ "condition": "{{ input.amount > 100 }}" }))
    }
    fn branches(&self, _config: &Map<String, Value>) -> Option<Vec<String>> {
        Some(vec!["true".into(), "false".into()])
    }
    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        condition_needs_braces(config, "condition")
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: IfConfig = ctx.config_as()?;
        let result = json_truthy(&c.condition);
        Ok(NodeOutput {
            output: json!({ "result": result }),
            branch: Some(result.to_string()),
            ..Default::default()
        }
        .into())
    }
}

/// Chooses one of several named branches.
pub struct Switch;

/// One case of a switch.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchCase {
    /// Branch name edges select with `branch`.
    pub name: String,
    /// Matches when `value` equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// Matches when this is truthy (e.g. `{{ state.score > 0.8 }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
}

/// Config of `switch`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// The value compared with each case's `equals`.
    #[serde(default)]
    pub value: Value,
    /// Cases, tried in order; the first match wins.
    pub cases: Vec<SwitchCase>,
    /// Branch taken when no case matches (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Output of `switch`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SwitchOutput {
    /// The chosen branch.
    pub branch: String,
    /// The compared value.
    pub value: Value,
}

#[async_trait]
impl Node for Switch {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<SwitchConfig, SwitchOutput>(
            "switch",
            "Switch",
            "logic",
            "Compares a value with cases in order and follows the edges whose `branch` names the first matching case (or the default branch).",
        )
        .icon("split")
        .example(
            "Route by ticket priority",
            json!({ "value": "{{ input.priority }}", "cases": [ { "name": "urgent", "equals": "high" }, { "name": "normal", "equals": "medium" } ], "default": "later" }),
        )
    }
    fn branches(&self, config: &Map<String, Value>) -> Option<Vec<String>> {
        let mut names: Vec<String> = config
            .get("cases")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.push(
            config
                .get("default")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
        );
        Some(names)
    }
    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if let Some(cases) = config.get("cases").and_then(Value::as_array) {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in cases.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if !seen.insert(name.to_string()) {
                    out.push(ConfigProblem {
                        path: format!("/cases/{i}/name"),
                        message: format!("case name `{name}` is used twice"),
                        fix: "give every case its own name".into(),
                    });
                }
                if c.get("equals").is_none() && c.get("condition").is_none() {
                    out.push(ConfigProblem { path: format!("/cases/{i}"), message: format!("case `{name}` has neither `equals` nor `condition`, so it never matches"), fix: "add `equals` or `condition`".into() });
                }
                if let Some(obj) = c.as_object() {
                    for p in condition_needs_braces(obj, "condition") {
                        out.push(ConfigProblem {
                            path: format!("/cases/{i}{}", p.path),
                            ..p
                        });
                    }
                }
            }
        }
        out
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: SwitchConfig = ctx.config_as()?;
        let chosen = c
            .cases
            .iter()
            .find(|case| {
                case.equals.as_ref().is_some_and(|e| *e == c.value)
                    || case.condition.as_ref().is_some_and(json_truthy)
            })
            .map(|case| case.name.clone())
            .unwrap_or_else(|| c.default.clone().unwrap_or_else(|| "default".into()));
        Ok(NodeOutput {
            output: json!({ "branch": chosen, "value": c.value }),
            branch: Some(chosen),
            ..Default::default()
        }
        .into())
    }
}

/// Combines the outputs of the branches that lead into it.
pub struct Merge;

/// How `merge` combines its inputs.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, Default, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// A list of the inputs; list inputs are flattened one level.
    #[default]
    Append,
    /// One object: the inputs' keys merged, later inputs winning.
    Combine,
    /// An object keyed by the id of the node each input came from.
    ByNode,
    /// The first non-null input.
    First,
    /// The last non-null input.
    Last,
}

/// Config of `merge`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// How to combine (default append).
    #[serde(default)]
    pub mode: MergeMode,
    /// Explicit inputs; by default the outputs of the nodes whose edges led here, in document order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<Value>>,
}

#[async_trait]
impl Node for Merge {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<MergeConfig, Value>(
            "merge",
            "Merge",
            "logic",
            "Waits for every branch that was started towards it and combines their outputs: append into a list, combine objects, key by node, or pick the first/last.",
        )
        .icon("merge")
        .example("Collect branch results", json!({ "mode": "append" }))
        .example("Merge two lookups", json!({ "mode": "combine", "inputs": ["{{ results.crm }}", "{{ results.billing }}"] }))
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: MergeConfig = ctx.config_as()?;
        let pairs: Vec<(String, Value)> = match c.inputs {
            Some(v) => v
                .into_iter()
                .enumerate()
                .map(|(i, x)| (i.to_string(), x))
                .collect(),
            None => ctx
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
        };
        let output = match c.mode {
            MergeMode::Append => {
                let mut out = Vec::new();
                for (_, v) in pairs {
                    match v {
                        Value::Array(a) => out.extend(a),
                        Value::Null => {}
                        other => out.push(other),
                    }
                }
                Value::Array(out)
            }
            MergeMode::Combine => {
                let mut out = Map::new();
                for (src, v) in pairs {
                    match v {
                        Value::Object(o) => out.extend(o),
                        Value::Null => {}
                        other => {
                            return Err(NodeError::new(
                                "merge",
                                format!(
                                    "combine needs objects, but the input from `{src}` is {}",
                                    orcheo_core::reducer::kind(&other)
                                ),
                            ))
                        }
                    }
                }
                Value::Object(out)
            }
            MergeMode::ByNode => Value::Object(pairs.into_iter().collect()),
            MergeMode::First => pairs
                .into_iter()
                .map(|(_, v)| v)
                .find(|v| !v.is_null())
                .unwrap_or(Value::Null),
            MergeMode::Last => pairs
                .into_iter()
                .map(|(_, v)| v)
                .rfind(|v| !v.is_null())
                .unwrap_or(Value::Null),
        };
        Ok(NodeOutput::output(output).into())
    }
}

/// Transforms JSON with a jq program.
pub struct Transform;

/// Config of `transform`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// The jq program, e.g. `[.orders[] | select(.total > 100) | .id]`.
    pub expression: String,
    /// What the program reads (default: the whole state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Collect every output into a list (default: exactly one output expected).
    #[serde(default)]
    pub all: bool,
}

#[async_trait]
impl Node for Transform {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<TransformConfig, Value>(
            "transform",
            "Transform (jq)",
            "data",
            "Runs a jq program (jaq) over the state or a chosen input and outputs the result. Use `assign` to store it in state.",
        )
        .icon("braces")
        .raw(&["expression"])
        .example("Large order ids", json!({ "expression": "[.orders[] | select(.total > 100) | .id]" }))
        .example("Reshape an API response", json!({ "expression": "{name: .user.login, repos: .user.public_repos}", "input": "{{ results.fetch }}" }))
    }
    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        match config.get("expression").and_then(Value::as_str) {
            Some(code) => match orcheo_core::jq::check(code) {
                Ok(()) => Vec::new(),
                Err(e) => vec![ConfigProblem {
                    path: "/expression".into(),
                    message: e.message,
                    fix: "fix the jq program (see the jq manual)".into(),
                }],
            },
            None => Vec::new(),
        }
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: TransformConfig = ctx.config_as()?;
        let input = c.input.unwrap_or_else(|| ctx.state().clone());
        let out = if c.all {
            orcheo_core::jq::run(&c.expression, &input).map(Value::Array)
        } else {
            orcheo_core::jq::run_one(&c.expression, &input)
        }
        .map_err(|e| {
            NodeError::new(
                "transform",
                format!("node `{}`: {}", ctx.node_id, e.message),
            )
        })?;
        Ok(NodeOutput::output(out).into())
    }
}

/// Renders a text template.
pub struct TemplateText;

/// Config of `template`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Jinja text, e.g. `Dear {{ input.name }}, ...`; `{% for %}` and filters work.
    pub template: Value,
}

/// Output of `template`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateOutput {
    /// The rendered text.
    pub text: String,
}

#[async_trait]
impl Node for TemplateText {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<TemplateConfig, TemplateOutput>(
            "template",
            "Template text",
            "data",
            "Renders a Jinja template against state, input and earlier results; outputs `{ \"text\": ... }`.",
        )
        .icon("text")
        .example(
            "Order summary",
            json!({ "template": "Order {{ input.id }}: {% for i in input.items %}{{ i.name }}{% if not loop.last %}, {% endif %}{% endfor %}" }),
        )
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: TemplateConfig = ctx.config_as()?;
        let text = match c.template {
            Value::String(s) => s,
            other => other.to_string(),
        };
        Ok(NodeOutput::output(json!({ "text": text })).into())
    }
}

/// Records a value in the run's log.
pub struct Debug;

/// Config of `debug`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    /// A message for the log line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The value to record (default: the whole state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Log level (default info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
}

#[async_trait]
impl Node for Debug {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<DebugConfig, Value>(
            "debug",
            "Debug / log",
            "utility",
            "Writes a message and a value to the run log and passes the value on as its output.",
        )
        .icon("bug")
        .example(
            "Show the state",
            json!({ "message": "state before sending" }),
        )
        .example(
            "Log a field",
            json!({ "message": "customer", "value": "{{ state.customer }}", "level": "debug" }),
        )
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: DebugConfig = ctx.config_as()?;
        let value = c.value.unwrap_or_else(|| ctx.state().clone());
        let msg = c
            .message
            .unwrap_or_else(|| format!("debug {}", ctx.node_id));
        ctx.log_data(c.level.unwrap_or(LogLevel::Info), msg, value.clone());
        Ok(NodeOutput::output(value).into())
    }
}

/// Does nothing; a junction or placeholder.
pub struct NoOp;

/// Config of `noop` (none).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoOpConfig {}

#[async_trait]
impl Node for NoOp {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<NoOpConfig, Value>(
            "noop",
            "No-op",
            "utility",
            "Does nothing and outputs null: a junction point or a placeholder while designing.",
        )
        .icon("circle")
        .example("Placeholder", json!({}))
    }
    async fn run(&self, _ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        Ok(NodeOutput::output(Value::Null).into())
    }
}
