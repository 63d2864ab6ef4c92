//! `data_transform`: a pipeline of list operations (filter, map, sort, group, aggregate, dedupe,
//! limit) whose per-item logic is written as small jq programs.

use async_trait::async_trait;
use orcheo_core::jq;
use orcheo_core::node::{
    ConfigProblem, Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Number, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Transforms a list step by step.
pub struct DataTransform;

/// Keep the items for which the jq program is true (anything but `false` and `null`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterStep {
    /// jq program run on each item, e.g. `.price > 10`.
    pub filter: String,
}

/// Replace each item with the jq program's result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapStep {
    /// jq program run on each item, e.g. `{name, total: (.qty * .price)}`.
    pub map: String,
}

/// Sort the items by a key (stable; null keys last).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SortStep {
    /// jq program giving each item's key, e.g. `.created_at`; keys must be all numbers or all strings.
    pub sort: String,
    /// Largest first (default false).
    #[serde(default)]
    pub descending: bool,
}

/// Group the items by a key into `{key, items}` objects, in order of first appearance.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupByStep {
    /// jq program giving each item's group key, e.g. `.region`.
    pub group_by: String,
}

/// Aggregate the items into one object (or each group, right after `group_by`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateStep {
    /// Output field name to aggregation.
    pub aggregate: Map<String, Value>,
}

/// One aggregation of `aggregate`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    /// The operation.
    pub op: AggregateOp,
    /// jq program giving the value of each item (default: the item itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    /// For `concat`: join the values as text with this separator instead of collecting a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
}

/// An aggregation operation.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AggregateOp {
    /// Sum of numbers (nulls skipped).
    Sum,
    /// Mean of numbers (nulls skipped; null when there are none).
    Avg,
    /// Smallest number or string.
    Min,
    /// Largest number or string.
    Max,
    /// Number of items (with `of`: items whose value is not null).
    Count,
    /// Value of the first item.
    First,
    /// Value of the last item.
    Last,
    /// The values in one list (lists flattened), or joined text with `separator`.
    Concat,
}

/// Keep the first item of each key.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeStep {
    /// jq program giving each item's key, e.g. `.email | ascii_downcase`.
    pub dedupe: String,
}

/// Skip `offset` items, then keep at most `limit`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitStep {
    /// Most items kept.
    pub limit: usize,
    /// Items skipped first (default 0).
    #[serde(default)]
    pub offset: usize,
}

/// One step of `data_transform`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Operation {
    /// `{"filter": "<jq>"}`.
    Filter(FilterStep),
    /// `{"map": "<jq>"}`.
    Map(MapStep),
    /// `{"sort": "<jq key>", "descending": false}`.
    Sort(SortStep),
    /// `{"group_by": "<jq key>"}`.
    GroupBy(GroupByStep),
    /// `{"aggregate": {"field": {"op": "sum", "of": "<jq>"}}}`.
    Aggregate(AggregateStep),
    /// `{"dedupe": "<jq key>"}`.
    Dedupe(DedupeStep),
    /// `{"limit": 10, "offset": 0}`.
    Limit(LimitStep),
}

/// Config of `data_transform`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataTransformConfig {
    /// The list to transform, usually `{{ state.orders }}`.
    pub items: Value,
    /// Steps applied in order (their jq programs are not rendered as templates).
    pub operations: Vec<Operation>,
}

/// Output of `data_transform` (unless it ends with an `aggregate` over the whole list, which
/// outputs the aggregate object).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DataTransformOutput {
    /// The resulting items.
    pub items: Vec<Value>,
    /// How many there are.
    pub count: usize,
}

/// A step decoded, with the name used in messages.
enum Step {
    Filter(String),
    Map(String),
    Sort(String, bool),
    GroupBy(String),
    Aggregate(Vec<(String, Aggregation)>),
    Dedupe(String),
    Limit(usize, usize),
}

const STEP_KEYS: &[&str] = &[
    "filter",
    "map",
    "sort",
    "group_by",
    "aggregate",
    "dedupe",
    "limit",
];

fn decode<T: DeserializeOwned>(i: usize, name: &str, v: &Value) -> Result<T, String> {
    T::deserialize(v).map_err(|e| format!("operations[{i}] ({name}): {e}"))
}

/// Decodes step `i` and checks its jq programs compile.
fn parse_step(i: usize, v: &Value) -> Result<Step, String> {
    let Some(obj) = v.as_object() else {
        return Err(format!(
            "operations[{i}] is {}, not an object such as {{\"filter\": \".price > 10\"}}",
            orcheo_core::reducer::kind(v)
        ));
    };
    let keys: Vec<&str> = STEP_KEYS
        .iter()
        .copied()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let name = match keys.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "operations[{i}] names no operation; use one of: {}",
                STEP_KEYS.join(", ")
            ))
        }
        many => {
            return Err(format!(
                "operations[{i}] names several operations ({}); put each in its own step",
                many.join(", ")
            ))
        }
    };
    let step = match name {
        "filter" => Step::Filter(decode::<FilterStep>(i, name, v)?.filter),
        "map" => Step::Map(decode::<MapStep>(i, name, v)?.map),
        "sort" => {
            let s: SortStep = decode(i, name, v)?;
            Step::Sort(s.sort, s.descending)
        }
        "group_by" => Step::GroupBy(decode::<GroupByStep>(i, name, v)?.group_by),
        "aggregate" => {
            let a: AggregateStep = decode(i, name, v)?;
            if a.aggregate.is_empty() {
                return Err(format!("operations[{i}] (aggregate) lists no fields"));
            }
            let mut fields = Vec::new();
            for (field, spec) in a.aggregate {
                let agg: Aggregation = Aggregation::deserialize(&spec)
                    .map_err(|e| format!("operations[{i}] (aggregate) field `{field}`: {e}"))?;
                if let Some(of) = &agg.of {
                    jq::check(of).map_err(|e| {
                        format!("operations[{i}] (aggregate) field `{field}`: {}", e.message)
                    })?;
                }
                fields.push((field, agg));
            }
            Step::Aggregate(fields)
        }
        "dedupe" => Step::Dedupe(decode::<DedupeStep>(i, name, v)?.dedupe),
        _ => {
            let l: LimitStep = decode(i, name, v)?;
            Step::Limit(l.limit, l.offset)
        }
    };
    let program = match &step {
        Step::Filter(p) | Step::Map(p) | Step::Sort(p, _) | Step::GroupBy(p) | Step::Dedupe(p) => {
            Some(p)
        }
        _ => None,
    };
    if let Some(p) = program {
        jq::check(p).map_err(|e| format!("operations[{i}] ({name}): {}", e.message))?;
    }
    Ok(step)
}

fn step_name(s: &Step) -> &'static str {
    match s {
        Step::Filter(_) => "filter",
        Step::Map(_) => "map",
        Step::Sort(..) => "sort",
        Step::GroupBy(_) => "group_by",
        Step::Aggregate(_) => "aggregate",
        Step::Dedupe(_) => "dedupe",
        Step::Limit(..) => "limit",
    }
}

fn parse_steps(ops: &[Value]) -> Result<Vec<Step>, String> {
    let steps: Vec<Step> = ops
        .iter()
        .enumerate()
        .map(|(i, v)| parse_step(i, v))
        .collect::<Result<_, _>>()?;
    // An aggregate over the whole list ends the pipeline; after group_by it works per group.
    let mut grouped = false;
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::GroupBy(_) => grouped = true,
            Step::Aggregate(_) if !grouped && i + 1 < steps.len() => {
                return Err(format!(
                    "operations[{i}] (aggregate) outputs one object, so it must be the last step (or follow group_by to aggregate each group)"
                ))
            }
            Step::Aggregate(_) => grouped = false,
            Step::Limit(..) => {}
            _ => grouped = false,
        }
    }
    Ok(steps)
}

/// A per-item failure while running step `i`.
fn item_err(i: usize, step: &Step, item: usize, msg: impl std::fmt::Display) -> String {
    format!(
        "operations[{i}] ({}) on item {item}: {msg}",
        step_name(step)
    )
}

fn jq_truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// The JSON type of a value, without an article.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Orders two sort keys of the same kind; `None` when they cannot be compared.
fn compare_keys(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64()?, y.as_f64()?);
            x.partial_cmp(&y)
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A hashable identity for a JSON value (its compact text).
fn key_text(v: &Value) -> String {
    v.to_string()
}

fn number(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Runs one aggregation over `items`.
fn aggregate_one(
    i: usize,
    field: &str,
    agg: &Aggregation,
    items: &[Value],
) -> Result<Value, String> {
    let values: Vec<Value> = match &agg.of {
        Some(p) => items
            .iter()
            .enumerate()
            .map(|(n, it)| {
                jq::run_one(p, it).map_err(|e| {
                    format!(
                        "operations[{i}] (aggregate) field `{field}` on item {n}: {}",
                        e.message
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        None => items.to_vec(),
    };
    let bad = |n: usize, v: &Value, want: &str| {
        format!(
            "operations[{i}] (aggregate) field `{field}`: {} needs {want}, but item {n} gives {} ({})",
            op_name(agg.op),
            kind(v),
            truncate_json(v)
        )
    };
    Ok(match agg.op {
        AggregateOp::Count => {
            let n = if agg.of.is_some() {
                values.iter().filter(|v| !v.is_null()).count()
            } else {
                values.len()
            };
            json!(n)
        }
        AggregateOp::First => values.first().cloned().unwrap_or(Value::Null),
        AggregateOp::Last => values.last().cloned().unwrap_or(Value::Null),
        AggregateOp::Sum | AggregateOp::Avg => {
            let mut int_sum: Option<i64> = Some(0);
            let mut sum = 0.0;
            let mut n = 0usize;
            for (idx, v) in values.iter().enumerate() {
                match v {
                    Value::Null => continue,
                    Value::Number(x) => {
                        int_sum = match (int_sum, x.as_i64()) {
                            (Some(s), Some(y)) => s.checked_add(y),
                            _ => None,
                        };
                        sum += x.as_f64().unwrap_or(0.0);
                        n += 1;
                    }
                    other => return Err(bad(idx, other, "numbers")),
                }
            }
            if agg.op == AggregateOp::Sum {
                match int_sum {
                    Some(s) => json!(s),
                    None => number(sum),
                }
            } else if n == 0 {
                Value::Null
            } else {
                number(sum / n as f64)
            }
        }
        AggregateOp::Min | AggregateOp::Max => {
            let mut best: Option<&Value> = None;
            for (idx, v) in values.iter().enumerate() {
                if v.is_null() {
                    continue;
                }
                if !v.is_number() && !v.is_string() {
                    return Err(bad(idx, v, "numbers or strings"));
                }
                best = match best {
                    None => Some(v),
                    Some(b) => {
                        let ord = compare_keys(v, b).ok_or_else(|| {
                            format!(
                                "operations[{i}] (aggregate) field `{field}`: {} cannot compare {} with {} (item {idx}); the values must be all numbers or all strings",
                                op_name(agg.op),
                                kind(v),
                                kind(b)
                            )
                        })?;
                        let better = match agg.op {
                            AggregateOp::Min => ord == Ordering::Less,
                            _ => ord == Ordering::Greater,
                        };
                        Some(if better { v } else { b })
                    }
                };
            }
            best.cloned().unwrap_or(Value::Null)
        }
        AggregateOp::Concat => match &agg.separator {
            Some(sep) => {
                let parts: Vec<String> = values
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                Value::String(parts.join(sep))
            }
            None => {
                let mut out = Vec::new();
                for v in values {
                    match v {
                        Value::Array(a) => out.extend(a),
                        Value::Null => {}
                        other => out.push(other),
                    }
                }
                Value::Array(out)
            }
        },
    })
}

fn op_name(op: AggregateOp) -> &'static str {
    match op {
        AggregateOp::Sum => "sum",
        AggregateOp::Avg => "avg",
        AggregateOp::Min => "min",
        AggregateOp::Max => "max",
        AggregateOp::Count => "count",
        AggregateOp::First => "first",
        AggregateOp::Last => "last",
        AggregateOp::Concat => "concat",
    }
}

fn truncate_json(v: &Value) -> String {
    let t = v.to_string();
    if t.chars().count() > 60 {
        format!("{}…", t.chars().take(60).collect::<String>())
    } else {
        t
    }
}

fn aggregate(
    i: usize,
    fields: &[(String, Aggregation)],
    items: &[Value],
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (field, agg) in fields {
        out.insert(field.clone(), aggregate_one(i, field, agg, items)?);
    }
    Ok(out)
}

/// What the pipeline produced.
enum Outcome {
    List(Vec<Value>),
    Object(Map<String, Value>),
}

/// Runs the steps over `items`.
fn run_steps(steps: &[Step], mut items: Vec<Value>) -> Result<Outcome, String> {
    let mut grouped = false;
    for (i, step) in steps.iter().enumerate() {
        let per_item = |p: &str, item: &Value, n: usize| {
            jq::run_one(p, item).map_err(|e| item_err(i, step, n, e.message))
        };
        match step {
            Step::Filter(p) => {
                let mut kept = Vec::with_capacity(items.len());
                for (n, it) in items.into_iter().enumerate() {
                    if jq_truthy(&per_item(p, &it, n)?) {
                        kept.push(it);
                    }
                }
                items = kept;
                grouped = false;
            }
            Step::Map(p) => {
                items = items
                    .iter()
                    .enumerate()
                    .map(|(n, it)| per_item(p, it, n))
                    .collect::<Result<_, _>>()?;
                grouped = false;
            }
            Step::Sort(p, descending) => {
                let keys: Vec<Value> = items
                    .iter()
                    .enumerate()
                    .map(|(n, it)| per_item(p, it, n))
                    .collect::<Result<_, _>>()?;
                // One kind for all non-null keys, so the order is well defined.
                let mut first: Option<(usize, &Value)> = None;
                for (n, k) in keys.iter().enumerate() {
                    if k.is_null() {
                        continue;
                    }
                    if !matches!(k, Value::Number(_) | Value::String(_) | Value::Bool(_)) {
                        return Err(item_err(
                            i,
                            step,
                            n,
                            format!(
                                "the sort key is {} ({}); keys must be numbers, strings or booleans",
                                orcheo_core::reducer::kind(k),
                                truncate_json(k)
                            ),
                        ));
                    }
                    match first {
                        None => first = Some((n, k)),
                        Some((m, f)) if compare_keys(f, k).is_none() => {
                            return Err(format!(
                                "operations[{i}] (sort): sort keys of mixed types: item {m} has a {} key ({}) and item {n} a {} key ({}); convert them first, e.g. `.x | tostring` or `.x | tonumber`",
                                kind(f),
                                truncate_json(f),
                                kind(k),
                                truncate_json(k)
                            ));
                        }
                        _ => {}
                    }
                }
                let mut order: Vec<usize> = (0..items.len()).collect();
                order.sort_by(|&a, &b| match (keys[a].is_null(), keys[b].is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ => {
                        let o = compare_keys(&keys[a], &keys[b]).unwrap_or(Ordering::Equal);
                        if *descending {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                });
                let mut slots: Vec<Option<Value>> = items.into_iter().map(Some).collect();
                items = order.iter().filter_map(|&n| slots[n].take()).collect();
            }
            Step::GroupBy(p) => {
                let mut index: HashMap<String, usize> = HashMap::new();
                let mut groups: Vec<(Value, Vec<Value>)> = Vec::new();
                for (n, it) in items.into_iter().enumerate() {
                    let key = per_item(p, &it, n)?;
                    let slot = *index.entry(key_text(&key)).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    groups[slot].1.push(it);
                }
                items = groups
                    .into_iter()
                    .map(|(key, items)| json!({ "key": key, "items": items }))
                    .collect();
                grouped = true;
            }
            Step::Aggregate(fields) => {
                if !grouped {
                    return Ok(Outcome::Object(aggregate(i, fields, &items)?));
                }
                items = items
                    .into_iter()
                    .map(|g| {
                        let mut out = Map::new();
                        let (key, members) = match g {
                            Value::Object(mut o) => (
                                o.remove("key").unwrap_or(Value::Null),
                                match o.remove("items") {
                                    Some(Value::Array(a)) => a,
                                    _ => Vec::new(),
                                },
                            ),
                            _ => (Value::Null, Vec::new()),
                        };
                        out.insert("key".into(), key);
                        out.insert("count".into(), json!(members.len()));
                        out.extend(aggregate(i, fields, &members)?);
                        Ok(Value::Object(out))
                    })
                    .collect::<Result<_, String>>()?;
                grouped = false;
            }
            Step::Dedupe(p) => {
                let mut seen = std::collections::HashSet::new();
                let mut kept = Vec::with_capacity(items.len());
                for (n, it) in items.into_iter().enumerate() {
                    if seen.insert(key_text(&per_item(p, &it, n)?)) {
                        kept.push(it);
                    }
                }
                items = kept;
                grouped = false;
            }
            Step::Limit(limit, offset) => {
                items = items.into_iter().skip(*offset).take(*limit).collect();
            }
        }
    }
    Ok(Outcome::List(items))
}

/// Raw config, decoded leniently so that step errors can name the step.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    items: Value,
    operations: Vec<Value>,
}

#[async_trait]
impl Node for DataTransform {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<DataTransformConfig, DataTransformOutput>(
            "data_transform",
            "Data transform",
            "data",
            "Runs a list through steps in order: `filter`, `map`, `sort`, `group_by`, `aggregate` (sum/avg/min/max/count/first/last/concat), `dedupe`, `limit`. Per-item logic is a jq program on the item (`.price > 10`). Outputs `{items, count}`, or the aggregate object when the list is aggregated as a whole; after `group_by`, `aggregate` gives one `{key, count, ...}` row per group.",
        )
        .icon("table")
        .raw(&["operations"])
        .example(
            "Paid orders over 100, newest first",
            json!({ "items": "{{ state.orders }}", "operations": [
                { "filter": ".status == \"paid\" and .total > 100" },
                { "sort": ".created_at", "descending": true },
                { "map": "{id, customer: .customer.name, total}" },
                { "limit": 20 }
            ] }),
        )
        .example(
            "Revenue per region",
            json!({ "items": "{{ state.sales }}", "operations": [
                { "group_by": ".region" },
                { "aggregate": { "revenue": { "op": "sum", "of": ".qty * .price" }, "largest": { "op": "max", "of": ".qty * .price" } } },
                { "sort": ".revenue", "descending": true }
            ] }),
        )
        .example(
            "Unique emails",
            json!({ "items": "{{ input.contacts }}", "operations": [ { "dedupe": ".email | ascii_downcase" } ] }),
        )
    }
    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        match config.get("operations").and_then(Value::as_array) {
            Some(ops) => match parse_steps(ops) {
                Ok(_) => Vec::new(),
                Err(message) => vec![ConfigProblem {
                    path: "/operations".into(),
                    message,
                    fix: "fix the step (see the data_transform reference in docs/nodes.md)".into(),
                }],
            },
            None => Vec::new(),
        }
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: RawConfig = ctx.config_as()?;
        let steps = parse_steps(&c.operations)
            .map_err(|m| NodeError::config(format!("node `{}`: {m}", ctx.node_id)))?;
        let items = match c.items {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            other => {
                return Err(NodeError::config(format!(
                    "node `{}`: `items` must be a list, but it is {}",
                    ctx.node_id,
                    orcheo_core::reducer::kind(&other)
                )))
            }
        };
        let output = match run_steps(&steps, items)
            .map_err(|m| NodeError::new("data", format!("node `{}`: {m}", ctx.node_id)))?
        {
            Outcome::List(items) => json!({ "count": items.len(), "items": items }),
            Outcome::Object(o) => Value::Object(o),
        };
        Ok(NodeOutput::output(output).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(items: Value, ops: Value) -> Result<Value, String> {
        let steps = parse_steps(ops.as_array().unwrap())?;
        let items = items.as_array().unwrap().clone();
        Ok(match run_steps(&steps, items)? {
            Outcome::List(items) => json!({ "count": items.len(), "items": items }),
            Outcome::Object(o) => Value::Object(o),
        })
    }

    fn orders() -> Value {
        json!([
            { "id": 1, "region": "north", "qty": 2, "price": 10.5, "tags": ["a"] },
            { "id": 2, "region": "south", "qty": 1, "price": 99, "tags": ["b"] },
            { "id": 3, "region": "north", "qty": 5, "price": 3, "tags": ["a", "c"] },
            { "id": 4, "region": "east", "qty": 0, "price": 7, "tags": [] }
        ])
    }

    #[test]
    fn filter_map_sort_limit() {
        let out = run(
            orders(),
            json!([
                { "filter": ".qty > 0" },
                { "map": "{id, total: (.qty * .price)}" },
                { "sort": ".total", "descending": true },
                { "limit": 2, "offset": 1 }
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({ "count": 2, "items": [ { "id": 1, "total": 21.0 }, { "id": 3, "total": 15 } ] })
        );
    }

    #[test]
    fn group_then_aggregate_per_group() {
        let out = run(
            orders(),
            json!([
                { "group_by": ".region" },
                { "aggregate": {
                    "units": { "op": "sum", "of": ".qty" },
                    "avg_price": { "op": "avg", "of": ".price" },
                    "ids": { "op": "concat", "of": ".id", "separator": "," },
                    "tags": { "op": "concat", "of": ".tags" },
                    "cheapest": { "op": "min", "of": ".price" },
                    "first": { "op": "first", "of": ".id" },
                    "last": { "op": "last", "of": ".id" }
                } },
                { "sort": ".units", "descending": true }
            ]),
        )
        .unwrap();
        assert_eq!(out["count"], json!(3));
        assert_eq!(
            out["items"][0],
            json!({ "key": "north", "count": 2, "units": 7, "avg_price": 6.75, "ids": "1,3",
                    "tags": ["a", "a", "c"], "cheapest": 3, "first": 1, "last": 3 })
        );
        assert_eq!(out["items"][2]["key"], json!("east"));
    }

    #[test]
    fn group_by_lists_members() {
        let out = run(
            orders(),
            json!([{ "group_by": ".region" }, { "map": "{key, n: (.items | length)}" }]),
        )
        .unwrap();
        assert_eq!(
            out["items"],
            json!([{"key": "north", "n": 2}, {"key": "south", "n": 1}, {"key": "east", "n": 1}])
        );
    }

    #[test]
    fn aggregate_whole_list_and_dedupe() {
        let out = run(
            orders(),
            json!([
                { "dedupe": ".region" },
                { "aggregate": { "n": { "op": "count" }, "max": { "op": "max", "of": ".region" }, "priced": { "op": "count", "of": ".missing" } } }
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({ "n": 3, "max": "south", "priced": 0 }));
        let empty = run(
            json!([]),
            json!([{ "aggregate": { "s": { "op": "sum" }, "a": { "op": "avg" } } }]),
        )
        .unwrap();
        assert_eq!(empty, json!({ "s": 0, "a": null }));
    }

    #[test]
    fn sort_nulls_last_and_stable() {
        let out = run(
            json!([{"k": 2, "i": 0}, {"i": 1}, {"k": 1, "i": 2}, {"k": 2, "i": 3}]),
            json!([{ "sort": ".k" }, { "map": ".i" }]),
        )
        .unwrap();
        assert_eq!(out["items"], json!([2, 0, 3, 1]));
    }

    #[test]
    fn errors_name_the_step() {
        let e = run(
            json!([{"k": 1}, {"k": "x"}]),
            json!([{ "filter": "true" }, { "sort": ".k" }]),
        )
        .unwrap_err();
        assert!(
            e.contains("operations[1] (sort): sort keys of mixed types")
                && e.contains("item 0 has a number key"),
            "{e}"
        );
        let e = run(json!([1]), json!([{ "map": ".a |" }])).unwrap_err();
        assert!(e.starts_with("operations[0] (map): jq syntax error"), "{e}");
        let e = run(json!([1, {"a": 1}]), json!([{ "map": ".a" }])).unwrap_err();
        assert!(
            e.starts_with("operations[0] (map) on item 0: jq runtime error"),
            "{e}"
        );
        let e = run(json!([]), json!([{ "explode": "." }])).unwrap_err();
        assert!(e.contains("operations[0] names no operation"), "{e}");
        let e = run(json!([]), json!([{ "filter": ".", "map": "." }])).unwrap_err();
        assert!(e.contains("several operations (filter, map)"), "{e}");
        let e = run(json!([]), json!([{ "sort": ".", "desc": true }])).unwrap_err();
        assert!(
            e.contains("operations[0] (sort): unknown field `desc`"),
            "{e}"
        );
        let e = run(
            json!([{"v": 1}, {"v": "2"}]),
            json!([{ "aggregate": { "t": { "op": "sum", "of": ".v" } } }]),
        )
        .unwrap_err();
        assert!(
            e.contains("field `t`: sum needs numbers, but item 1 gives string"),
            "{e}"
        );
        let e = run(
            json!([]),
            json!([{ "aggregate": { "t": { "op": "sum" } } }, { "limit": 1 }]),
        )
        .unwrap_err();
        assert!(e.contains("must be the last step"), "{e}");
        let e = run(
            json!([]),
            json!([{ "aggregate": { "t": { "op": "median" } } }]),
        )
        .unwrap_err();
        assert!(e.contains("field `t`: unknown variant `median`"), "{e}");
    }
}
