//! A validated document compiled for execution: node implementations looked up, templates
//! compiled, edges indexed, reachability precomputed for fan-in.

use crate::document::{self, EdgeKind, OnError, Reducer, RetryPolicy, Workflow, END, START};
use crate::expr::{is_template, Context, ExprError, Scope, Template};
use crate::node::{Catalog, Node};
use crate::validate::{self, Problem};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A config value with its templates compiled.
#[derive(Debug, Clone)]
pub enum CompiledValue {
    /// No templates inside: cloned as is.
    Static(Value),
    /// A template string.
    Template(Template),
    /// An object with templates somewhere inside.
    Object(Vec<(String, CompiledValue)>),
    /// A list with templates somewhere inside.
    Array(Vec<CompiledValue>),
}

impl CompiledValue {
    /// Compiles every template string inside `v`.
    pub fn compile(v: &Value) -> Result<Self, ExprError> {
        Ok(match v {
            Value::String(s) if is_template(s) => CompiledValue::Template(Template::compile(s)?),
            Value::Array(a) if has_templates(v) => {
                CompiledValue::Array(a.iter().map(Self::compile).collect::<Result<_, _>>()?)
            }
            Value::Object(o) if has_templates(v) => CompiledValue::Object(
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), Self::compile(x)?)))
                    .collect::<Result<_, ExprError>>()?,
            ),
            other => CompiledValue::Static(other.clone()),
        })
    }
    /// Evaluates every template; the error names the path of the failing field.
    pub fn render(&self, scope: &Scope) -> Result<Value, (String, ExprError)> {
        match self {
            CompiledValue::Static(v) => Ok(v.clone()),
            other => other.render_in(&scope.context()),
        }
    }

    /// Evaluates every template against a prepared context.
    pub fn render_in(&self, scope: &Context) -> Result<Value, (String, ExprError)> {
        match self {
            CompiledValue::Static(v) => Ok(v.clone()),
            CompiledValue::Template(t) => t.eval_in(scope).map_err(|e| (String::new(), e)),
            CompiledValue::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.render_in(scope)
                        .map_err(|(p, e)| (format!("[{i}]{p}"), e))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            CompiledValue::Object(o) => {
                let mut m = Map::with_capacity(o.len());
                for (k, x) in o {
                    let v = x
                        .render_in(scope)
                        .map_err(|(p, e)| (format!(".{k}{p}"), e))?;
                    m.insert(k.clone(), v);
                }
                Ok(Value::Object(m))
            }
        }
    }
}

fn has_templates(v: &Value) -> bool {
    match v {
        Value::String(s) => is_template(s),
        Value::Array(a) => a.iter().any(has_templates),
        Value::Object(o) => o.values().any(has_templates),
        _ => false,
    }
}

/// An edge ready for routing.
#[derive(Debug, Clone)]
pub struct CompiledEdge {
    /// Target node index; None for `__end__`.
    pub target: Option<usize>,
    /// Edge kind.
    pub kind: EdgeKind,
    /// Required branch.
    pub branch: Option<String>,
    /// Condition.
    pub condition: Option<Template>,
    /// Index in the document's edge list (for error messages).
    pub doc_index: usize,
}

impl CompiledEdge {
    /// True when the edge only fires under a branch or condition.
    pub fn is_conditional(&self) -> bool {
        self.branch.is_some() || self.condition.is_some()
    }
}

/// How a node maps over a list.
#[derive(Debug, Clone)]
pub struct CompiledMap {
    /// The list expression.
    pub over: Template,
    /// Item variable name.
    pub var: Arc<str>,
    /// Concurrency bound for items.
    pub concurrency: usize,
}

/// A node ready to execute.
#[derive(Clone)]
pub struct CompiledNode {
    /// Node id.
    pub id: Arc<str>,
    /// Node type id.
    pub node_type: Arc<str>,
    /// The implementation.
    pub imp: Arc<dyn Node>,
    /// Config keys rendered as templates.
    pub config: Vec<(String, CompiledValue)>,
    /// State assignments from the output.
    pub assign: Vec<(String, CompiledValue)>,
    /// Map settings.
    pub map: Option<CompiledMap>,
    /// Retry policy in force.
    pub retry: Option<RetryPolicy>,
    /// Per-attempt timeout in force.
    pub timeout: Option<std::time::Duration>,
    /// Error handling.
    pub on_error: OnError,
    /// Outgoing edges in document order.
    pub edges: Vec<CompiledEdge>,
    /// True when more than one distinct source leads here (a fan-in point).
    pub is_join: bool,
    /// Credential slots mapped to credential names (the document's `credentials`).
    pub credentials: Arc<[(String, String)]>,
}

impl CompiledNode {
    /// Renders the config for one execution.
    pub fn render_config(&self, scope: &Scope) -> Result<Value, (String, ExprError)> {
        let mut m = Map::with_capacity(self.config.len());
        let mut ctx = None;
        for (k, v) in &self.config {
            let x = match v {
                CompiledValue::Static(s) => Ok(s.clone()),
                other => other.render_in(ctx.get_or_insert_with(|| scope.context())),
            }
            .map_err(|(p, e)| (format!("{k}{p}"), e))?;
            m.insert(k.clone(), x);
        }
        Ok(Value::Object(m))
    }
}

/// A workflow ready to run. Cheap to share between runs.
pub struct CompiledWorkflow {
    /// The document.
    pub doc: Workflow,
    /// Content hash of the document (stable across key order of `config`).
    pub hash: String,
    /// Directory that relative sub-workflow paths are resolved against.
    pub base_dir: Option<PathBuf>,
    /// Nodes in document order.
    pub nodes: Vec<CompiledNode>,
    /// Node index by id.
    pub index: HashMap<String, usize>,
    /// Edges leaving `__start__`.
    pub start_edges: Vec<CompiledEdge>,
    /// `reach[i]` = bitset of nodes reachable from node i by one or more edges.
    reach: Vec<Vec<u64>>,
    /// Reducer of every declared field.
    pub reducers: HashMap<String, Reducer>,
    /// Declared fields with their defaults, in declaration order.
    pub defaults: Vec<(String, Value)>,
    /// Validator for the run input.
    pub input_validator: Option<jsonschema::Validator>,
    /// Warnings found while validating.
    pub warnings: Vec<Problem>,
    /// Compiled sub-workflows by reference key.
    pub(crate) children: Mutex<HashMap<String, Arc<CompiledWorkflow>>>,
}

impl std::fmt::Debug for CompiledWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledWorkflow")
            .field("name", &self.doc.name)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl CompiledWorkflow {
    /// Validates and compiles a document.
    pub fn compile(doc: Workflow, catalog: &Catalog) -> Result<Self, Vec<Problem>> {
        let problems = validate::validate(&doc, catalog);
        if validate::has_errors(&problems) {
            return Err(problems);
        }
        let mut index = HashMap::new();
        for (i, n) in doc.nodes.iter().enumerate() {
            index.insert(n.id.clone(), i);
        }
        let compile_edge = |i: usize, e: &document::Edge| -> Result<CompiledEdge, Problem> {
            let condition = match &e.condition {
                Some(c) => Some(
                    Template::compile_condition(c)
                        .map_err(|err| internal(format!("/edges/{i}/condition"), err))?,
                ),
                None => None,
            };
            Ok(CompiledEdge {
                target: if e.target == END {
                    None
                } else {
                    index.get(&e.target).copied()
                },
                kind: e.kind,
                branch: e.branch.clone(),
                condition,
                doc_index: i,
            })
        };
        let mut out_edges: Vec<Vec<CompiledEdge>> = vec![Vec::new(); doc.nodes.len()];
        let mut start_edges = Vec::new();
        let mut sources: Vec<Vec<Option<usize>>> = vec![Vec::new(); doc.nodes.len()];
        for (i, e) in doc.edges.iter().enumerate() {
            let ce = compile_edge(i, e).map_err(|p| vec![p])?;
            let src = if e.source == START {
                None
            } else {
                index.get(&e.source).copied()
            };
            if let Some(t) = ce.target {
                if !sources[t].contains(&src) {
                    sources[t].push(src);
                }
            }
            match src {
                None => start_edges.push(ce),
                Some(s) => out_edges[s].push(ce),
            }
        }
        let n = doc.nodes.len();
        let words = n.div_ceil(64).max(1);
        let mut reach = vec![vec![0u64; words]; n];
        for (i, r) in reach.iter_mut().enumerate() {
            let mut stack: Vec<usize> = out_edges[i].iter().filter_map(|e| e.target).collect();
            while let Some(j) = stack.pop() {
                if r[j / 64] & (1 << (j % 64)) == 0 {
                    r[j / 64] |= 1 << (j % 64);
                    stack.extend(out_edges[j].iter().filter_map(|e| e.target));
                }
            }
        }
        let settings = &doc.settings;
        let mut nodes = Vec::with_capacity(n);
        for (i, (dn, edges)) in doc.nodes.iter().zip(out_edges).enumerate() {
            let imp = catalog
                .get(&dn.node_type)
                .cloned()
                .ok_or_else(|| vec![internal(format!("/nodes/{i}/type"), "unknown type")])?;
            let raw: Vec<String> = catalog
                .spec(&dn.node_type)
                .map(|s| s.raw_fields.clone())
                .unwrap_or_default();
            let mut config = Vec::with_capacity(dn.config.len());
            for (k, v) in &dn.config {
                let cv = if raw.contains(k) {
                    CompiledValue::Static(v.clone())
                } else {
                    CompiledValue::compile(v)
                        .map_err(|e| vec![internal(format!("/nodes/{i}/config/{k}"), e)])?
                };
                config.push((k.clone(), cv));
            }
            let mut assign = Vec::new();
            for (field, expr) in dn.assign.iter() {
                // `{{ expr }}` is evaluated; any other string is stored as written.
                let t = CompiledValue::compile(&Value::String(expr.clone()))
                    .map_err(|e| vec![internal(format!("/nodes/{i}/assign/{field}"), e)])?;
                assign.push((field.clone(), t));
            }
            let map = match &dn.map {
                Some(m) => Some(CompiledMap {
                    over: compile_expr(&m.over)
                        .map_err(|e| vec![internal(format!("/nodes/{i}/map/over"), e)])?,
                    var: m.item_var.as_deref().unwrap_or("item").into(),
                    concurrency: m
                        .concurrency
                        .map(|c| c.max(1) as usize)
                        .unwrap_or_else(|| settings.max_concurrency()),
                }),
                None => None,
            };
            nodes.push(CompiledNode {
                id: dn.id.as_str().into(),
                node_type: dn.node_type.as_str().into(),
                imp,
                config,
                assign,
                map,
                retry: dn.retry.clone().or_else(|| settings.retry.clone()),
                timeout: dn
                    .timeout
                    .as_ref()
                    .or(settings.node_timeout.as_ref())
                    .map(|d| d.to_std()),
                on_error: dn.on_error.unwrap_or_default(),
                edges,
                is_join: sources[i].len() > 1,
                credentials: dn
                    .credentials
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            });
        }
        let mut reducers = HashMap::new();
        let mut defaults = Vec::new();
        for (name, f) in doc.state.iter() {
            if reducers.insert(name.clone(), f.reducer).is_none() {
                defaults.push((name.clone(), f.default.clone().unwrap_or(Value::Null)));
            }
        }
        let input_validator = match &doc.input_schema {
            Some(s) => Some(
                jsonschema::validator_for(s)
                    .map_err(|e| vec![internal("/input_schema".into(), e)])?,
            ),
            None => None,
        };
        let hash = content_hash(&doc);
        Ok(Self {
            doc,
            hash,
            base_dir: None,
            nodes,
            index,
            start_edges,
            reach,
            reducers,
            defaults,
            input_validator,
            warnings: problems,
            children: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the directory for relative sub-workflow paths.
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// True when node `to` can be reached from node `from` by following edges.
    pub fn reaches(&self, from: usize, to: usize) -> bool {
        self.reach[from][to / 64] & (1 << (to % 64)) != 0
    }

    /// The reducer of a field (replace when undeclared).
    pub fn reducer(&self, field: &str) -> Reducer {
        self.reducers.get(field).copied().unwrap_or_default()
    }
}

fn compile_expr(s: &str) -> Result<Template, ExprError> {
    if is_template(s) {
        Template::compile(s)
    } else {
        Template::compile_condition(s)
    }
}

fn internal(path: String, e: impl std::fmt::Display) -> Problem {
    Problem {
        path,
        code: "compile".into(),
        message: e.to_string(),
        fix: "fix the expression".into(),
        severity: validate::Severity::Error,
    }
}

/// A document's canonical text: its JSON with object keys sorted, so equal documents give equal
/// text whatever their key order. Content hashes (here and in the server) are taken over it.
pub fn canonical_text(doc: &Workflow) -> String {
    fn canon(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    canon(&m[k], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for x in a {
                    canon(x, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canon(&doc.to_value(), &mut s);
    s
}

/// A stable content hash of a document (FNV-1a over [`canonical_text`]).
pub fn content_hash(doc: &Workflow) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in canonical_text(doc).bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}
