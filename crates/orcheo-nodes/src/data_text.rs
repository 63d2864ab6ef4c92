//! Text-shaped data nodes: `text` (split, join, regex, case, trim, truncate), `json` (parse and
//! stringify) and `csv` (parse and serialize).

use async_trait::async_trait;
use heck::{ToKebabCase, ToLowerCamelCase, ToSnakeCase};
use orcheo_core::node::{
    ConfigProblem, Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Largest compiled regex program, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Text operations.
pub struct Text;

/// What `text` does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum TextOperation {
    /// Split `text` at `separator` into a list.
    Split,
    /// Join `list` with `separator` into text.
    Join,
    /// Extract a regex match from `text` (`group`, `all`).
    RegexExtract,
    /// Replace regex matches in `text` with `replacement` (`$1` refers to a group).
    RegexReplace,
    /// Change the case of `text` (`case`).
    Case,
    /// Strip whitespace from both ends of `text`.
    Trim,
    /// Cut `text` to `length` characters, ending with `ellipsis`.
    Truncate,
}

/// A letter case.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum LetterCase {
    /// `HELLO WORLD`.
    Upper,
    /// `hello world`.
    Lower,
    /// `Hello World`.
    Title,
    /// `hello_world`.
    Snake,
    /// `hello-world`.
    Kebab,
    /// `helloWorld`.
    Camel,
}

/// A regex group: its number or its name.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum GroupRef {
    /// Group number (0 is the whole match).
    Index(usize),
    /// Group name.
    Name(String),
}

/// Config of `text`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// The operation.
    pub operation: TextOperation,
    /// The input text (numbers and booleans are turned into text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Value>,
    /// For `join`: the values to join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<Vec<Value>>,
    /// For `split` and `join` (default `,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// For the regex operations: the pattern (Rust regex syntax, no look-around).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For `regex_extract`: the group to return (default: group 1 when the pattern has groups, else the whole match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupRef>,
    /// For `regex_extract`: return every match as a list (default: the first, or null).
    #[serde(default)]
    pub all: bool,
    /// For `regex_replace`: the replacement; `$1` or `${name}` insert groups, `$$` a dollar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// For `regex_replace`: replace at most this many matches (default all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// For `case`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<LetterCase>,
    /// For `truncate`: most characters in the result, ellipsis included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
    /// For `truncate`: appended when the text is cut (default `…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ellipsis: Option<String>,
}

/// Output of `text`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TextOutput {
    /// Text, a list (split, extract with `all`) or null (no match).
    pub result: Value,
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn need<'a, T>(v: &'a Option<T>, field: &str, op: &str) -> Result<&'a T, String> {
    v.as_ref().ok_or_else(|| format!("`{op}` needs `{field}`"))
}

fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for ch in s.chars() {
        if ch.is_whitespace() || ch == '-' {
            start = true;
            out.push(ch);
        } else if start {
            out.extend(ch.to_uppercase());
            start = false;
        } else {
            out.extend(ch.to_lowercase());
        }
    }
    out
}

/// Runs a text operation.
fn text_op(c: &TextConfig) -> Result<Value, String> {
    let text = || c.text.as_ref().map(as_text).unwrap_or_default();
    let sep = c.separator.as_deref().unwrap_or(",");
    Ok(match c.operation {
        TextOperation::Split => {
            let t = text();
            if t.is_empty() {
                json!([])
            } else if sep.is_empty() {
                json!(t.chars().map(String::from).collect::<Vec<_>>())
            } else {
                json!(t.split(sep).collect::<Vec<_>>())
            }
        }
        TextOperation::Join => {
            let list = need(&c.list, "list", "join")?;
            json!(list.iter().map(as_text).collect::<Vec<_>>().join(sep))
        }
        TextOperation::RegexExtract => {
            let re = compile_regex(need(&c.pattern, "pattern", "regex_extract")?)?;
            let group = match &c.group {
                Some(g) => g.clone(),
                None => GroupRef::Index(usize::from(re.captures_len() > 1)),
            };
            match &group {
                GroupRef::Index(i) if *i >= re.captures_len() => {
                    return Err(format!(
                        "the pattern has {} group(s), so there is no group {i}",
                        re.captures_len() - 1
                    ))
                }
                GroupRef::Name(n) if !re.capture_names().any(|x| x == Some(n.as_str())) => {
                    return Err(format!("the pattern has no group named `{n}`"))
                }
                _ => {}
            }
            let pick = |caps: regex::Captures| {
                let m = match &group {
                    GroupRef::Index(i) => caps.get(*i),
                    GroupRef::Name(n) => caps.name(n),
                };
                m.map_or(Value::Null, |m| json!(m.as_str()))
            };
            let t = text();
            if c.all {
                Value::Array(re.captures_iter(&t).map(pick).collect())
            } else {
                re.captures(&t).map_or(Value::Null, pick)
            }
        }
        TextOperation::RegexReplace => {
            let re = compile_regex(need(&c.pattern, "pattern", "regex_replace")?)?;
            let rep = need(&c.replacement, "replacement", "regex_replace")?;
            json!(re.replacen(&text(), c.limit.unwrap_or(0), rep.as_str()))
        }
        TextOperation::Case => {
            let t = text();
            json!(match need(&c.case, "case", "case")? {
                LetterCase::Upper => t.to_uppercase(),
                LetterCase::Lower => t.to_lowercase(),
                LetterCase::Title => title_case(&t),
                LetterCase::Snake => t.to_snake_case(),
                LetterCase::Kebab => t.to_kebab_case(),
                LetterCase::Camel => t.to_lower_camel_case(),
            })
        }
        TextOperation::Trim => json!(text().trim()),
        TextOperation::Truncate => {
            let length = *need(&c.length, "length", "truncate")?;
            let ellipsis = c.ellipsis.as_deref().unwrap_or("…");
            let t = text();
            if t.chars().count() <= length {
                json!(t)
            } else {
                let keep = length.saturating_sub(ellipsis.chars().count());
                let mut out: String = t.chars().take(keep).collect();
                out.push_str(ellipsis);
                json!(out)
            }
        }
    })
}

#[async_trait]
impl Node for Text {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<TextConfig, TextOutput>(
            "text",
            "Text",
            "data",
            "Text operations: split, join, regex extract and replace (size-limited Rust regex), case (upper/lower/title/snake/kebab/camel), trim, truncate. Outputs `{ \"result\": ... }`. For templates use the `template` node.",
        )
        .icon("type")
        .raw(&["pattern", "replacement"])
        .example("Order number from a subject", json!({ "operation": "regex_extract", "text": "{{ input.subject }}", "pattern": "order #(\\d+)" }))
        .example("Collapse whitespace", json!({ "operation": "regex_replace", "text": "{{ input.comment }}", "pattern": "\\s+", "replacement": " " }))
        .example("Slug", json!({ "operation": "case", "text": "{{ input.title }}", "case": "kebab" }))
        .example("Tags from a list", json!({ "operation": "split", "text": "{{ input.tags }}", "separator": ";" }))
        .example("Preview", json!({ "operation": "truncate", "text": "{{ input.body }}", "length": 80 }))
    }
    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        match config.get("pattern").and_then(Value::as_str) {
            Some(p) => match compile_regex(p) {
                Ok(_) => Vec::new(),
                Err(message) => vec![ConfigProblem {
                    path: "/pattern".into(),
                    message,
                    fix: "fix the pattern (Rust regex syntax: https://docs.rs/regex)".into(),
                }],
            },
            None => Vec::new(),
        }
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: TextConfig = ctx.config_as()?;
        let result =
            text_op(&c).map_err(|m| NodeError::config(format!("node `{}`: {m}", ctx.node_id)))?;
        Ok(NodeOutput::output(json!({ "result": result })).into())
    }
}

/// Parses or writes JSON text.
pub struct Json;

/// What `json` does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum JsonOperation {
    /// JSON text to a value.
    Parse,
    /// A value to JSON text.
    Stringify,
}

/// Config of `json`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    /// The operation.
    pub operation: JsonOperation,
    /// `parse`: the text; `stringify`: the value.
    pub value: Value,
    /// For `stringify`: indent with two spaces (default compact).
    #[serde(default)]
    pub pretty: bool,
}

/// Output of `json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JsonOutput {
    /// The parsed value or the JSON text.
    pub result: Value,
}

#[async_trait]
impl Node for Json {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<JsonConfig, JsonOutput>(
            "json",
            "JSON",
            "data",
            "Parses JSON text into a value (errors give the line and column) or writes a value as JSON text, compact or pretty. Outputs `{ \"result\": ... }`.",
        )
        .icon("file-json")
        .example("Parse a payload", json!({ "operation": "parse", "value": "{{ input.body }}" }))
        .example("Pretty text", json!({ "operation": "stringify", "value": "{{ state.order }}", "pretty": true }))
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: JsonConfig = ctx.config_as()?;
        let result = match c.operation {
            JsonOperation::Parse => {
                let Value::String(text) = &c.value else {
                    return Err(NodeError::config(format!(
                        "node `{}`: `parse` needs text, but `value` is {}",
                        ctx.node_id,
                        orcheo_core::reducer::kind(&c.value)
                    )));
                };
                serde_json::from_str::<Value>(text).map_err(|e| {
                    NodeError::new(
                        "json",
                        format!(
                            "node `{}`: invalid JSON at line {}, column {}: {e}",
                            ctx.node_id,
                            e.line(),
                            e.column()
                        ),
                    )
                    .with_details(json!({ "line": e.line(), "column": e.column() }))
                })?
            }
            JsonOperation::Stringify => {
                let text = if c.pretty {
                    serde_json::to_string_pretty(&c.value)
                } else {
                    serde_json::to_string(&c.value)
                };
                json!(text.map_err(|e| NodeError::new("json", e.to_string()))?)
            }
        };
        Ok(NodeOutput::output(json!({ "result": result })).into())
    }
}

/// Parses or writes CSV.
pub struct Csv;

/// What `csv` does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CsvOperation {
    /// CSV text (header row first) to a list of objects.
    Parse,
    /// A list of objects to CSV text with a header row.
    Serialize,
}

/// Config of `csv`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// The operation.
    pub operation: CsvOperation,
    /// `parse`: the CSV text; `serialize`: the list of objects.
    pub value: Value,
    /// Field delimiter, one character (default `,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// For `parse`: turn numeric cells into numbers and `true`/`false` into booleans (default: all text).
    #[serde(default)]
    pub typed: bool,
    /// For `serialize`: the columns, in order (default: the keys of the rows in order of first appearance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

/// Output of `csv`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CsvOutput {
    /// The rows (parse) or the text (serialize).
    pub result: Value,
    /// Number of data rows.
    pub count: usize,
}

fn delimiter(d: &Option<String>) -> Result<u8, String> {
    match d.as_deref() {
        None => Ok(b','),
        Some(s) if s.len() == 1 => Ok(s.as_bytes()[0]),
        Some("\\t") => Ok(b'\t'),
        Some(s) => Err(format!(
            "`delimiter` must be one ASCII character, not {s:?}"
        )),
    }
}

fn typed_cell(s: &str) -> Value {
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let looks_numeric = !s.is_empty()
        && s.trim() == s
        && !(s.len() > 1 && s.starts_with('0') && !s.starts_with("0."))
        && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    if looks_numeric {
        if let Ok(i) = s.parse::<i64>() {
            return json!(i);
        }
        if let Some(n) = s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.to_string())
}

fn csv_parse(text: &str, delim: u8, typed: bool) -> Result<Vec<Value>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delim)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("reading the header row: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| format!("row {}: {e}", n + 1))?;
        let mut obj = Map::new();
        for (h, cell) in headers.iter().zip(rec.iter()) {
            let v = if typed {
                typed_cell(cell)
            } else {
                Value::String(cell.to_string())
            };
            obj.insert(h.clone(), v);
        }
        rows.push(Value::Object(obj));
    }
    Ok(rows)
}

fn csv_serialize(rows: &[Value], delim: u8, columns: Option<&[String]>) -> Result<String, String> {
    let cols: Vec<String> = match columns {
        Some(c) => c.to_vec(),
        None => {
            let mut cols: Vec<String> = Vec::new();
            for r in rows {
                for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            cols
        }
    };
    let mut w = csv::WriterBuilder::new()
        .delimiter(delim)
        .from_writer(Vec::new());
    w.write_record(&cols).map_err(|e| e.to_string())?;
    for (n, r) in rows.iter().enumerate() {
        let Some(obj) = r.as_object() else {
            return Err(format!(
                "row {n} is {}, not an object",
                orcheo_core::reducer::kind(r)
            ));
        };
        let cells: Vec<String> = cols
            .iter()
            .map(|c| obj.get(c).map(as_text).unwrap_or_default())
            .collect();
        w.write_record(&cells).map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

#[async_trait]
impl Node for Csv {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<CsvConfig, CsvOutput>(
            "csv",
            "CSV",
            "data",
            "Parses CSV text with a header row into a list of objects (optionally typing numbers and booleans), or writes a list of objects as CSV text with chosen columns. Outputs `{result, count}`.",
        )
        .icon("sheet")
        .example("Parse an upload", json!({ "operation": "parse", "value": "{{ input.csv }}", "typed": true }))
        .example("Export rows", json!({ "operation": "serialize", "value": "{{ state.rows }}", "columns": ["id", "name", "total"], "delimiter": ";" }))
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: CsvConfig = ctx.config_as()?;
        let fail = |m: String| NodeError::new("csv", format!("node `{}`: {m}", ctx.node_id));
        let delim = delimiter(&c.delimiter)
            .map_err(|m| NodeError::config(format!("node `{}`: {m}", ctx.node_id)))?;
        let (result, count) = match (c.operation, &c.value) {
            (CsvOperation::Parse, Value::String(text)) => {
                let rows = csv_parse(text, delim, c.typed).map_err(fail)?;
                let n = rows.len();
                (Value::Array(rows), n)
            }
            (CsvOperation::Serialize, Value::Array(rows)) => {
                let text = csv_serialize(rows, delim, c.columns.as_deref()).map_err(fail)?;
                (Value::String(text), rows.len())
            }
            (op, v) => {
                return Err(NodeError::config(format!(
                    "node `{}`: `{}` needs {}, but `value` is {}",
                    ctx.node_id,
                    if op == CsvOperation::Parse {
                        "parse"
                    } else {
                        "serialize"
                    },
                    if op == CsvOperation::Parse {
                        "text"
                    } else {
                        "a list of objects"
                    },
                    orcheo_core::reducer::kind(v)
                )))
            }
        };
        Ok(NodeOutput::output(json!({ "result": result, "count": count })).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(c: Value) -> Result<Value, String> {
        text_op(&serde_json::from_value(c).unwrap())
    }

    #[test]
    fn text_operations() {
        let cases = [
            (
                json!({"operation": "split", "text": "a;b;;c", "separator": ";"}),
                json!(["a", "b", "", "c"]),
            ),
            (json!({"operation": "split", "text": ""}), json!([])),
            (
                json!({"operation": "join", "list": ["a", 1, true], "separator": " / "}),
                json!("a / 1 / true"),
            ),
            (
                json!({"operation": "regex_extract", "text": "Re: order #123 and #456", "pattern": "#(\\d+)"}),
                json!("123"),
            ),
            (
                json!({"operation": "regex_extract", "text": "order #123 and #456", "pattern": "#\\d+", "all": true}),
                json!(["#123", "#456"]),
            ),
            (
                json!({"operation": "regex_extract", "text": "v=2.1", "pattern": "(?P<major>\\d)\\.(?P<minor>\\d)", "group": "minor"}),
                json!("1"),
            ),
            (
                json!({"operation": "regex_extract", "text": "none", "pattern": "\\d"}),
                Value::Null,
            ),
            (
                json!({"operation": "regex_replace", "text": "2024-05-01", "pattern": "(\\d+)-(\\d+)-(\\d+)", "replacement": "$3.$2.$1"}),
                json!("01.05.2024"),
            ),
            (
                json!({"operation": "regex_replace", "text": "a a a", "pattern": "a", "replacement": "b", "limit": 2}),
                json!("b b a"),
            ),
            (
                json!({"operation": "case", "text": "hello wORLD-wide", "case": "title"}),
                json!("Hello World-Wide"),
            ),
            (
                json!({"operation": "case", "text": "Hello World", "case": "snake"}),
                json!("hello_world"),
            ),
            (
                json!({"operation": "case", "text": "Hello World", "case": "kebab"}),
                json!("hello-world"),
            ),
            (
                json!({"operation": "case", "text": "hello world", "case": "camel"}),
                json!("helloWorld"),
            ),
            (
                json!({"operation": "case", "text": "straße", "case": "upper"}),
                json!("STRASSE"),
            ),
            (json!({"operation": "trim", "text": "  x \n"}), json!("x")),
            (
                json!({"operation": "truncate", "text": "héllo world", "length": 6}),
                json!("héllo…"),
            ),
            (
                json!({"operation": "truncate", "text": "short", "length": 6, "ellipsis": "..."}),
                json!("short"),
            ),
            (
                json!({"operation": "truncate", "text": 1234567, "length": 5, "ellipsis": ".."}),
                json!("123.."),
            ),
        ];
        for (c, want) in cases {
            assert_eq!(text(c.clone()).unwrap(), want, "{c}");
        }
    }

    #[test]
    fn text_errors() {
        let e = text(json!({"operation": "regex_extract", "text": "x", "pattern": "(unclosed"}))
            .unwrap_err();
        assert!(e.starts_with("invalid regex \"(unclosed\""), "{e}");
        let e =
            text(json!({"operation": "regex_extract", "text": "x", "pattern": "x", "group": 2}))
                .unwrap_err();
        assert!(e.contains("no group 2"), "{e}");
        let e = text(json!({"operation": "case", "text": "x"})).unwrap_err();
        assert_eq!(e, "`case` needs `case`");
        let e =
            text(json!({"operation": "regex_extract", "text": "x", "pattern": "\\w{1000}{1000}"}))
                .unwrap_err();
        assert!(e.contains("size limit"), "{e}");
    }

    #[test]
    fn csv_round_trip() {
        let rows = csv_parse(
            "id, name ,total\n1,\"Smith, J\",10.5\n2,Lee,007\n",
            b',',
            true,
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                json!({"id": 1, "name": "Smith, J", "total": 10.5}),
                json!({"id": 2, "name": "Lee", "total": "007"})
            ]
        );
        let untyped = csv_parse("a;b\n1;x\n", b';', false).unwrap();
        assert_eq!(untyped, vec![json!({"a": "1", "b": "x"})]);
        let text = csv_serialize(&rows, b',', Some(&["name".into(), "id".into()])).unwrap();
        assert_eq!(text, "name,id\n\"Smith, J\",1\nLee,2\n");
        let text =
            csv_serialize(&[json!({"a": 1}), json!({"b": null, "a": 2})], b'\t', None).unwrap();
        assert_eq!(text, "a\tb\n1\t\n2\t\n");
        let e = csv_parse("a,b\n1,2,3\n", b',', false).unwrap_err();
        assert!(e.starts_with("row 1:"), "{e}");
        let e = csv_serialize(&[json!(1)], b',', None).unwrap_err();
        assert_eq!(e, "row 0 is a number, not an object");
        assert!(delimiter(&Some("ab".into())).is_err());
        assert_eq!(delimiter(&Some("\\t".into())), Ok(b'\t'));
    }
}
