//! Reducers: how an update to a state field combines with the value already there.

use crate::document::{FieldType, Reducer};
use serde_json::{Map, Value};

/// An update could not be applied to a field.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("cannot apply {reducer} reducer to field `{field}`: {reason}")]
pub struct ReduceError {
    /// The state field.
    pub field: String,
    /// The reducer's name.
    pub reducer: &'static str,
    /// Why the values do not fit.
    pub reason: String,
}

/// "a list", "an object", ...: a JSON value's type for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Applies `update` to `current` (null when the field is new) under `reducer`.
pub fn apply(
    reducer: Reducer,
    field: &str,
    current: &mut Value,
    update: Value,
) -> Result<(), ReduceError> {
    let fail = |reason: String| ReduceError {
        field: field.to_string(),
        reducer: reducer.name(),
        reason,
    };
    match reducer {
        Reducer::Replace => *current = update,
        Reducer::Append => list_of(current, "a list", &fail)?.extend(items(update)),
        Reducer::Union => {
            let list = list_of(current, "a list", &fail)?;
            for item in items(update) {
                if !list.contains(&item) {
                    list.push(item);
                }
            }
        }
        Reducer::Merge | Reducer::DeepMerge => {
            if update.is_null() {
                return Ok(());
            }
            if current.is_null() {
                *current = Value::Object(Map::new());
            }
            let (Value::Object(cur), Value::Object(upd)) = (&mut *current, &update) else {
                return Err(fail(format!(
                    "{} into {}: both must be objects",
                    kind(&update),
                    kind(current)
                )));
            };
            let _ = upd;
            let Value::Object(upd) = update else {
                return Ok(());
            };
            if reducer == Reducer::Merge {
                for (k, v) in upd {
                    cur.insert(k, v);
                }
            } else {
                deep_merge(cur, upd);
            }
        }
        Reducer::Add => {
            if update.is_null() {
                return Ok(());
            }
            let Some(u) = update.as_number() else {
                return Err(fail(format!(
                    "the update is {}, not a number",
                    kind(&update)
                )));
            };
            let sum = match current {
                Value::Null => update.clone(),
                Value::Number(c) => match (c.as_i64(), u.as_i64()) {
                    (Some(a), Some(b)) if a.checked_add(b).is_some() => Value::from(a + b),
                    _ => number(c.as_f64().unwrap_or(0.0) + u.as_f64().unwrap_or(0.0)),
                },
                other => {
                    return Err(fail(format!(
                        "the field holds {}, not a number",
                        kind(other)
                    )))
                }
            };
            *current = sum;
        }
        Reducer::Max | Reducer::Min => {
            if update.is_null() {
                return Ok(());
            }
            let Some(u) = update.as_f64() else {
                return Err(fail(format!(
                    "the update is {}, not a number",
                    kind(&update)
                )));
            };
            match current {
                Value::Null => *current = update,
                Value::Number(c) => {
                    let c = c.as_f64().unwrap_or(f64::NAN);
                    let take = if reducer == Reducer::Max {
                        u > c
                    } else {
                        u < c
                    };
                    if take {
                        *current = update;
                    }
                }
                other => {
                    return Err(fail(format!(
                        "the field holds {}, not a number",
                        kind(other)
                    )))
                }
            }
        }
        Reducer::Messages => {
            let list = list_of(current, "a list of messages", &fail)?;
            for item in items(update) {
                let id = item.get("id").filter(|v| !v.is_null()).cloned();
                match id.and_then(|id| list.iter().position(|m| m.get("id") == Some(&id))) {
                    Some(pos) => list[pos] = item,
                    None => list.push(item),
                }
            }
        }
    }
    Ok(())
}

/// The list a field holds (a new empty one for null), or the reducer's error.
fn list_of<'a>(
    current: &'a mut Value,
    what: &str,
    fail: &dyn Fn(String) -> ReduceError,
) -> Result<&'a mut Vec<Value>, ReduceError> {
    if current.is_null() {
        *current = Value::Array(Vec::new());
    }
    let desc = kind(current);
    match current {
        Value::Array(list) => Ok(list),
        _ => Err(fail(format!("the field holds {desc}, not {what}"))),
    }
}

/// The items an update adds to a list: its elements, nothing for null, or itself.
fn items(update: Value) -> Vec<Value> {
    match update {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn number(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn deep_merge(cur: &mut Map<String, Value>, upd: Map<String, Value>) {
    for (k, v) in upd {
        match (cur.get_mut(&k), v) {
            (Some(Value::Object(c)), Value::Object(u)) => deep_merge(c, u),
            (_, v) => {
                cur.insert(k, v);
            }
        }
    }
}

/// Whether a reducer can work on a field of the given type; the reason when not.
pub fn compatible(reducer: Reducer, field_type: FieldType) -> Result<(), String> {
    use FieldType as T;
    let ok = match reducer {
        Reducer::Replace => true,
        Reducer::Append | Reducer::Union | Reducer::Messages => {
            matches!(field_type, T::Array | T::Any)
        }
        Reducer::Merge | Reducer::DeepMerge => matches!(field_type, T::Object | T::Any),
        Reducer::Add | Reducer::Max | Reducer::Min => {
            matches!(field_type, T::Number | T::Integer | T::Any)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the {} reducer cannot work on a field of type {:?}",
            reducer.name(),
            field_type
        )
        .to_lowercase())
    }
}

/// Whether a reducer can start from a default value; the reason when not.
pub fn default_fits(reducer: Reducer, default: &Value) -> Result<(), String> {
    if default.is_null() {
        return Ok(());
    }
    let ok = match reducer {
        Reducer::Replace => true,
        Reducer::Append | Reducer::Union | Reducer::Messages => default.is_array(),
        Reducer::Merge | Reducer::DeepMerge => default.is_object(),
        Reducer::Add | Reducer::Max | Reducer::Min => default.is_number(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the {} reducer cannot start from a default that is {}",
            reducer.name(),
            kind(default)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(r: Reducer, cur: Value, upd: Value) -> Result<Value, ReduceError> {
        let mut c = cur;
        apply(r, "f", &mut c, upd)?;
        Ok(c)
    }

    #[test]
    fn replace() {
        assert_eq!(
            run(Reducer::Replace, json!(1), json!("x")).unwrap(),
            json!("x")
        );
        assert_eq!(
            run(Reducer::Replace, json!(null), json!([1])).unwrap(),
            json!([1])
        );
    }

    #[test]
    fn append() {
        assert_eq!(
            run(Reducer::Append, json!(null), json!(1)).unwrap(),
            json!([1])
        );
        assert_eq!(
            run(Reducer::Append, json!([1]), json!([2, 3])).unwrap(),
            json!([1, 2, 3])
        );
        assert_eq!(
            run(Reducer::Append, json!([1]), json!({"a": 1})).unwrap(),
            json!([1, {"a": 1}])
        );
        assert!(run(Reducer::Append, json!("s"), json!(1))
            .unwrap_err()
            .to_string()
            .contains("not a list"));
    }

    #[test]
    fn union() {
        assert_eq!(
            run(Reducer::Union, json!([1, 2]), json!([2, 3, 1, 4])).unwrap(),
            json!([1, 2, 3, 4])
        );
        assert_eq!(
            run(Reducer::Union, json!(null), json!("a")).unwrap(),
            json!(["a"])
        );
    }

    #[test]
    fn merge() {
        assert_eq!(
            run(
                Reducer::Merge,
                json!({"a": 1, "b": {"x": 1}}),
                json!({"b": {"y": 2}})
            )
            .unwrap(),
            json!({"a": 1, "b": {"y": 2}})
        );
        assert_eq!(
            run(Reducer::Merge, json!(null), json!({"a": 1})).unwrap(),
            json!({"a": 1})
        );
        assert!(run(Reducer::Merge, json!({}), json!([1])).is_err());
    }

    #[test]
    fn deep_merge_reducer() {
        assert_eq!(
            run(
                Reducer::DeepMerge,
                json!({"a": 1, "b": {"x": 1, "z": {"q": 1}}}),
                json!({"b": {"y": 2, "z": {"r": 2}}})
            )
            .unwrap(),
            json!({"a": 1, "b": {"x": 1, "y": 2, "z": {"q": 1, "r": 2}}})
        );
    }

    #[test]
    fn add() {
        assert_eq!(run(Reducer::Add, json!(1), json!(2)).unwrap(), json!(3));
        assert_eq!(run(Reducer::Add, json!(1.5), json!(2)).unwrap(), json!(3.5));
        assert_eq!(run(Reducer::Add, json!(null), json!(2)).unwrap(), json!(2));
        assert_eq!(
            run(Reducer::Add, json!(i64::MAX), json!(1)).unwrap(),
            json!(i64::MAX as f64 + 1.0)
        );
        assert!(run(Reducer::Add, json!(1), json!("2"))
            .unwrap_err()
            .to_string()
            .contains("not a number"));
    }

    #[test]
    fn max_min() {
        assert_eq!(run(Reducer::Max, json!(1), json!(5)).unwrap(), json!(5));
        assert_eq!(run(Reducer::Max, json!(7), json!(5)).unwrap(), json!(7));
        assert_eq!(run(Reducer::Min, json!(7), json!(5)).unwrap(), json!(5));
        assert_eq!(run(Reducer::Min, json!(null), json!(5)).unwrap(), json!(5));
    }

    #[test]
    fn messages() {
        let cur = json!([{"id": "1", "text": "hi"}, {"id": "2", "text": "yo"}]);
        let out = run(
            Reducer::Messages,
            cur,
            json!([{"id": "2", "text": "edited"}, {"id": "3", "text": "new"}, {"text": "anon"}]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!([{"id": "1", "text": "hi"}, {"id": "2", "text": "edited"}, {"id": "3", "text": "new"}, {"text": "anon"}])
        );
    }

    #[test]
    fn compatibility() {
        assert!(compatible(Reducer::Add, FieldType::String).is_err());
        assert!(compatible(Reducer::Append, FieldType::Array).is_ok());
        assert!(default_fits(Reducer::Append, &json!({})).is_err());
        assert!(default_fits(Reducer::Add, &json!(0)).is_ok());
    }
}
