//! Expressions: Jinja templates and conditions through `minijinja`, evaluated in a sandbox
//! (no loader, no I/O, bounded fuel, recursion and output size).
//!
//! A string whose whole content is one `{{ expr }}` yields the expression's typed JSON value;
//! any other string containing `{{`/`{%` renders to text. Templates are compiled once.

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as MjValue};
use minijinja::{Environment, Expression, UndefinedBehavior};
use serde_json::Value;
use std::sync::{Arc, LazyLock};

/// Fuel given to one evaluation: roughly the number of instructions it may execute.
pub const FUEL: u64 = 200_000;
/// Largest text a template may produce, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.add_filter(
        "fromjson",
        |s: String| -> Result<MjValue, minijinja::Error> {
            let v: Value = serde_json::from_str(&s).map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("fromjson: {e}"),
                )
            })?;
            Ok(MjValue::from(minijinja::value::Serde(&v)))
        },
    );
    env
});

/// An expression failed to parse or to evaluate.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{message}")]
pub struct ExprError {
    /// What went wrong, with the position when known.
    pub message: String,
}

impl ExprError {
    fn from_mj(e: minijinja::Error) -> Self {
        let mut message = e.to_string();
        if let Some(detail) = e.detail() {
            if !message.contains(detail) {
                message = format!("{message}: {detail}");
            }
        }
        if message.contains("fuel") {
            message.push_str(" (the expression did too much work; simplify it or move the work into a transform node)");
        }
        Self { message }
    }
}

/// True when `s` contains template syntax.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// If `s` is exactly one `{{ expr }}`, the inner expression.
fn pure_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{")
        || inner.contains("}}")
        || inner.starts_with('-')
        || inner.ends_with('-')
    {
        return None;
    }
    Some(inner.trim())
}

fn escape_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Turns `text {{ a }} more {{ b }}` into the expression `"text " ~ (a) ~ " more " ~ (b)`,
/// so it compiles to an owned expression. None when the template uses blocks or comments.
fn concat_expression(s: &str) -> Option<String> {
    if s.contains("{%") || s.contains("{#") || s.contains("{{-") || s.contains("-}}") {
        return None;
    }
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(escape_literal(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        parts.push(format!("(({}) | string)", after[..end].trim()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(escape_literal(rest));
    }
    if parts.is_empty() {
        return Some("\"\"".into());
    }
    Some(parts.join(" ~ "))
}

/// A compiled template or condition.
#[derive(Clone)]
pub struct Template {
    source: Arc<str>,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// `{{ expr }}`: the typed value.
    Typed(Arc<Expression<'static, 'static>>),
    /// Text with `{{ }}` parts: rendered to a string.
    Text(Arc<Expression<'static, 'static>>),
    /// Text with blocks: rendered through the template engine each time.
    Blocks,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl Template {
    /// Compiles a template string (which must contain template syntax).
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        let kind = if let Some(inner) = pure_expression(source) {
            if inner.is_empty() {
                return Err(ExprError { message: "empty expression `{{ }}`: put an expression between the braces, e.g. {{ state.name }}".into() });
            }
            Kind::Typed(Arc::new(
                ENV.compile_expression_owned(inner.to_string())
                    .map_err(ExprError::from_mj)?,
            ))
        } else if let Some(expr) = concat_expression(source) {
            Kind::Text(Arc::new(ENV.compile_expression_owned(expr).map_err(
                |e| {
                    // Report against the original text, not our rewrite.
                    match ENV.template_from_str(source) {
                        Err(e2) => ExprError::from_mj(e2),
                        Ok(_) => ExprError::from_mj(e),
                    }
                },
            )?))
        } else {
            ENV.template_from_str(source).map_err(ExprError::from_mj)?;
            Kind::Blocks
        };
        Ok(Self {
            source: source.into(),
            kind,
        })
    }

    /// Compiles a bare expression such as `state.count > 3` (condition syntax without braces).
    /// Strings wrapped in `{{ }}` are accepted too.
    pub fn compile_condition(source: &str) -> Result<Self, ExprError> {
        if is_template(source) {
            return Self::compile(source);
        }
        if source.trim().is_empty() {
            return Err(ExprError {
                message: "empty condition: write an expression such as {{ state.count > 3 }}"
                    .into(),
            });
        }
        let expr = ENV
            .compile_expression_owned(source.to_string())
            .map_err(ExprError::from_mj)?;
        Ok(Self {
            source: source.into(),
            kind: Kind::Typed(Arc::new(expr)),
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a JSON value (typed for `{{ expr }}`, a string otherwise).
    pub fn eval(&self, scope: &Scope) -> Result<Value, ExprError> {
        self.eval_in(&scope.context())
    }

    /// Evaluates against a context built once with [`Scope::context`] (for many templates).
    pub fn eval_in(&self, ctx: &Context) -> Result<Value, ExprError> {
        let ctx = ctx.0.clone();
        match &self.kind {
            Kind::Typed(e) => {
                let v = to_json(e.eval(ctx).map_err(ExprError::from_mj)?)?;
                check_size(text_bytes(&v))?;
                Ok(v)
            }
            Kind::Text(e) => {
                let v = e.eval(ctx).map_err(ExprError::from_mj)?;
                let s = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                check_size(s.len())?;
                Ok(Value::String(s))
            }
            Kind::Blocks => {
                let s = ENV
                    .render_str(&self.source, ctx)
                    .map_err(ExprError::from_mj)?;
                check_size(s.len())?;
                Ok(Value::String(s))
            }
        }
    }

    /// Evaluates as a condition: Jinja truthiness of the result.
    pub fn truthy(&self, scope: &Scope) -> Result<bool, ExprError> {
        let ctx = MjValue::from_object(scope.clone());
        match &self.kind {
            Kind::Typed(e) => Ok(e.eval(ctx).map_err(ExprError::from_mj)?.is_true()),
            _ => {
                let v = self.eval(scope)?;
                Ok(json_truthy(&v))
            }
        }
    }
}

/// Bytes of text inside a value (strings and keys), a cheap bound on its size.
fn text_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(text_bytes).sum::<usize>() + a.len(),
        Value::Object(o) => {
            o.iter()
                .map(|(k, v)| k.len() + text_bytes(v))
                .sum::<usize>()
                + o.len()
        }
        _ => 8,
    }
}

fn check_size(n: usize) -> Result<(), ExprError> {
    if n > MAX_OUTPUT_BYTES {
        return Err(ExprError {
            message: format!("template output is {n} bytes, over the limit of {MAX_OUTPUT_BYTES}"),
        });
    }
    Ok(())
}

/// Jinja-like truthiness of a JSON value.
pub fn json_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Converts an evaluation result to JSON, reusing the JSON behind lazy views.
fn to_json(v: MjValue) -> Result<Value, ExprError> {
    if let Some(view) = v.downcast_object_ref::<JsonView>() {
        return Ok(view.get().cloned().unwrap_or(Value::Null));
    }
    if let Some(view) = v.downcast_object_ref::<ResultsView>() {
        return Ok(view.0.to_value());
    }
    if v.is_undefined() {
        return Ok(Value::Null);
    }
    let json = serde_json::to_value(&v).map_err(|e| ExprError {
        message: format!("result is not JSON: {e}"),
    })?;
    Ok(json)
}

/// A scope turned into a template context, reusable across evaluations.
#[derive(Clone, Debug)]
pub struct Context(MjValue);

/// The variables an expression can see: `state`, `input`, `results`, `output`, the map item
/// and `index`, plus any extras a node adds.
#[derive(Clone, Default, Debug)]
pub struct Scope {
    /// The run state.
    pub state: Option<Arc<Value>>,
    /// The run input.
    pub input: Option<Arc<Value>>,
    /// Outputs of finished nodes by id.
    pub results: Option<crate::results::Results>,
    /// The current node's output (in `assign` and edge conditions).
    pub output: Option<Arc<Value>>,
    /// The map item under its variable name.
    pub item: Option<(Arc<str>, Arc<Value>)>,
    /// The map item's position.
    pub index: Option<usize>,
    /// Extra named values.
    pub extra: Vec<(Arc<str>, Arc<Value>)>,
}

impl Scope {
    /// The scope as a template context.
    pub fn context(&self) -> Context {
        Context(MjValue::from_object(self.clone()))
    }

    /// A scope with an extra named value.
    pub fn with(mut self, name: &str, value: Value) -> Self {
        self.extra.push((name.into(), Arc::new(value)));
        self
    }
}

const SCOPE_KEYS: &[&str] = &["state", "input", "results", "output", "index"];

impl Object for Scope {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let key = key.as_str()?;
        let root = |v: &Option<Arc<Value>>| v.as_ref().map(|a| JsonView::root(a.clone()));
        match key {
            "state" => root(&self.state),
            "input" => root(&self.input),
            "results" => self
                .results
                .as_ref()
                .map(|r| MjValue::from_object(ResultsView(r.clone()))),
            "output" => root(&self.output),
            "index" => self.index.map(|i| MjValue::from(i as u64)),
            _ => {
                if let Some((name, v)) = &self.item {
                    if &**name == key {
                        return Some(JsonView::root(v.clone()));
                    }
                }
                self.extra
                    .iter()
                    .find(|(n, _)| &**n == key)
                    .map(|(_, v)| JsonView::root(v.clone()))
            }
        }
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(SCOPE_KEYS)
    }
}

/// `results` in expressions: each node's output as a lazy JSON view.
#[derive(Debug)]
struct ResultsView(crate::results::Results);

impl Object for ResultsView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        self.0
            .get_shared(key.as_str()?)
            .map(|v| JsonView::root(v.clone()))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.keys().map(|k| MjValue::from(&**k)).collect())
    }
    fn is_true(self: &Arc<Self>) -> bool {
        !self.0.is_empty()
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Key(Arc<str>),
    Idx(usize),
}

/// A lazy view into a JSON value: only the parts an expression touches are converted.
#[derive(Debug)]
struct JsonView {
    root: Arc<Value>,
    path: Vec<Seg>,
}

impl JsonView {
    fn root(root: Arc<Value>) -> MjValue {
        Self::wrap(root, Vec::new())
    }
    fn wrap(root: Arc<Value>, path: Vec<Seg>) -> MjValue {
        let view = JsonView { root, path };
        match view.get() {
            Some(Value::Object(_)) | Some(Value::Array(_)) => MjValue::from_object(view),
            Some(v) => scalar(v),
            None => MjValue::UNDEFINED,
        }
    }
    fn get(&self) -> Option<&Value> {
        let mut cur = &*self.root;
        for seg in &self.path {
            cur = match (seg, cur) {
                (Seg::Key(k), Value::Object(m)) => m.get(&**k)?,
                (Seg::Idx(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }
    fn child(&self, seg: Seg, value: &Value) -> MjValue {
        // Scalars are converted at once; only containers get a (lazy) view.
        if !matches!(value, Value::Object(_) | Value::Array(_)) {
            return scalar(value);
        }
        let mut path = Vec::with_capacity(self.path.len() + 1);
        path.extend(self.path.iter().cloned());
        path.push(seg);
        MjValue::from_object(JsonView {
            root: self.root.clone(),
            path,
        })
    }
}

fn scalar(v: &Value) -> MjValue {
    match v {
        Value::Null => MjValue::from(()),
        Value::Bool(b) => MjValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                MjValue::from(i)
            } else if let Some(u) = n.as_u64() {
                MjValue::from(u)
            } else {
                MjValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => MjValue::from(s.as_str()),
        other => MjValue::from(minijinja::value::Serde(other)),
    }
}

impl Object for JsonView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.get() {
            Some(Value::Array(_)) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }
    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        match self.get()? {
            Value::Object(m) => {
                let k = key.as_str()?;
                m.get(k).map(|v| self.child(Seg::Key(k.into()), v))
            }
            Value::Array(a) => {
                let i = key.as_i64()?;
                let idx = if i < 0 { a.len() as i64 + i } else { i };
                if idx < 0 || idx as usize >= a.len() {
                    return None;
                }
                Some(self.child(Seg::Idx(idx as usize), &a[idx as usize]))
            }
            _ => None,
        }
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.get() {
            Some(Value::Object(m)) => {
                Enumerator::Values(m.keys().map(|k| MjValue::from(k.as_str())).collect())
            }
            Some(Value::Array(a)) => Enumerator::Seq(a.len()),
            _ => Enumerator::Empty,
        }
    }
    fn is_true(self: &Arc<Self>) -> bool {
        self.get().is_some_and(json_truthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(state: Value) -> Scope {
        Scope {
            state: Some(Arc::new(state)),
            ..Default::default()
        }
    }

    #[test]
    fn typed_values() {
        let s = scope(json!({"n": 2, "user": {"name": "Ada", "tags": ["a", "b"]}}));
        assert_eq!(
            Template::compile("{{ state.n + 1 }}")
                .unwrap()
                .eval(&s)
                .unwrap(),
            json!(3)
        );
        assert_eq!(
            Template::compile("{{ state.user }}")
                .unwrap()
                .eval(&s)
                .unwrap(),
            json!({"name": "Ada", "tags": ["a", "b"]})
        );
        assert_eq!(
            Template::compile("{{ state.user.tags | length }}")
                .unwrap()
                .eval(&s)
                .unwrap(),
            json!(2)
        );
        assert_eq!(
            Template::compile("{{ state.missing.deep }}")
                .unwrap()
                .eval(&s)
                .unwrap(),
            Value::Null
        );
        assert_eq!(
            Template::compile("{{ [1, 2] }}").unwrap().eval(&s).unwrap(),
            json!([1, 2])
        );
        assert_eq!(
            Template::compile("{{ state.user.tags[-1] }}")
                .unwrap()
                .eval(&s)
                .unwrap(),
            json!("b")
        );
    }

    #[test]
    fn text_templates() {
        let s = scope(json!({"name": "Ada", "items": [1, 2, 3]}));
        assert_eq!(
            Template::compile("Hi {{ state.name }}!")
                .unwrap()
                .eval(&s)
                .unwrap(),
            json!("Hi Ada!")
        );
        assert_eq!(
            Template::compile("say \"{{ state.name }}\"\n")
                .unwrap()
                .eval(&s)
                .unwrap(),
            json!("say \"Ada\"\n")
        );
        assert_eq!(
            Template::compile("{% for i in state.items %}{{ i }},{% endfor %}")
                .unwrap()
                .eval(&s)
                .unwrap(),
            json!("1,2,3,")
        );
        assert_eq!(
            Template::compile("{{ state.items }} items")
                .unwrap()
                .eval(&s)
                .unwrap(),
            json!("[1, 2, 3] items")
        );
    }

    #[test]
    fn conditions() {
        let s = scope(json!({"n": 5, "empty": []}));
        assert!(Template::compile_condition("state.n > 3")
            .unwrap()
            .truthy(&s)
            .unwrap());
        assert!(!Template::compile_condition("{{ state.empty }}")
            .unwrap()
            .truthy(&s)
            .unwrap());
        assert!(!Template::compile_condition("state.nothing")
            .unwrap()
            .truthy(&s)
            .unwrap());
    }

    #[test]
    fn parse_errors_are_reported() {
        let e = Template::compile("{{ state.n + }}").unwrap_err();
        assert!(e.message.contains("syntax error"), "{}", e.message);
        assert!(Template::compile("Hi {{ state.n + }}").is_err());
        assert!(Template::compile("{% for x in y %}").is_err());
        assert!(Template::compile("{{ }}").is_err());
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let s = scope(json!({}));
        let t = Template::compile(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        let e = t.eval(&s).unwrap_err();
        assert!(e.message.contains("fuel"), "{}", e.message);
    }

    #[test]
    fn typed_results_are_size_bounded_too() {
        let s = scope(json!({}));
        assert!(Template::compile("{{ 'x' * 5000000 }}")
            .unwrap()
            .eval(&s)
            .unwrap_err()
            .message
            .contains("over the limit"));
        assert!(Template::compile("a{{ 'x' * 5000000 }}")
            .unwrap()
            .eval(&s)
            .is_err());
    }

    #[test]
    fn no_filesystem_access() {
        let s = scope(json!({}));
        assert!(Template::compile("{% include '/etc/passwd' %}")
            .unwrap()
            .eval(&s)
            .is_err());
    }
}
