//! Validation: every problem of a document at once, each with a JSON Pointer into the
//! document, a plain-language message and a fix.

use crate::document::{self, EdgeKind, OnError, RetryPolicy, Workflow, END, START};
use crate::expr::{is_template, Template};
use crate::node::Catalog;
use crate::reducer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::LazyLock;

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The document cannot run.
    Error,
    /// The document runs but probably not as intended.
    Warning,
}

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// JSON Pointer to the offending part (`""` is the whole document).
    pub path: String,
    /// Stable machine-readable code, e.g. `edge.target.unknown`.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
    /// Error or warning.
    pub severity: Severity,
}

impl Problem {
    fn error(
        path: impl Into<String>,
        code: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            code: code.into(),
            message: message.into(),
            fix: fix.into(),
            severity: Severity::Error,
        }
    }
    fn warning(
        path: impl Into<String>,
        code: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(path, code, message, fix)
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(
            f,
            "{sev}[{}] at {path}: {}\n  fix: {}",
            self.code, self.message, self.fix
        )
    }
}

/// True when any problem is an error.
pub fn has_errors(problems: &[Problem]) -> bool {
    problems.iter().any(|p| p.severity == Severity::Error)
}

static DOC_VALIDATOR: LazyLock<Option<jsonschema::Validator>> =
    LazyLock::new(|| jsonschema::validator_for(&document::workflow_schema()).ok());

/// Parses and validates JSON text: the document, or every problem found.
pub fn validate_text(
    text: &str,
    catalog: &Catalog,
) -> Result<(Workflow, Vec<Problem>), Vec<Problem>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        vec![Problem::error(
            "",
            "json.syntax",
            format!("the file is not valid JSON: {e}"),
            "fix the JSON syntax at that line and column (a missing comma, quote or bracket is the usual cause)",
        )]
    })?;
    let structural = structural_problems(&value);
    if !structural.is_empty() {
        return Err(structural);
    }
    // Parse the text itself, not `value`: a JSON value keeps only the last of duplicate keys,
    // while the document's ordered maps keep both so that `state` declared twice is reported.
    let doc = Workflow::from_json(text).map_err(|e| vec![serde_problem(&e)])?;
    finish(doc, catalog)
}

fn serde_problem(e: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    Problem::error(
        pointer_from_serde_path(&e.path().to_string()),
        "document.structure",
        e.inner().to_string(),
        "make this part match the workflow schema (`orcheo schema` prints it)",
    )
}

/// Validates a JSON value: the parsed document plus warnings, or every problem found.
pub fn validate_value(
    value: &Value,
    catalog: &Catalog,
) -> Result<(Workflow, Vec<Problem>), Vec<Problem>> {
    let structural = structural_problems(value);
    if !structural.is_empty() {
        return Err(structural);
    }
    let doc = Workflow::from_value(value.clone()).map_err(|e| vec![serde_problem(&e)])?;
    finish(doc, catalog)
}

fn finish(doc: Workflow, catalog: &Catalog) -> Result<(Workflow, Vec<Problem>), Vec<Problem>> {
    let problems = validate(&doc, catalog);
    if has_errors(&problems) {
        Err(problems)
    } else {
        Ok((doc, problems))
    }
}

fn pointer_from_serde_path(p: &str) -> String {
    if p == "." || p.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for seg in p.split('.') {
        // serde_path_to_error writes `nodes[2].config`.
        let mut rest = seg;
        if let Some(b) = rest.find('[') {
            out.push('/');
            out.push_str(&rest[..b]);
            rest = &rest[b..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                out.push('/');
                out.push_str(&stripped[..end]);
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else {
            out.push('/');
            out.push_str(rest);
        }
    }
    out
}

/// Checks a JSON value against the published document schema and turns each violation into a
/// problem with a fix.
fn structural_problems(value: &Value) -> Vec<Problem> {
    let Some(validator) = DOC_VALIDATOR.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<Problem> = Vec::new();
    for err in validator.iter_errors(value) {
        let path = err.instance_path().as_str().to_string();
        let (code, message, fix) = describe_schema_error(&err, value, &path);
        let p = Problem::error(path, code, message, fix);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn describe_schema_error(
    err: &jsonschema::ValidationError<'_>,
    root: &Value,
    path: &str,
) -> (&'static str, String, String) {
    use jsonschema::error::ValidationErrorKind as K;
    let what = describe_location(path);
    match err.kind() {
        K::AdditionalProperties { unexpected } => {
            let allowed = allowed_fields(path, root);
            let mut fix = "remove it, or check the spelling".to_string();
            if let Some(allowed) = allowed {
                let hints: Vec<String> = unexpected
                    .iter()
                    .filter_map(|u| {
                        closest(u, allowed.iter().map(String::as_str))
                            .map(|c| format!("`{u}` → `{c}`"))
                    })
                    .collect();
                if !hints.is_empty() {
                    fix = format!("did you mean {}?", hints.join(", "));
                } else {
                    fix = format!("remove it; allowed fields here are: {}", allowed.join(", "));
                }
            }
            (
                "document.unknown_field",
                format!("{what} has unknown field(s): {}", unexpected.join(", ")),
                fix,
            )
        }
        K::Required { property } => (
            "document.missing_field",
            format!("{what} is missing the required field {property}"),
            format!("add {property}"),
        ),
        K::Type { .. } => (
            "document.type",
            format!("{what}: {err}"),
            "use a value of the expected JSON type".into(),
        ),
        K::Enum { options } => (
            "document.enum",
            format!(
                "{what}: {} is not one of the allowed values",
                instance_text(err)
            ),
            format!("use one of {options}"),
        ),
        K::Constant { expected_value } => (
            "document.format",
            format!("{what} must be {expected_value}"),
            format!("set it to {expected_value}"),
        ),
        K::OneOfNotValid { context } | K::AnyOf { context } => {
            if let Some(d) = duration_problem(err) {
                return ("document.duration", format!("{what}: {}", d.0), d.1);
            }
            match const_options(context) {
                Some(options) if path == "/format" => (
                    "document.format",
                    format!(
                        "{what} is {}, but this version of Orcheo reads only {}",
                        instance_text(err),
                        options.join(", ")
                    ),
                    format!("set it to {}", options.join(" or ")),
                ),
                Some(options) => {
                    let given = err.instance().as_str().unwrap_or("");
                    let hint = closest(given, options.iter().map(|o| o.trim_matches('"')))
                        .map(|c| format!("did you mean \"{c}\"? "))
                        .unwrap_or_default();
                    (
                        "document.enum",
                        format!(
                            "{what}: {} is not one of the allowed values",
                            instance_text(err)
                        ),
                        format!("{hint}use one of {}", options.join(", ")),
                    )
                }
                None => (
                    "document.structure",
                    format!("{what}: {err}"),
                    "make this part match the workflow schema (`orcheo schema` prints it)".into(),
                ),
            }
        }
        _ => (
            "document.structure",
            format!("{what}: {err}"),
            "make this part match the workflow schema (`orcheo schema` prints it)".into(),
        ),
    }
}

/// The allowed values when every alternative of a `oneOf`/`anyOf` is a constant (how the
/// schema spells a documented enum), skipping the `null` alternative of an optional field.
fn const_options(context: &[Vec<jsonschema::ValidationError<'static>>]) -> Option<Vec<String>> {
    use jsonschema::error::ValidationErrorKind as K;
    let mut out = Vec::new();
    for alt in context {
        if let Some(c) = alt.iter().find_map(|e| match e.kind() {
            K::Constant { expected_value } => Some(expected_value.to_string()),
            _ => None,
        }) {
            out.push(c);
            continue;
        }
        match alt.as_slice() {
            [e] => match e.kind() {
                K::OneOfNotValid { context } | K::AnyOf { context } => {
                    out.extend(const_options(context)?)
                }
                K::Type {
                    kind: jsonschema::error::TypeKind::Single(jsonschema::JsonType::Null),
                } => {}
                _ => return None,
            },
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// When a failed `oneOf`/`anyOf` is a duration, the parser's explanation and a fix.
fn duration_problem(err: &jsonschema::ValidationError<'_>) -> Option<(String, String)> {
    use jsonschema::error::ValidationErrorKind as K;
    fn mentions_duration(err: &jsonschema::ValidationError<'_>) -> bool {
        if err.schema_path().as_str().contains("/$defs/Duration/") {
            return true;
        }
        match err.kind() {
            K::OneOfNotValid { context } | K::AnyOf { context } => {
                context.iter().flatten().any(mentions_duration)
            }
            _ => false,
        }
    }
    if !mentions_duration(err) {
        return None;
    }
    let message = match err.instance().as_ref() {
        Value::String(s) => crate::duration::parse_millis(s).err()?,
        other => format!("{other} is not a duration"),
    };
    Some((
        message,
        "write a duration such as \"30s\", \"5m\", \"1h30m\", \"2d\" or \"250ms\", or a whole number of milliseconds".into(),
    ))
}

fn instance_text(err: &jsonschema::ValidationError<'_>) -> String {
    let s = err.instance().to_string();
    if s.len() > 80 {
        format!("{}…", &s[..80])
    } else {
        s
    }
}

fn describe_location(path: &str) -> String {
    if path.is_empty() {
        "the document".to_string()
    } else {
        format!("`{path}`")
    }
}

/// The fields allowed at a location, from the document types.
fn allowed_fields(path: &str, _root: &Value) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let def = match segs.as_slice() {
        [] => "Workflow",
        ["nodes", _] => "Node",
        ["nodes", _, "ui"] => "NodeUi",
        ["nodes", _, "map"] => "MapSpec",
        ["nodes", _, "retry"] | ["settings", "retry"] => "RetryPolicy",
        ["edges", _] => "Edge",
        ["triggers", _] => "Trigger",
        ["settings"] => "Settings",
        ["state", _] => "StateField",
        _ => return None,
    };
    let schema = document::workflow_schema();
    let props = if def == "Workflow" {
        schema.get("properties")
    } else {
        schema.get("$defs")?.get(def)?.get("properties")
    }?;
    Some(props.as_object()?.keys().cloned().collect())
}

/// The candidate closest to `word` by edit distance, if reasonably close.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&word.to_lowercase(), &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !id.starts_with("__")
        && id.len() <= 128
}

const RESERVED_VARS: &[&str] = &["state", "input", "results", "output", "index"];

/// Escapes one JSON Pointer segment.
pub fn esc(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

/// Validates a parsed document against the catalog. Returns every problem (errors and warnings).
pub fn validate(doc: &Workflow, catalog: &Catalog) -> Vec<Problem> {
    let mut p = Vec::new();
    if doc.name.trim().is_empty() {
        p.push(Problem::error(
            "/name",
            "document.name.empty",
            "the workflow has an empty name",
            "give it a short descriptive name",
        ));
    }
    check_state(doc, &mut p);
    check_settings(doc, &mut p);
    if let Some(schema) = &doc.input_schema {
        if let Err(e) = jsonschema::meta::validate(schema) {
            // Point at the offending keyword inside the schema, not just at input_schema.
            let at = e.instance_path().as_str().to_string();
            let message = if at.ends_with("/type") {
                format!(
                    "input_schema: {} is not a JSON Schema type",
                    instance_text(&e)
                )
            } else {
                format!("input_schema is not a valid JSON Schema: {e}")
            };
            p.push(Problem::error(
                format!("/input_schema{at}"),
                "input_schema.invalid",
                message,
                if at.ends_with("/type") {
                    "use one of \"string\", \"number\", \"integer\", \"boolean\", \"array\", \"object\", \"null\""
                } else {
                    "fix the schema (see json-schema.org), or remove it to accept any input"
                },
            ));
        } else if jsonschema::validator_for(schema).is_err() {
            p.push(Problem::error(
                "/input_schema",
                "input_schema.invalid",
                "input_schema cannot be compiled (unresolvable $ref?)",
                "use only local references inside input_schema",
            ));
        }
    }
    let mut seen_triggers = HashSet::new();
    for (i, t) in doc.triggers.iter().enumerate() {
        if !seen_triggers.insert(t.id.as_str()) {
            p.push(Problem::error(
                format!("/triggers/{i}/id"),
                "trigger.id.duplicate",
                format!("trigger id `{}` is used more than once", t.id),
                "give every trigger its own id",
            ));
        }
    }

    // Nodes.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, n) in doc.nodes.iter().enumerate() {
        let base = format!("/nodes/{i}");
        if !valid_id(&n.id) {
            p.push(Problem::error(
                format!("{base}/id"),
                "node.id.invalid",
                format!("node id `{}` is not a valid id", n.id),
                "use letters, digits, `_` and `-`, starting with a letter (ids starting with `__` are reserved)",
            ));
        }
        if let Some(first) = ids.insert(&n.id, i) {
            ids.insert(&n.id, first);
            p.push(Problem::error(
                format!("{base}/id"),
                "node.id.duplicate",
                format!("node id `{}` is already used by /nodes/{first}", n.id),
                "give every node its own id",
            ));
        }
        check_node(n, &base, catalog, doc.settings.max_concurrency, &mut p);
    }

    // Edges.
    let node_ids: Vec<&str> = doc.nodes.iter().map(|n| n.id.as_str()).collect();
    let mut seen_edges: HashMap<String, usize> = HashMap::new();
    let mut else_count: HashMap<&str, usize> = HashMap::new();
    for (i, e) in doc.edges.iter().enumerate() {
        let base = format!("/edges/{i}");
        let src_ok = e.source == START || ids.contains_key(e.source.as_str());
        let dst_ok = e.target == END || ids.contains_key(e.target.as_str());
        if e.source == END {
            p.push(Problem::error(
                format!("{base}/source"),
                "edge.source.end",
                "an edge cannot leave `__end__`",
                "start the edge at a node or at `__start__`",
            ));
        } else if !src_ok {
            let hint = closest(&e.source, node_ids.iter().copied())
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            p.push(Problem::error(
                format!("{base}/source"),
                "edge.source.unknown",
                format!("edge source `{}` is not a node", e.source),
                format!("{hint}use an existing node id or `__start__`"),
            ));
        }
        if e.target == START {
            p.push(Problem::error(
                format!("{base}/target"),
                "edge.target.start",
                "an edge cannot point at `__start__`",
                "point it at a node or at `__end__`",
            ));
        } else if !dst_ok {
            let hint = closest(&e.target, node_ids.iter().copied())
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            p.push(Problem::error(
                format!("{base}/target"),
                "edge.target.unknown",
                format!("edge target `{}` is not a node", e.target),
                format!("{hint}use an existing node id or `__end__`"),
            ));
        }
        let key = format!(
            "{}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{:?}",
            e.source, e.target, e.kind, e.branch, e.condition
        );
        if let Some(first) = seen_edges.insert(key, i) {
            p.push(Problem::error(
                base.clone(),
                "edge.duplicate",
                format!(
                    "this edge repeats /edges/{first} ({} → {})",
                    e.source, e.target
                ),
                "delete one of the two edges",
            ));
        }
        if let Some(c) = &e.condition {
            if let Err(err) = Template::compile_condition(c) {
                p.push(Problem::error(
                    format!("{base}/condition"),
                    "expression.syntax",
                    format!("edge condition does not parse: {}", err.message),
                    "fix the expression, e.g. {{ state.count > 3 }}",
                ));
            }
            if e.kind != EdgeKind::Normal {
                p.push(Problem::error(
                    format!("{base}/condition"),
                    "edge.condition.kind",
                    format!("{:?} edges cannot have a condition", e.kind).to_lowercase(),
                    "remove the condition, or make it a normal edge",
                ));
            }
        }
        if e.branch.is_some() && e.kind != EdgeKind::Normal {
            p.push(Problem::error(
                format!("{base}/branch"),
                "edge.branch.kind",
                "only normal edges can select a branch",
                "remove `branch` or set `kind` to normal",
            ));
        }
        if e.source == START && matches!(e.kind, EdgeKind::Error | EdgeKind::Timeout) {
            p.push(Problem::error(
                format!("{base}/kind"),
                "edge.kind.start",
                "edges from `__start__` cannot be error or timeout edges",
                "use a normal edge",
            ));
        }
        if e.kind == EdgeKind::Else {
            *else_count.entry(e.source.as_str()).or_default() += 1;
            if else_count[e.source.as_str()] == 2 {
                p.push(Problem::error(
                    base.clone(),
                    "edge.else.multiple",
                    format!("node `{}` has more than one else edge", e.source),
                    "keep one else edge per source",
                ));
            }
            let has_conditional = doc.edges.iter().any(|o| {
                o.source == e.source
                    && o.kind == EdgeKind::Normal
                    && (o.condition.is_some() || o.branch.is_some())
            });
            if !has_conditional {
                p.push(Problem::error(base.clone(), "edge.else.pointless", format!("else edge from `{}` but the node has no conditional or branch edges", e.source), "add a condition or branch to another edge from this node, or make this a normal edge"));
            }
        }
        if let (Some(&si), true) = (ids.get(e.source.as_str()), e.source != START) {
            let src = &doc.nodes[si];
            let spec = catalog.spec(&src.node_type);
            match e.kind {
                EdgeKind::Error if src.on_error != Some(OnError::Route) => p.push(Problem::error(
                    format!("{base}/kind"),
                    "edge.error.unused",
                    format!(
                        "error edge from `{}` never fires because its on_error is not `route`",
                        e.source
                    ),
                    format!("set \"on_error\": \"route\" on node `{}`", e.source),
                )),
                EdgeKind::Timeout if spec.is_some_and(|s| !s.interrupts) => p.push(Problem::error(
                    format!("{base}/kind"),
                    "edge.timeout.unused",
                    format!(
                        "timeout edge from `{}` never fires: a `{}` node never waits for input",
                        e.source, src.node_type
                    ),
                    "remove the edge, or start it at a node that waits (e.g. human_approval)",
                )),
                _ => {}
            }
            if let (Some(b), Some(node)) = (&e.branch, catalog.get(&src.node_type)) {
                let branches = node
                    .branches(&src.config)
                    .or_else(|| spec.map(|s| s.branches.clone()).filter(|b| !b.is_empty()));
                match branches {
                    None => p.push(Problem::error(
                        format!("{base}/branch"),
                        "edge.branch.unsupported",
                        format!(
                            "`{}` is a `{}` node, which does not choose branches",
                            e.source, src.node_type
                        ),
                        "remove `branch`; use `condition` to route on its output",
                    )),
                    Some(bs) if !bs.contains(b) => p.push(Problem::error(
                        format!("{base}/branch"),
                        "edge.branch.unknown",
                        format!("node `{}` has no branch `{b}`", e.source),
                        format!("use one of: {}", bs.join(", ")),
                    )),
                    _ => {}
                }
            }
        }
    }
    for (i, n) in doc.nodes.iter().enumerate() {
        if n.on_error == Some(OnError::Route)
            && !doc
                .edges
                .iter()
                .any(|e| e.source == n.id && e.kind == EdgeKind::Error)
        {
            p.push(Problem::error(
                format!("/nodes/{i}/on_error"),
                "node.on_error.no_route",
                format!("node `{}` routes errors but has no error edge", n.id),
                "add an edge with \"kind\": \"error\" from this node, or set on_error to fail or continue",
            ));
        }
    }
    check_graph(doc, &ids, &mut p);
    p
}

fn check_state(doc: &Workflow, p: &mut Vec<Problem>) {
    let mut seen: HashMap<&str, (usize, document::Reducer)> = HashMap::new();
    for (i, (name, f)) in doc.state.iter().enumerate() {
        let base = format!("/state/{}", esc(name));
        if !valid_id(name) {
            p.push(Problem::error(
                base.clone(),
                "state.name.invalid",
                format!("state field name `{name}` is not valid"),
                "use letters, digits, `_` and `-`, starting with a letter",
            ));
        }
        if let Some((_, r)) = seen.get(name.as_str()) {
            if *r != f.reducer {
                p.push(Problem::error(
                    base.clone(),
                    "state.reducer.conflict",
                    format!("state field `{name}` is declared twice with different reducers ({} and {})", r.name(), f.reducer.name()),
                    "declare the field once with the reducer you want",
                ));
            } else {
                p.push(Problem::error(
                    base.clone(),
                    "state.duplicate",
                    format!("state field `{name}` is declared twice"),
                    "remove the second declaration",
                ));
            }
        } else {
            seen.insert(name, (i, f.reducer));
        }
        if let Some(t) = f.field_type {
            if let Err(e) = reducer::compatible(f.reducer, t) {
                p.push(Problem::error(
                    format!("{base}/reducer"),
                    "state.reducer.type",
                    format!("field `{name}`: {e}"),
                    "pick a reducer that fits the type, or change the type",
                ));
            }
        }
        if let Some(d) = &f.default {
            if let Err(e) = reducer::default_fits(f.reducer, d) {
                p.push(Problem::error(
                    format!("{base}/default"),
                    "state.default.type",
                    format!("field `{name}`: {e}"),
                    "change the default to fit the reducer",
                ));
            }
        }
    }
}

fn check_retry(r: &RetryPolicy, base: &str, p: &mut Vec<Problem>) {
    if r.max_attempts == Some(0) {
        p.push(Problem::error(
            format!("{base}/max_attempts"),
            "retry.max_attempts",
            "max_attempts is 0, so the node would never run",
            "use 1 for no retries, or more",
        ));
    }
    if let Some(j) = r.jitter {
        if !(0.0..=1.0).contains(&j) {
            p.push(Problem::error(
                format!("{base}/jitter"),
                "retry.jitter",
                format!("jitter {j} is outside 0..=1"),
                "use a fraction such as 0.1",
            ));
        }
    }
    if let Some(m) = r.multiplier {
        if m < 1.0 || !m.is_finite() {
            p.push(Problem::error(
                format!("{base}/multiplier"),
                "retry.multiplier",
                format!("multiplier {m} would shrink the delay"),
                "use 1 or more (2 doubles each delay)",
            ));
        }
    }
    for k in &r.retry_on {
        if r.never_retry_on.contains(k) {
            p.push(Problem::error(
                base.to_string(),
                "retry.conflict",
                format!("error kind `{k}` is both in retry_on and never_retry_on"),
                "keep it in one list",
            ));
        }
    }
}

fn check_settings(doc: &Workflow, p: &mut Vec<Problem>) {
    let s = &doc.settings;
    if s.recursion_limit == Some(0) {
        p.push(Problem::error(
            "/settings/recursion_limit",
            "settings.recursion_limit",
            "recursion_limit is 0, so no step could run",
            "use a positive number (default 200)",
        ));
    }
    if s.max_concurrency == Some(0) {
        p.push(Problem::error(
            "/settings/max_concurrency",
            "settings.max_concurrency",
            "max_concurrency is 0, so no node could run",
            "use a positive number (default 16)",
        ));
    }
    if let Some(r) = &s.retry {
        check_retry(r, "/settings/retry", p);
    }
}

fn check_node(
    n: &document::Node,
    base: &str,
    catalog: &Catalog,
    doc_max_concurrency: Option<u32>,
    p: &mut Vec<Problem>,
) {
    let Some(node_type) = catalog.get(&n.node_type) else {
        let hint = closest(&n.node_type, catalog.type_ids())
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        p.push(Problem::error(
            format!("{base}/type"),
            "node.type.unknown",
            format!("unknown node type `{}`", n.node_type),
            format!("{hint}run `orcheo nodes` to list the available types"),
        ));
        return;
    };
    let spec = catalog.spec(&n.node_type);
    if let Some(spec) = spec {
        let slots: Vec<&str> = spec.credentials.iter().map(|c| c.name.as_str()).collect();
        for (slot, _) in n.credentials.iter() {
            if !slots.contains(&slot.as_str()) {
                p.push(Problem::error(
                    format!("{base}/credentials/{slot}"),
                    "node.credentials.unknown_slot",
                    format!(
                        "node `{}` ({}) has no credential slot `{slot}`",
                        n.id, n.node_type
                    ),
                    if slots.is_empty() {
                        format!("remove it: `{}` uses no credentials", n.node_type)
                    } else {
                        format!("use one of: {}", slots.join(", "))
                    },
                ));
            }
        }
        for c in spec.credentials.iter().filter(|c| c.required) {
            if n.credentials.get(&c.name).is_none() {
                p.push(Problem::error(
                    format!("{base}/credentials"),
                    "node.credentials.missing",
                    format!(
                        "node `{}` ({}) needs a credential in slot `{}`",
                        n.id, n.node_type, c.name
                    ),
                    format!(
                        "add \"credentials\": {{\"{}\": \"<credential name>\"}}",
                        c.name
                    ),
                ));
            }
        }
    }
    let raw: &[String] = spec.map(|s| s.raw_fields.as_slice()).unwrap_or(&[]);
    let config = Value::Object(n.config.clone());
    if let Some(v) = catalog.validator(&n.node_type) {
        for err in v.iter_errors(&config) {
            let path = err.instance_path().as_str().to_string();
            // Template strings are typed at run time; only raw fields are checked as written.
            let top = path.split('/').nth(1).unwrap_or("");
            if let Some(Value::String(s)) = config.pointer(&path) {
                if is_template(s) && !raw.iter().any(|r| r == top) {
                    continue;
                }
            }
            let duration = duration_problem(&err);
            let (code, message, fix) = match err.kind() {
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let allowed: Vec<String> = spec
                        .and_then(|s| s.config_schema.get("properties"))
                        .and_then(Value::as_object)
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default();
                    let fix = unexpected
                        .iter()
                        .find_map(|u| {
                            closest(u, allowed.iter().map(String::as_str))
                                .map(|c| format!("did you mean `{c}`?"))
                        })
                        .unwrap_or_else(|| {
                            format!(
                                "remove it; `{}` accepts: {}",
                                n.node_type,
                                allowed.join(", ")
                            )
                        });
                    (
                        "node.config.unknown_field",
                        format!(
                            "node `{}`: unknown config field(s) {}",
                            n.id,
                            unexpected.join(", ")
                        ),
                        fix,
                    )
                }
                jsonschema::error::ValidationErrorKind::Required { property } => (
                    "node.config.missing",
                    format!(
                        "node `{}` ({}) needs config field {property}",
                        n.id, n.node_type
                    ),
                    format!("add {property} to config (see `orcheo nodes` for the schema)"),
                ),
                _ if duration.is_some() => {
                    let (message, fix) = duration.unwrap_or_default();
                    (
                        "node.config.invalid",
                        format!("node `{}`: config at {path}: {message}", n.id),
                        fix,
                    )
                }
                _ => (
                    "node.config.invalid",
                    format!(
                        "node `{}`: config{} {}",
                        n.id,
                        if path.is_empty() {
                            String::new()
                        } else {
                            format!(" at {path}")
                        },
                        err
                    ),
                    format!(
                        "fix the value to match the `{}` config schema (see `orcheo nodes`)",
                        n.node_type
                    ),
                ),
            };
            p.push(Problem::error(
                format!("{base}/config{path}"),
                code,
                message,
                fix,
            ));
        }
    }
    for cp in node_type.check(&n.config) {
        p.push(Problem::error(
            format!("{base}/config{}", cp.path),
            "node.config.invalid",
            format!("node `{}`: {}", n.id, cp.message),
            cp.fix,
        ));
    }
    for (key, v) in &n.config {
        if raw.iter().any(|r| r == key) {
            continue;
        }
        check_templates(v, &format!("{base}/config/{}", esc(key)), &n.id, p);
    }
    for (field, expr) in n.assign.iter() {
        if !is_template(expr) {
            continue; // a literal value
        }
        if let Err(e) = compile_any(expr) {
            p.push(Problem::error(
                format!("{base}/assign/{}", esc(field)),
                "expression.syntax",
                format!(
                    "node `{}`: assign expression for `{field}` does not parse: {}",
                    n.id, e
                ),
                "fix the expression, e.g. {{ output.text }}",
            ));
        }
    }
    if let Some(m) = &n.map {
        if !is_template(&m.over) {
            p.push(Problem::error(
                format!("{base}/map/over"),
                "node.map.over",
                format!(
                    "node `{}`: map.over {:?} is plain text, not an expression",
                    n.id, m.over
                ),
                format!("wrap it in braces: \"{{{{ {} }}}}\"", m.over),
            ));
        } else if let Err(e) = compile_any(&m.over) {
            p.push(Problem::error(
                format!("{base}/map/over"),
                "expression.syntax",
                format!("node `{}`: map.over does not parse: {}", n.id, e),
                "write an expression yielding a list, e.g. {{ state.items }}",
            ));
        }
        if let Some(v) = &m.item_var {
            if RESERVED_VARS.contains(&v.as_str()) || !valid_id(v) {
                p.push(Problem::error(
                    format!("{base}/map/as"),
                    "node.map.as",
                    format!("`{v}` cannot name the map item"),
                    format!("use another name; {} are taken", RESERVED_VARS.join(", ")),
                ));
            }
        }
        if let Some(c) = m.concurrency {
            let max = doc_max_concurrency.unwrap_or(crate::document::DEFAULT_MAX_CONCURRENCY);
            if c > max {
                p.push(Problem::warning(format!("{base}/map/concurrency"), "node.map.concurrency_capped", format!("map concurrency {c} is above settings.max_concurrency {max}, which bounds it"), "raise settings.max_concurrency or lower the map concurrency"));
            }
        }
        if m.concurrency == Some(0) {
            p.push(Problem::error(
                format!("{base}/map/concurrency"),
                "node.map.concurrency",
                "map concurrency is 0, so no item could run",
                "use a positive number",
            ));
        }
    }
    if let Some(r) = &n.retry {
        check_retry(r, &format!("{base}/retry"), p);
    }
}

/// Compiles `{{ expr }}`/text templates, or a bare expression.
fn compile_any(s: &str) -> Result<Template, String> {
    if is_template(s) {
        Template::compile(s)
    } else {
        Template::compile_condition(s)
    }
    .map_err(|e| e.message)
}

fn check_templates(v: &Value, path: &str, node: &str, p: &mut Vec<Problem>) {
    match v {
        Value::String(s) if is_template(s) => {
            if let Err(e) = Template::compile(s) {
                p.push(Problem::error(
                    path,
                    "expression.syntax",
                    format!("node `{node}`: expression does not parse: {}", e.message),
                    "fix the template; expressions look like {{ state.name }}",
                ));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_templates(x, &format!("{path}/{i}"), node, p);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                check_templates(x, &format!("{path}/{}", esc(k)), node, p);
            }
        }
        _ => {}
    }
}

/// Graph checks: entry point, reachability, ways to finish.
fn check_graph(doc: &Workflow, ids: &HashMap<&str, usize>, p: &mut Vec<Problem>) {
    if doc.nodes.is_empty() {
        p.push(Problem::error(
            "/nodes",
            "graph.empty",
            "the workflow has no nodes",
            "add at least one node and an edge from `__start__` to it",
        ));
        return;
    }
    let n = doc.nodes.len();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut entries = Vec::new();
    for e in &doc.edges {
        let Some(&t) = ids.get(e.target.as_str()) else {
            continue;
        };
        if e.source == START {
            entries.push(t);
        } else if let Some(&s) = ids.get(e.source.as_str()) {
            out[s].push(t);
        }
    }
    if entries.is_empty() {
        p.push(Problem::error(
            "/edges",
            "graph.entry.missing",
            "no edge leaves `__start__`, so nothing would run",
            format!(
                "add {{\"source\": \"__start__\", \"target\": \"{}\"}}",
                doc.nodes[0].id
            ),
        ));
        return;
    }
    let mut reached = vec![false; n];
    let mut queue: VecDeque<usize> = entries.iter().copied().collect();
    for &e in &entries {
        reached[e] = true;
    }
    while let Some(i) = queue.pop_front() {
        for &t in &out[i] {
            if !reached[t] {
                reached[t] = true;
                queue.push_back(t);
            }
        }
    }
    for (i, node) in doc.nodes.iter().enumerate() {
        // A second node with a taken id is already reported as a duplicate.
        if !reached[i] && ids.get(node.id.as_str()) == Some(&i) {
            p.push(Problem::error(
                format!("/nodes/{i}"),
                "node.unreachable",
                format!(
                    "node `{}` is unreachable: no path from `__start__` leads to it",
                    node.id
                ),
                "connect it with an edge from a reachable node, or delete it",
            ));
        }
    }
    // A node can end its branch when it has no normal/else edges, points at __end__, or has
    // only conditional edges (none may match).
    let mut can_finish = vec![false; n];
    for (i, node) in doc.nodes.iter().enumerate() {
        let normal: Vec<&document::Edge> = doc
            .edges
            .iter()
            .filter(|e| e.source == node.id && matches!(e.kind, EdgeKind::Normal | EdgeKind::Else))
            // Edges to unknown targets are reported already; they must not count as loops.
            .filter(|e| e.target == END || ids.contains_key(e.target.as_str()))
            .collect();
        let unconditional = normal
            .iter()
            .any(|e| e.kind == EdgeKind::Normal && e.condition.is_none() && e.branch.is_none());
        let has_else = normal.iter().any(|e| e.kind == EdgeKind::Else);
        can_finish[i] = normal.is_empty()
            || normal.iter().any(|e| e.target == END)
            || (!unconditional && !has_else);
    }
    let mut rev: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (s, ts) in out.iter().enumerate() {
        for &t in ts {
            rev[t].push(s);
        }
    }
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| can_finish[i]).collect();
    while let Some(i) = queue.pop_front() {
        for &s in &rev[i] {
            if !can_finish[s] {
                can_finish[s] = true;
                queue.push_back(s);
            }
        }
    }
    for (i, node) in doc.nodes.iter().enumerate() {
        if reached[i] && !can_finish[i] {
            p.push(Problem::error(
                format!("/nodes/{i}"),
                "node.no_finish",
                format!(
                    "node `{}` has no way to finish: every path from it loops back without an exit",
                    node.id
                ),
                "give the loop an exit: a condition on the back edge, or an edge to `__end__`",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_conversion() {
        assert_eq!(
            pointer_from_serde_path("nodes[2].config"),
            "/nodes/2/config"
        );
        assert_eq!(pointer_from_serde_path("."), "");
        assert_eq!(pointer_from_serde_path("settings.retry"), "/settings/retry");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            closest("trasform", ["transform", "template"].into_iter()),
            Some("transform")
        );
        assert_eq!(closest("zzzzzz", ["transform"].into_iter()), None);
    }
}
