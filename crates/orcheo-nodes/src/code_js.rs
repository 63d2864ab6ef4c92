//! The JavaScript code node (`code_js`): the user's code runs as the body of a function
//! `(state, input, item)` inside QuickJS (rquickjs). Every execution gets a fresh runtime and
//! context, so globals and prototype changes never cross runs; the runtime has a memory limit,
//! a stack limit and an interrupt handler that enforces the time limit and the run's
//! cancellation. Only standard ECMAScript globals exist (no modules, no I/O, no timers) plus a
//! `console` whose lines become the run's log events. Values cross the boundary as JSON.

use async_trait::async_trait;
use orcheo_core::event::LogLevel;
use orcheo_core::node::{
    ConfigProblem, Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec,
};
use rquickjs::allocator::{Allocator, RustAllocator};
use rquickjs::context::intrinsic;
use rquickjs::context::EvalOptions;
use rquickjs::{Context, Ctx, Exception, Function, Runtime, Type, Value as JsValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Default time limit in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Largest time limit in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Default memory limit in MB.
pub const DEFAULT_MEMORY_MB: u64 = 32;
/// Largest memory limit in MB.
pub const MAX_MEMORY_MB: u64 = 512;

/// The file name the user's code is compiled under (error stacks point into it).
const USER_FILE: &str = "code.js";
/// Lines the wrapper adds before the user's first line.
const WRAPPER_LINES: u32 = 1;
/// JavaScript stack limit (the blocking thread has 2 MiB).
const STACK_BYTES: usize = 512 * 1024;
/// Console lines kept per execution; later ones are counted and dropped.
const MAX_LOG_LINES: usize = 1000;
/// Longest console line kept, in bytes.
const MAX_LOG_BYTES: usize = 16 * 1024;

/// Installs `console` on the global object; `sink(level, text)` is the host's collector.
/// Levels: 0 debug, 1 info, 2 warn, 3 error.
const CONSOLE_PRELUDE: &str = r#"(function (sink) {
  const show = (v) => {
    if (typeof v === "string") return v;
    if (v instanceof Error) return v.name + ": " + v.message;
    try {
      const j = JSON.stringify(v);
      return j === undefined ? String(v) : j;
    } catch (e) {
      return String(v);
    }
  };
  const at = (level) => (...args) => { sink(level, args.map(show).join(" ")); };
  globalThis.console = {
    log: at(1), info: at(1), debug: at(0), trace: at(0), warn: at(2), error: at(3),
  };
})"#;

/// Runs JavaScript code in a fresh, limited QuickJS sandbox.
pub struct CodeJs;

/// Config of `code_js`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeJsConfig {
    /// The body of a function `(state, input, item)`; `return` a JSON value (an object becomes the output).
    pub code: String,
    /// Milliseconds the code may run (default 1000, at most 60000).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: u64,
    /// Memory limit of the sandbox in MB (default 32, at most 512).
    #[serde(default = "default_memory")]
    #[schemars(range(min = 1, max = 512))]
    pub memory_mb: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_memory() -> u64 {
    DEFAULT_MEMORY_MB
}

/// One JavaScript execution: the code and its arguments as JSON text.
#[derive(Debug, Clone)]
pub struct JsJob {
    /// The function body.
    pub code: String,
    /// `state`, as JSON text.
    pub state: String,
    /// `input`, as JSON text.
    pub input: String,
    /// `item` (the map item, or `null`), as JSON text.
    pub item: String,
    /// Wall-clock limit of the execution.
    pub timeout: Duration,
    /// Memory limit of the runtime in bytes.
    pub memory_bytes: usize,
}

/// A line the code printed with `console.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsLog {
    /// `debug` for console.debug/trace, `info` for log/info, `warn`, `error`.
    pub level: LogLevel,
    /// The arguments, strings as they are and other values as JSON, joined by spaces.
    pub message: String,
}

/// Why a JavaScript execution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsError {
    /// The code threw (or did not compile).
    #[error("{message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Code {
        /// `Name: message` of the error, or the thrown value.
        message: String,
        /// The line in the user's code, when known.
        line: Option<u32>,
    },
    /// The result cannot be turned into JSON.
    #[error("{0}")]
    Result(String),
    /// The time limit passed.
    #[error("exceeded its time limit of {0} ms")]
    Timeout(u64),
    /// The memory limit was reached.
    #[error("exceeded its memory limit of {0} MB")]
    Memory(u64),
    /// The run was cancelled.
    #[error("was cancelled")]
    Cancelled,
    /// The sandbox itself failed.
    #[error("the JavaScript sandbox failed: {0}")]
    Engine(String),
}

/// Why the interrupt handler stopped the code.
const STOP_NONE: u8 = 0;
const STOP_TIMEOUT: u8 = 1;
const STOP_CANCEL: u8 = 2;

/// The wrapper the user's code is compiled in (one line before it, see [`WRAPPER_LINES`]).
fn wrap(code: &str) -> String {
    format!("(function (state, input, item) {{\n{code}\n}})")
}

fn eval_options(file: &str) -> EvalOptions {
    let mut o = EvalOptions::default();
    o.global = true;
    o.strict = true;
    o.filename = Some(file.to_string());
    o
}

/// The Rust allocator with a byte budget: an allocation past the budget fails (QuickJS then
/// throws "out of memory", or `null` when it cannot even allocate that error) and raises
/// `hit`, so a memory failure is told apart from anything the code throws.
struct Metered {
    used: usize,
    limit: usize,
    hit: Arc<AtomicBool>,
}

impl Metered {
    fn fits(&self, extra: usize) -> bool {
        let ok = self
            .used
            .checked_add(extra)
            .is_some_and(|n| n <= self.limit);
        if !ok {
            self.hit.store(true, Ordering::Relaxed);
        }
        ok
    }
}

// SAFETY: every call is delegated to `RustAllocator`, which upholds the trait's contract;
// `Metered` only refuses requests (returning null, which the contract allows) and counts the
// usable size of what `RustAllocator` hands out and takes back.
unsafe impl Allocator for Metered {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.fits(size) {
            return std::ptr::null_mut();
        }
        let p = RustAllocator.alloc(size);
        if !p.is_null() {
            // SAFETY: `p` was just allocated by `RustAllocator`.
            self.used += unsafe { RustAllocator::usable_size(p) };
        }
        p
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            return std::ptr::null_mut();
        };
        if !self.fits(total) {
            return std::ptr::null_mut();
        }
        let p = RustAllocator.calloc(count, size);
        if !p.is_null() {
            // SAFETY: `p` was just allocated by `RustAllocator`.
            self.used += unsafe { RustAllocator::usable_size(p) };
        }
        p
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        // SAFETY: the caller passes a pointer this allocator (so `RustAllocator`) returned.
        unsafe {
            self.used = self.used.saturating_sub(RustAllocator::usable_size(ptr));
            RustAllocator.dealloc(ptr);
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a pointer this allocator (so `RustAllocator`) returned.
        unsafe {
            let old = RustAllocator::usable_size(ptr);
            if new_size > old && !self.fits(new_size - old) {
                return std::ptr::null_mut();
            }
            let p = RustAllocator.realloc(ptr, new_size);
            if !p.is_null() {
                self.used = self.used.saturating_sub(old) + RustAllocator::usable_size(p);
            }
            p
        }
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: the caller passes a pointer this allocator (so `RustAllocator`) returned.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}

/// A runtime and a context with only the standard ECMAScript intrinsics (no `performance`,
/// no DOM exception); QuickJS's `std`/`os` modules are not part of rquickjs at all. `hit`
/// rises when an allocation is refused for the memory limit.
fn sandbox(memory_bytes: usize, hit: Arc<AtomicBool>) -> Result<(Runtime, Context), JsError> {
    let rt = Runtime::new_with_alloc(Metered {
        used: 0,
        limit: memory_bytes,
        hit,
    })
    .map_err(|e| JsError::Engine(e.to_string()))?;
    rt.set_max_stack_size(STACK_BYTES);
    let cx = Context::custom::<(
        intrinsic::Date,
        intrinsic::Eval,
        intrinsic::RegExpCompiler,
        intrinsic::RegExp,
        intrinsic::Json,
        intrinsic::Proxy,
        intrinsic::MapSet,
        intrinsic::TypedArrays,
        intrinsic::Promise,
        intrinsic::WeakRef,
    )>(&rt)
    .map_err(|_| JsError::Memory(mb(memory_bytes)))?;
    Ok((rt, cx))
}

fn mb(bytes: usize) -> u64 {
    (bytes / (1024 * 1024)) as u64
}

/// Runs `job` on the current thread (call it from a blocking thread): the result as JSON, and
/// what the code printed (also when it failed). `cancel` stops the code when it fires.
pub fn run_js(
    job: &JsJob,
    cancel: Option<CancellationToken>,
) -> (Result<Value, JsError>, Vec<JsLog>) {
    let logs = Rc::new(RefCell::new(Logs::default()));
    let result = execute(job, cancel, &logs);
    let logs = match Rc::try_unwrap(logs) {
        Ok(cell) => cell.into_inner().finish(),
        Err(shared) => shared.borrow().clone().finish(),
    };
    (result, logs)
}

#[derive(Default, Clone)]
struct Logs {
    lines: Vec<JsLog>,
    dropped: usize,
}

impl Logs {
    fn push(&mut self, level: i32, mut text: String) {
        if self.lines.len() >= MAX_LOG_LINES {
            self.dropped += 1;
            return;
        }
        if text.len() > MAX_LOG_BYTES {
            let mut end = MAX_LOG_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        let level = match level {
            0 => LogLevel::Debug,
            2 => LogLevel::Warn,
            3 => LogLevel::Error,
            _ => LogLevel::Info,
        };
        self.lines.push(JsLog {
            level,
            message: text,
        });
    }
    fn finish(mut self) -> Vec<JsLog> {
        if self.dropped > 0 {
            self.lines.push(JsLog {
                level: LogLevel::Warn,
                message: format!(
                    "{} more console lines were dropped (at most {MAX_LOG_LINES} are kept)",
                    self.dropped
                ),
            });
        }
        self.lines
    }
}

fn execute(
    job: &JsJob,
    cancel: Option<CancellationToken>,
    logs: &Rc<RefCell<Logs>>,
) -> Result<Value, JsError> {
    let started = Instant::now();
    let deadline = started + job.timeout;
    let oom = Arc::new(AtomicBool::new(false));
    let (rt, cx) = sandbox(job.memory_bytes, oom.clone())?;
    let stop = Arc::new(AtomicU8::new(STOP_NONE));
    let flag = stop.clone();
    rt.set_interrupt_handler(Some(Box::new(move || {
        if cancel.as_ref().is_some_and(CancellationToken::is_cancelled) {
            flag.store(STOP_CANCEL, Ordering::Relaxed);
            return true;
        }
        if Instant::now() >= deadline {
            flag.store(STOP_TIMEOUT, Ordering::Relaxed);
            return true;
        }
        false
    })));
    let timeout_ms = job.timeout.as_millis() as u64;
    let memory_mb = mb(job.memory_bytes);
    let out = cx.with(|ctx| -> Result<Value, JsError> {
        let fail = |ctx: &Ctx<'_>, e: rquickjs::Error| -> JsError {
            match stop.load(Ordering::Relaxed) {
                STOP_TIMEOUT => return JsError::Timeout(timeout_ms),
                STOP_CANCEL => return JsError::Cancelled,
                _ => {}
            }
            let e = classify(ctx, e, memory_mb);
            if oom.load(Ordering::Relaxed) {
                return JsError::Memory(memory_mb);
            }
            e
        };
        install_console(&ctx, logs).map_err(|e| fail(&ctx, e))?;
        let f: Function = ctx
            .eval_with_options(wrap(&job.code), eval_options(USER_FILE))
            .map_err(|e| fail(&ctx, e))?;
        let state = ctx
            .json_parse(job.state.as_str())
            .map_err(|e| fail(&ctx, e))?;
        let input = ctx
            .json_parse(job.input.as_str())
            .map_err(|e| fail(&ctx, e))?;
        let item = ctx
            .json_parse(job.item.as_str())
            .map_err(|e| fail(&ctx, e))?;
        let result: JsValue = f.call((state, input, item)).map_err(|e| fail(&ctx, e))?;
        to_json(&ctx, result).map_err(|e| match e {
            Conv::Js(e) => fail(&ctx, e),
            Conv::Msg(m) => JsError::Result(m),
        })
    });
    drop(cx);
    drop(rt);
    out
}

fn install_console<'js>(ctx: &Ctx<'js>, logs: &Rc<RefCell<Logs>>) -> rquickjs::Result<()> {
    let logs = logs.clone();
    let sink = Function::new(ctx.clone(), move |level: i32, text: String| {
        logs.borrow_mut().push(level, text);
    })?;
    let setup: Function = ctx.eval_with_options(CONSOLE_PRELUDE, eval_options("prelude.js"))?;
    setup.call::<_, ()>((sink,))
}

enum Conv {
    Js(rquickjs::Error),
    Msg(String),
}

/// The code's return value as JSON: `undefined` is `null`; functions, symbols, BigInts and
/// cyclic values are refused with a message saying so.
fn to_json<'js>(ctx: &Ctx<'js>, v: JsValue<'js>) -> Result<Value, Conv> {
    let refuse = |what: &str| {
        Conv::Msg(format!(
            "the code returned {what}, which is not JSON; return an object, array, string, number, boolean or null"
        ))
    };
    match v.type_of() {
        Type::Undefined | Type::Uninitialized => return Ok(Value::Null),
        Type::Function | Type::Constructor => return Err(refuse("a function")),
        Type::Symbol => return Err(refuse("a symbol")),
        Type::BigInt => return Err(refuse("a BigInt (convert it with Number() or String())")),
        Type::Promise => {
            return Err(refuse(
                "a Promise (the code runs synchronously; await is not available)",
            ))
        }
        _ => {}
    }
    let text = match ctx.json_stringify(v) {
        Ok(Some(s)) => s.to_string().map_err(Conv::Js)?,
        Ok(None) => return Ok(Value::Null),
        Err(rquickjs::Error::Exception) => {
            let e = ctx.catch();
            let what = describe_thrown(&e).0;
            if what.contains("out of memory") {
                return Err(Conv::Js(rquickjs::Error::Allocation));
            }
            return Err(Conv::Msg(format!(
                "the code's result cannot be turned into JSON ({what}); return plain objects, arrays, strings, numbers, booleans or null"
            )));
        }
        Err(e) => return Err(Conv::Js(e)),
    };
    serde_json::from_str(&text).map_err(|e| Conv::Msg(format!("the result is not JSON: {e}")))
}

/// Turns an rquickjs error into a [`JsError`], reading the pending exception.
fn classify(ctx: &Ctx<'_>, e: rquickjs::Error, memory_mb: u64) -> JsError {
    match e {
        rquickjs::Error::Exception => {
            let thrown = ctx.catch();
            let (message, line) = describe_thrown(&thrown);
            if message.contains("out of memory") {
                JsError::Memory(memory_mb)
            } else {
                JsError::Code { message, line }
            }
        }
        rquickjs::Error::Allocation => JsError::Memory(memory_mb),
        other => JsError::Engine(other.to_string()),
    }
}

/// `Name: message` of a thrown value and the line of the user's code it came from.
fn describe_thrown(v: &JsValue<'_>) -> (String, Option<u32>) {
    if let Some(obj) = v.as_object() {
        if let Some(ex) = Exception::from_object(obj.clone()) {
            let name: Option<String> = obj.get("name").ok();
            let message = ex.message().unwrap_or_default();
            let text = match name {
                Some(n) if !n.is_empty() && !message.is_empty() => format!("{n}: {message}"),
                Some(n) if !n.is_empty() => n,
                _ => message,
            };
            let line = ex.stack().as_deref().and_then(user_line);
            return (text, line);
        }
    }
    let shown = v
        .ctx()
        .json_stringify(v.clone())
        .ok()
        .flatten()
        .and_then(|s| s.to_string().ok())
        .unwrap_or_else(|| format!("a {}", v.type_name()));
    (format!("uncaught {shown}"), None)
}

/// The first stack frame in the user's code, as a line of that code.
fn user_line(stack: &str) -> Option<u32> {
    let needle = format!("{USER_FILE}:");
    stack.lines().find_map(|l| {
        let at = l.find(&needle)? + needle.len();
        let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
        let n: u32 = digits.parse().ok()?;
        Some(n.saturating_sub(WRAPPER_LINES).max(1))
    })
}

/// Compiles `code` without running it: the syntax error, if any.
pub fn check_js(code: &str) -> Result<(), JsError> {
    let (rt, cx) = sandbox(16 * 1024 * 1024, Arc::new(AtomicBool::new(false)))?;
    let out = cx.with(|ctx| {
        match ctx.eval_with_options::<JsValue, _>(wrap(code), eval_options(USER_FILE)) {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(&ctx, e, 16)),
        }
    });
    drop(cx);
    drop(rt);
    out
}

/// The node's error for a failed execution.
fn node_error(node: &str, e: JsError) -> NodeError {
    match &e {
        JsError::Code { message, line } => {
            NodeError::new("code", format!("code_js node `{node}`: {e}"))
                .with_details(json!({ "error": message, "line": line }))
        }
        JsError::Result(_) => NodeError::new("code", format!("code_js node `{node}`: {e}")),
        JsError::Timeout(_) => NodeError::new("timeout", format!("code_js node `{node}` {e}")),
        JsError::Memory(_) => NodeError::new("memory", format!("code_js node `{node}` {e}")),
        JsError::Cancelled => NodeError::new("cancelled", "the run was cancelled"),
        JsError::Engine(_) => NodeError::new("code", format!("code_js node `{node}`: {e}")),
    }
}

#[async_trait]
impl Node for CodeJs {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<CodeJsConfig, Value>(
            "code_js",
            "JavaScript",
            "code",
            "Runs JavaScript (QuickJS, strict mode) as the body of a function `(state, input, item)`: `state` is the run state, `input` the outputs of the nodes whose edges activated this one (by node id), `item` the map item (or null). What it returns (JSON; undefined is null) is the node's output; write state with the node's `assign`. console.log/info/warn/error become run logs. Each call gets a fresh sandbox with only standard ECMAScript globals (no require, fetch, timers or I/O), a time limit and a memory limit.",
        )
        .icon("code")
        .raw(&["code"])
        .example(
            "Score an order from state (\"assign\": {\"score\": \"{{ output.score }}\"})",
            json!({ "code": "const o = state.order;\nconst score = o.total / 10 + (o.items.length > 3 ? 5 : 0);\nconsole.log('score', score);\nreturn { score, vip: score > 50 };" }),
        )
        .example(
            "Combine the outputs of two earlier nodes, with a tighter limit",
            json!({ "code": "return { total: input.a.total + input.b.total };", "timeout_ms": 200, "memory_mb": 16 }),
        )
    }

    fn check(&self, config: &Map<String, Value>) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if let Some(Value::String(code)) = config.get("code") {
            if let Err(e @ JsError::Code { .. }) = check_js(code) {
                out.push(ConfigProblem {
                    path: "/code".into(),
                    message: format!("the code does not compile: {e}"),
                    fix: "fix the JavaScript; the code is the body of a function, so use `return` for the result".into(),
                });
            }
        }
        out
    }

    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: CodeJsConfig = ctx.config_as()?;
        let node = ctx.node_id.clone();
        if c.timeout_ms == 0 || c.timeout_ms > MAX_TIMEOUT_MS {
            return Err(NodeError::config(format!(
                "code_js node `{node}`: timeout_ms must be between 1 and {MAX_TIMEOUT_MS}, not {}",
                c.timeout_ms
            )));
        }
        if c.memory_mb == 0 || c.memory_mb > MAX_MEMORY_MB {
            return Err(NodeError::config(format!(
                "code_js node `{node}`: memory_mb must be between 1 and {MAX_MEMORY_MB}, not {}",
                c.memory_mb
            )));
        }
        let text = |v: &Value| {
            serde_json::to_string(v)
                .map_err(|e| NodeError::new("code", format!("code_js node `{node}`: {e}")))
        };
        let input: Map<String, Value> = ctx
            .inputs
            .iter()
            .map(|(id, v)| (id.clone(), (**v).clone()))
            .collect();
        let item = ctx
            .scope
            .item
            .as_ref()
            .map(|(_, v)| (**v).clone())
            .unwrap_or(Value::Null);
        let job = JsJob {
            code: c.code,
            state: text(ctx.state())?,
            input: text(&Value::Object(input))?,
            item: text(&item)?,
            timeout: Duration::from_millis(c.timeout_ms),
            memory_bytes: (c.memory_mb as usize) * 1024 * 1024,
        };
        let cancel = ctx.cancel.clone();
        let (result, logs) = tokio::task::spawn_blocking(move || run_js(&job, Some(cancel)))
            .await
            .map_err(|e| {
                NodeError::new(
                    "code",
                    format!("code_js node `{node}`: the sandbox thread failed: {e}"),
                )
            })?;
        for l in logs {
            ctx.log(l.level, l.message);
        }
        let output = result.map_err(|e| node_error(&node, e))?;
        Ok(NodeOutput::output(output).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(code: &str) -> JsJob {
        JsJob {
            code: code.into(),
            state: "{}".into(),
            input: "{}".into(),
            item: "null".into(),
            timeout: Duration::from_millis(500),
            memory_bytes: 16 * 1024 * 1024,
        }
    }

    #[test]
    fn stack_lines_are_relative_to_the_user_code() {
        assert_eq!(user_line("    at <anonymous> (code.js:4:9)\n"), Some(3));
        assert_eq!(
            user_line("    at parse (native)\n    at f (code.js:2:1)"),
            Some(1)
        );
        assert_eq!(user_line("    at prelude.js:3:1"), None);
    }

    #[test]
    fn errors_carry_the_user_line() {
        let (r, _) = run_js(&job("const a = 1;\nconst b = null;\nreturn b.x;"), None);
        match r {
            Err(JsError::Code { message, line }) => {
                assert!(message.starts_with("TypeError: "), "{message}");
                assert_eq!(line, Some(3), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let (r, _) = run_js(&job("let x = 1;\n\nlet = = 2;"), None);
        match r {
            Err(JsError::Code { message, line }) => {
                assert!(message.starts_with("SyntaxError: "), "{message}");
                assert_eq!(line, Some(3), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_js("return 1;\n}"),
            Err(JsError::Code { line: Some(2), .. }) | Err(JsError::Code { .. })
        ));
        assert_eq!(check_js("return state.x + 1;"), Ok(()));
    }
}
