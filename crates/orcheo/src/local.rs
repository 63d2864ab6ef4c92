//! Local commands: `orcheo run`, `orcheo validate`, `orcheo checkpoints`.

use crate::exit;
use anyhow::{Context, Result};
use clap::Args;
use orcheo_core::checkpoint::{Checkpointer, FileCheckpointer, RunStatus};
use orcheo_core::engine::{Engine, EngineError, RunOptions, RunOutcome};
use orcheo_core::event::{Event, EventKind, FnSink};
use orcheo_core::validate::{self, Problem, Severity};
use orcheo_core::CompiledWorkflow;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Default directory of local run checkpoints.
pub const DEFAULT_CHECKPOINT_DIR: &str = ".orcheo/runs";

/// Arguments of `orcheo run`.
#[derive(Args)]
pub struct RunArgs {
    /// The workflow file (orcheo.workflow/1 JSON).
    #[arg(required = true)]
    pub file: Option<PathBuf>,
    /// Run input: inline JSON, or @path to a JSON file.
    #[arg(long, short)]
    pub input: Option<String>,
    /// Print one JSON event per line instead of the human view.
    #[arg(long)]
    pub json: bool,
    /// Continue a run: RUN_ID (its latest checkpoint) or RUN_ID@CHECKPOINT (an earlier one, which forks a new run).
    #[arg(long, value_name = "RUN[@CHECKPOINT]")]
    pub resume: Option<String>,
    /// Value for a waiting run (an approval decision, ...): inline JSON or @path.
    #[arg(long, value_name = "JSON")]
    pub resume_value: Option<String>,
    /// With --resume-value: answer only this node's interrupt (NODE or NODE[INDEX] for a map
    /// item); the run's other interrupts keep waiting.
    #[arg(long, value_name = "NODE", requires = "resume_value")]
    pub resume_node: Option<String>,
    /// State fields to replace when forking from a checkpoint: a JSON object or @path.
    #[arg(long, value_name = "JSON", requires = "resume")]
    pub patch: Option<String>,
    /// Where checkpoints are kept so runs can be resumed.
    #[arg(long, default_value = DEFAULT_CHECKPOINT_DIR, env = "ORCHEO_CHECKPOINT_DIR")]
    pub checkpoint_dir: PathBuf,
    /// Keep no checkpoints (the run cannot be resumed).
    #[arg(long, conflicts_with = "resume")]
    pub no_checkpoint: bool,
    /// Debug mode: also record each node's rendered config and the state it saw
    /// (`node_input` events; shown with --json).
    #[arg(long)]
    pub debug: bool,
    /// Use this run id instead of a generated one.
    #[arg(long)]
    pub run_id: Option<String>,
}

/// Arguments of `orcheo validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// Workflow files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print the problems as JSON.
    #[arg(long)]
    pub json: bool,
}

fn read_json_arg(arg: &str, what: &str) -> Result<Value, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {what} file {path}: {e}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| format!("{what} is not valid JSON: {e}"))
}

fn print_problems(file: &Path, problems: &[Problem]) {
    for p in problems {
        eprintln!("{}: {p}", file.display());
    }
}

/// Loads, validates and compiles a workflow file; prints problems when it is invalid.
fn load(file: &Path, catalog: &orcheo_core::Catalog) -> Result<CompiledWorkflow, u8> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return Err(exit::INVALID);
        }
    };
    let (doc, warnings) = match validate::validate_text(&text, catalog) {
        Ok(x) => x,
        Err(problems) => {
            print_problems(file, &problems);
            let n = problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .count();
            eprintln!("{}: {n} error(s); the workflow was not run", file.display());
            return Err(exit::INVALID);
        }
    };
    print_problems(file, &warnings);
    let compiled = CompiledWorkflow::compile(doc, catalog).map_err(|problems| {
        print_problems(file, &problems);
        exit::INVALID
    })?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(compiled.with_base_dir(dir))
}

/// `orcheo validate`.
pub fn validate(args: ValidateArgs) -> Result<u8> {
    let catalog = orcheo_nodes::catalog();
    let mut code = exit::OK;
    let mut report = Vec::new();
    for file in &args.files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                code = exit::INVALID;
                continue;
            }
        };
        let (ok, problems) = match validate::validate_text(&text, &catalog) {
            Ok((_, warnings)) => (true, warnings),
            Err(problems) => (false, problems),
        };
        if !ok {
            code = exit::INVALID;
        }
        if args.json {
            report.push(serde_json::json!({ "file": file.display().to_string(), "valid": ok, "problems": problems }));
        } else {
            print_problems(file, &problems);
            if ok {
                crate::out(&format!("{}: ok", file.display()));
            } else {
                let n = problems
                    .iter()
                    .filter(|p| p.severity == Severity::Error)
                    .count();
                crate::out(&format!("{}: {n} error(s)", file.display()));
            }
        }
    }
    if args.json {
        crate::out(&serde_json::to_string_pretty(&report)?);
    }
    Ok(code)
}

/// `orcheo checkpoints`.
pub async fn list_checkpoints(run_id: &str, dir: &Path) -> Result<u8> {
    let store = FileCheckpointer::new(dir).with_context(|| format!("opening {}", dir.display()))?;
    let list = store.list(run_id).await?;
    if list.is_empty() {
        eprintln!(
            "error: no checkpoints for run `{run_id}` in {}",
            dir.display()
        );
        return Ok(exit::INVALID);
    }
    crate::out(&serde_json::to_string_pretty(&list)?);
    Ok(exit::OK)
}

/// Human view of the event stream: one line per notable event and a live progress line.
struct Printer {
    tty: bool,
    started: Instant,
    done: usize,
    running: Vec<String>,
    step: u32,
    progress_shown: bool,
}

impl Printer {
    fn clear(&mut self, out: &mut impl Write) {
        if self.progress_shown {
            let _ = write!(out, "\r\x1b[2K");
            self.progress_shown = false;
        }
    }
    fn line(&mut self, out: &mut impl Write, text: String) {
        self.clear(out);
        let _ = writeln!(out, "{text}");
    }
    fn progress(&mut self, out: &mut impl Write) {
        if !self.tty {
            return;
        }
        self.clear(out);
        let running = if self.running.is_empty() {
            String::new()
        } else {
            format!(" · running {}", self.running.join(", "))
        };
        let _ = write!(
            out,
            "⏵ step {} · {} done · {:.1}s{running}",
            self.step,
            self.done,
            self.started.elapsed().as_secs_f64()
        );
        let _ = out.flush();
        self.progress_shown = true;
    }
    fn event(&mut self, e: &Event) {
        let mut out = std::io::stderr().lock();
        let trunc = |v: &Value| {
            let s = v.to_string();
            if s.chars().count() > 120 {
                format!("{}…", s.chars().take(120).collect::<String>())
            } else {
                s
            }
        };
        match &e.kind {
            EventKind::RunStarted {
                workflow,
                resumed_from,
                forked_from,
                ..
            } => {
                let how = match (resumed_from, forked_from) {
                    (_, Some(f)) => format!(" (forked from {}@{})", f.run_id, f.checkpoint),
                    (Some(c), None) => format!(" (resumed from checkpoint {c})"),
                    (None, None) => String::new(),
                };
                self.line(&mut out, format!("▶ run {} · {workflow}{how}", e.run_id));
            }
            EventKind::StepStarted { step, .. } => self.step = *step,
            EventKind::NodeInput { node, config, .. } => {
                self.line(&mut out, format!("  ⋯ {node} config {}", trunc(config)));
            }
            EventKind::NodeStarted { node, index, .. } => {
                if index.is_none() {
                    self.running.push(node.to_string());
                }
            }
            EventKind::NodeCompleted {
                node,
                index,
                output,
                duration_ms,
                branch,
                ..
            } => {
                if index.is_none() {
                    self.running.retain(|n| **n != **node);
                    self.done += 1;
                    let b = branch
                        .as_ref()
                        .map(|b| format!(" → {b}"))
                        .unwrap_or_default();
                    self.line(
                        &mut out,
                        format!("  ✓ {node} ({duration_ms:.1} ms){b}  {}", trunc(output)),
                    );
                }
            }
            EventKind::NodeFailed {
                node,
                attempt,
                error,
                will_retry,
                retry_in_ms,
                handling,
                index,
                ..
            } => {
                if !will_retry {
                    self.running.retain(|n| **n != **node);
                }
                let at = index.map(|i| format!("[{i}]")).unwrap_or_default();
                let next = if *will_retry {
                    format!("retrying in {} ms", retry_in_ms.unwrap_or(0))
                } else {
                    handling.clone()
                };
                self.line(
                    &mut out,
                    format!(
                        "  ✗ {node}{at} attempt {attempt}: {} ({}) → {next}",
                        error.message, error.kind
                    ),
                );
            }
            EventKind::NodeLog {
                node,
                level,
                message,
                data,
                ..
            } => {
                let d = data
                    .as_ref()
                    .map(|d| format!("  {}", trunc(d)))
                    .unwrap_or_default();
                self.line(
                    &mut out,
                    format!("  · {node} [{level:?}] {message}{d}").to_string(),
                );
            }
            EventKind::RunWaiting {
                node,
                interrupt,
                timeout_at,
                ..
            } => {
                let t = timeout_at
                    .map(|t| format!(" (until {t})"))
                    .unwrap_or_default();
                self.line(
                    &mut out,
                    format!("⏸ waiting at {node}{t}: {}", trunc(&interrupt.payload)),
                );
            }
            EventKind::RunCompleted { duration_ms, .. } => {
                self.line(&mut out, format!("✔ completed in {duration_ms:.1} ms"))
            }
            EventKind::RunFailed { error, node } => {
                let at = node
                    .as_ref()
                    .map(|n| format!(" at {n}"))
                    .unwrap_or_default();
                self.line(
                    &mut out,
                    format!("✘ failed{at}: {} ({})", error.message, error.kind),
                );
            }
            EventKind::RunCancelled { reason } => {
                self.line(&mut out, format!("■ cancelled: {reason}"))
            }
            EventKind::CheckpointSaved { .. } => {}
        }
        self.progress(&mut out);
    }
}

/// `orcheo run`.
pub async fn run(args: RunArgs) -> Result<u8> {
    let catalog = orcheo_nodes::shared_catalog();
    let Some(file) = args.file.clone() else {
        eprintln!("error: name the workflow file to run (or `orcheo run retry RUN_ID` for a server's run)");
        return Ok(exit::INVALID);
    };
    let wf = match load(&file, &catalog) {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let input = match args
        .input
        .as_deref()
        .map(|s| read_json_arg(s, "--input"))
        .transpose()
    {
        Ok(v) => v.unwrap_or_else(|| serde_json::json!({})),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::INVALID);
        }
    };
    let resume_value = match args
        .resume_value
        .as_deref()
        .map(|s| read_json_arg(s, "--resume-value"))
        .transpose()
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::INVALID);
        }
    };
    let patch = match args
        .patch
        .as_deref()
        .map(|s| read_json_arg(s, "--patch"))
        .transpose()
    {
        Ok(Some(Value::Object(m))) => Some(m),
        Ok(Some(_)) => {
            eprintln!("error: --patch must be a JSON object of state fields");
            return Ok(exit::INVALID);
        }
        Ok(None) => None,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::INVALID);
        }
    };
    if args.patch.is_some() && !args.resume.as_deref().is_some_and(|r| r.contains('@')) {
        eprintln!("error: --patch edits the state of a fork; name the checkpoint to fork from with --resume RUN@CHECKPOINT (see `orcheo checkpoints RUN`)");
        return Ok(exit::INVALID);
    }
    let json = args.json;
    let printer = Mutex::new(Printer {
        tty: std::io::stderr().is_terminal(),
        started: Instant::now(),
        done: 0,
        running: Vec::new(),
        step: 0,
        progress_shown: false,
    });
    let sink = Arc::new(FnSink(move |e: Event| {
        if json {
            let mut out = std::io::stdout().lock();
            if let Ok(line) = serde_json::to_string(&e) {
                let _ = writeln!(out, "{line}");
            }
        } else if let Ok(mut p) = printer.lock() {
            p.event(&e);
        }
    }));
    let mut builder = Engine::builder(catalog).sink(sink);
    let store: Option<Arc<FileCheckpointer>> = if args.no_checkpoint {
        None
    } else {
        Some(Arc::new(
            FileCheckpointer::new(&args.checkpoint_dir).with_context(|| {
                format!(
                    "creating checkpoint directory {}",
                    args.checkpoint_dir.display()
                )
            })?,
        ))
    };
    if let Some(s) = &store {
        builder = builder.checkpointer(s.clone());
    }
    let engine = builder.build();
    let cancel = tokio_util::sync::CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c2.cancel();
        }
    });
    let mut opts = RunOptions::default();
    opts.run_id = args.run_id.clone();
    opts.cancel = cancel;
    opts.debug = args.debug;
    if let Some(spec) = &args.resume_node {
        let (node, index) = match spec.strip_suffix(']').and_then(|s| s.split_once('[')) {
            Some((n, i)) => match i.parse::<usize>() {
                Ok(i) => (n.to_string(), Some(i)),
                Err(_) => {
                    eprintln!(
                        "error: --resume-node {spec}: write NODE or NODE[INDEX] with a number"
                    );
                    return Ok(exit::INVALID);
                }
            },
            None => (spec.clone(), None),
        };
        opts.resume_at = Some(orcheo_core::ResumeTarget { node, index });
    }
    let result = match &args.resume {
        None => engine.start(&wf, input, opts).await,
        Some(spec) => {
            let (run_id, cp) = match spec.split_once('@') {
                Some((r, c)) => match c.parse::<u64>() {
                    Ok(c) => (r.to_string(), Some(c)),
                    Err(_) => {
                        eprintln!("error: --resume {spec}: the checkpoint after @ must be a number (see `orcheo checkpoints {r}`)");
                        return Ok(exit::INVALID);
                    }
                },
                None => (spec.clone(), None),
            };
            if let Some(store) = &store {
                if let Ok(Some(latest)) = store.latest(&run_id).await {
                    if !latest.workflow_hash.is_empty() && latest.workflow_hash != wf.hash {
                        eprintln!("warning: {} changed since run {run_id} started; continuing with the current file", file.display());
                    }
                }
            }
            match cp {
                None => engine.resume(&wf, &run_id, resume_value, opts).await,
                Some(c) => {
                    let latest = match &store {
                        Some(s) => s.latest(&run_id).await?.map(|l| l.id),
                        None => None,
                    };
                    if latest == Some(c) && patch.is_none() {
                        engine
                            .resume_from(&wf, &run_id, c, resume_value, opts)
                            .await
                    } else {
                        let forked = engine.fork(&wf, &run_id, c, patch, opts).await;
                        match (forked, resume_value) {
                            (Ok(out), Some(v)) if out.status == RunStatus::Waiting => {
                                let opts = RunOptions::default();
                                engine.resume(&wf, &out.run_id, Some(v), opts).await
                            }
                            (r, _) => r,
                        }
                    }
                }
            }
        }
    };
    let outcome = match result {
        Ok(o) => o,
        Err(EngineError::InvalidInput(m)) => {
            eprintln!("error: {m}");
            return Ok(exit::INVALID);
        }
        Err(
            e @ (EngineError::NotFound(_)
            | EngineError::NotResumable(_)
            | EngineError::NoCheckpointer(_)),
        ) => {
            eprintln!("error: {e}");
            return Ok(exit::INVALID);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(report(&args, &outcome))
}

fn report(args: &RunArgs, o: &RunOutcome) -> u8 {
    if !args.json {
        let summary = serde_json::json!({ "run_id": o.run_id, "status": o.status.as_str(), "state": o.state });
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    }
    match o.status {
        RunStatus::Completed => exit::OK,
        RunStatus::Waiting => {
            if !args.json {
                eprintln!(
                    "resume with: orcheo run {} --resume {} --resume-value '<json>'",
                    args.file.as_deref().unwrap_or(Path::new("FILE")).display(),
                    o.run_id
                );
            }
            exit::WAITING
        }
        RunStatus::Cancelled => exit::CANCELLED,
        _ => exit::FAILED,
    }
}
