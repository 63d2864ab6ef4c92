//! jq transforms through `jaq`: compiled once per thread and source, bounded in the number
//! and size of outputs.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;
use serde::Deserialize;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Most outputs one jq program may produce.
pub const MAX_OUTPUTS: usize = 100_000;
/// Most programs kept compiled per thread.
const CACHE_SIZE: usize = 256;

type Filter = jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>;

thread_local! {
    static CACHE: RefCell<HashMap<String, Rc<Filter>>> = RefCell::new(HashMap::new());
}

/// A jq program failed to compile or to run.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{message}")]
pub struct JqError {
    /// What went wrong.
    pub message: String,
}

fn err(message: impl Into<String>) -> JqError {
    JqError {
        message: message.into(),
    }
}

fn offset(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(whole.as_ptr() as usize)
        .min(whole.len())
}

/// Filters that reach outside the sandbox: exiting the process, reading the environment,
/// writing to stderr. They are left undefined, so a program using them fails to compile.
const BLOCKED: &[&str] = &[
    "halt",
    "halt_error",
    "env",
    "stderr",
    "stderr_empty",
    "debug",
    "debug_empty",
    "input",
    "inputs",
    "input_filename",
];

fn compile_uncached(code: &str) -> Result<Filter, JqError> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .filter(|d| !BLOCKED.contains(&d.name));
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|f| !BLOCKED.contains(&f.0));
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(&arena, File { code, path: () })
        .map_err(|errs| {
            let mut msgs = Vec::new();
            for (_, e) in errs {
                match e {
                    jaq_core::load::Error::Io(v) => msgs.extend(v.into_iter().map(|(_, m)| m)),
                    jaq_core::load::Error::Lex(v) => msgs.extend(v.into_iter().map(|(exp, at)| {
                        format!(
                            "expected {} at position {}",
                            exp.as_str(),
                            offset(code, at) + 1
                        )
                    })),
                    jaq_core::load::Error::Parse(v) => {
                        msgs.extend(v.into_iter().map(|(exp, at)| {
                            format!(
                                "expected {} at position {}",
                                exp.as_str(),
                                offset(code, at) + 1
                            )
                        }))
                    }
                }
            }
            err(format!("jq syntax error: {}", msgs.join("; ")))
        })?;
    Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| {
            let msgs: Vec<String> = errs
                .into_iter()
                .flat_map(|(_, v)| v.into_iter())
                .map(|(name, undef)| format!("undefined {} `{}`", undef.as_str(), name))
                .collect();
            err(format!("jq error: {}", msgs.join("; ")))
        })
}

/// Checks that a jq program compiles.
pub fn check(code: &str) -> Result<(), JqError> {
    with_filter(code, |_| Ok(()))
}

fn with_filter<T>(code: &str, f: impl FnOnce(&Filter) -> Result<T, JqError>) -> Result<T, JqError> {
    let cached = CACHE.with(|c| c.borrow().get(code).cloned());
    let filter = match cached {
        Some(f) => f,
        None => {
            let compiled = Rc::new(compile_uncached(code)?);
            CACHE.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() >= CACHE_SIZE {
                    c.clear();
                }
                c.insert(code.to_string(), compiled.clone());
            });
            compiled
        }
    };
    f(&filter)
}

/// Runs `code` on `input` and returns every output (at most [`MAX_OUTPUTS`]).
pub fn run(code: &str, input: &Value) -> Result<Vec<Value>, JqError> {
    let val = Val::deserialize(input).map_err(|e| err(format!("input is not JSON: {e}")))?;
    with_filter(code, |filter| {
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
        let mut out = Vec::new();
        for item in filter.id.run((ctx, val)).map(unwrap_valr) {
            let v = item.map_err(|e| err(format!("jq runtime error: {e}")))?;
            out.push(to_json(&v));
            if out.len() > MAX_OUTPUTS {
                return Err(err(format!(
                    "jq program produced more than {MAX_OUTPUTS} outputs"
                )));
            }
        }
        Ok(out)
    })
}

/// Runs `code` and expects at most one output: none gives null.
pub fn run_one(code: &str, input: &Value) -> Result<Value, JqError> {
    let mut out = run(code, input)?;
    match out.len() {
        0 => Ok(Value::Null),
        1 => Ok(out.remove(0)),
        n => Err(err(format!(
            "jq program produced {n} outputs where one was expected; wrap it in [ ... ] to collect them into a list"
        ))),
    }
}

fn bytes_to_string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Converts a jaq value to JSON.
fn to_json(v: &Val) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => {
            let text = n.to_string();
            serde_json::from_str::<serde_json::Number>(&text)
                .map(Value::Number)
                .unwrap_or_else(|_| {
                    text.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or(Value::Null, Value::Number)
                })
        }
        Val::TStr(b) | Val::BStr(b) => Value::String(bytes_to_string(b)),
        Val::Arr(a) => Value::Array(a.iter().map(to_json).collect()),
        Val::Obj(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Val::TStr(b) | Val::BStr(b) => bytes_to_string(b),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_programs() {
        assert_eq!(run_one(".a + 1", &json!({"a": 2})).unwrap(), json!(3));
        assert_eq!(
            run("[.[] | select(. > 1)]", &json!([1, 2, 3])).unwrap(),
            vec![json!([2, 3])]
        );
        assert_eq!(
            run(".[]", &json!([1, 2])).unwrap(),
            vec![json!(1), json!(2)]
        );
        assert_eq!(
            run_one("{b: .a, c: (.a | tostring)}", &json!({"a": 1.5})).unwrap(),
            json!({"b": 1.5, "c": "1.5"})
        );
        assert_eq!(run_one("empty", &json!(1)).unwrap(), Value::Null);
        assert_eq!(
            run_one("map(.x) | add", &json!([{"x": 1}, {"x": 2}])).unwrap(),
            json!(3)
        );
        assert_eq!(
            run_one(
                "group_by(.k) | map(length)",
                &json!([{"k": 1}, {"k": 2}, {"k": 1}])
            )
            .unwrap(),
            json!([2, 1])
        );
    }

    #[test]
    fn errors_are_clear() {
        let e = check(".a | ").unwrap_err();
        assert!(e.message.starts_with("jq syntax error"), "{}", e.message);
        let e = check("nosuchfn(1)").unwrap_err();
        assert!(
            e.message.contains("undefined filter `nosuchfn`"),
            "{}",
            e.message
        );
        let e = run_one(".[]", &json!([1, 2])).unwrap_err();
        assert!(e.message.contains("2 outputs"), "{}", e.message);
        let e = run_one(".a.b", &json!({"a": 1})).unwrap_err();
        assert!(e.message.contains("jq runtime error"), "{}", e.message);
    }

    #[test]
    fn escapes_are_not_available() {
        for code in [
            "halt",
            "halt_error",
            "halt_error(1)",
            "env.HOME",
            "$ENV.HOME",
            "debug",
            "stderr",
            "input",
        ] {
            let e = check(code).unwrap_err();
            assert!(e.message.contains("undefined"), "{code}: {}", e.message);
        }
    }

    #[test]
    fn output_count_is_bounded() {
        let e = run("repeat(1)", &json!(null)).unwrap_err();
        assert!(e.message.contains("more than"), "{}", e.message);
    }
}
