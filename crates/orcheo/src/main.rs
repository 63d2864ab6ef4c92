//! `orcheo`: one binary that is the server (with its worker), the local runner and the CLI.

mod client;
mod credential;
mod local;
mod serve;

/// mimalloc: the engine allocates many small short-lived values per step, where it is about
/// twice as fast as the system allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes of `orcheo run` and `orcheo validate`.
pub mod exit {
    /// The run completed, or the document is valid.
    pub const OK: u8 = 0;
    /// The run failed.
    pub const FAILED: u8 = 1;
    /// The document or the input is invalid, or the command line is wrong.
    pub const INVALID: u8 = 2;
    /// The run is waiting for input (resume it with `--resume`).
    pub const WAITING: u8 = 3;
    /// The run was cancelled (Ctrl-C).
    pub const CANCELLED: u8 = 4;
    /// Something outside the workflow went wrong (I/O, storage).
    pub const ERROR: u8 = 5;
}

#[derive(Parser)]
#[command(name = "orcheo", version, about = "Orcheo: workflow automation with one durable engine", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `orcheo run …` subcommands that act on a server's runs.
#[derive(Subcommand)]
enum RunOnServer {
    /// Retry a failed run on a server from its last checkpoint.
    Retry {
        /// Run id.
        id: String,
        /// Wait for it and print the outcome.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: client::Remote,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow file locally, streaming its events (`orcheo run retry ID` retries a
    /// failed run on a server).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Run {
        #[command(subcommand)]
        server: Option<RunOnServer>,
        #[command(flatten)]
        args: local::RunArgs,
    },
    /// Check workflow files and print every problem found.
    Validate(local::ValidateArgs),
    /// Print the JSON Schema of the workflow document.
    Schema,
    /// List the node catalog as JSON.
    Nodes {
        /// Show only this node type.
        #[arg(long = "type")]
        type_id: Option<String>,
        /// Print the Markdown reference (docs/nodes.md) instead of JSON.
        #[arg(long)]
        markdown: bool,
    },
    /// Start the server: the API, live streams and the worker (SQLite by default).
    Serve(serve::ServeArgs),
    /// Manage API keys in the server's database.
    #[command(subcommand)]
    ApiKey(serve::ApiKeyCommand),
    /// Manage the credential vault's keys in the server's database and key file.
    #[command(subcommand)]
    Vault(serve::VaultCommand),
    /// Work with workflows on a server: push, list, show, versions, diff, run, logs.
    Workflow {
        #[command(subcommand)]
        command: client::WorkflowCommand,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// Manage triggers on a server: list, create (--cron or --webhook), pause, resume, next.
    Trigger {
        #[command(subcommand)]
        command: client::TriggerCommand,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// Manage credentials on a server: types, create, list, show, test, rotate, delete. Secrets
    /// are read from standard input or a hidden prompt, never from the command line.
    Credential {
        #[command(subcommand)]
        command: credential::CredentialCommand,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// Show a run's status and outcome on a server.
    RunStatus {
        /// The run id.
        run_id: String,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// List the checkpoints of a local run.
    Checkpoints {
        /// The run id.
        run_id: String,
        /// Where local runs keep their checkpoints.
        #[arg(long, default_value = local::DEFAULT_CHECKPOINT_DIR, env = "ORCHEO_CHECKPOINT_DIR")]
        checkpoint_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does by default; the CLI stays quiet unless asked.
    let default_log = if matches!(cli.command, Command::Serve(_)) {
        "info,sqlx=warn,tower_http=warn"
    } else {
        "off"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORCHEO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// Prints a line to stdout; a closed pipe (`orcheo schema | head`) is not an error.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Serve(args) => runtime()?.block_on(serve::serve(args)),
        Command::ApiKey(cmd) => runtime()?.block_on(serve::api_key(cmd)),
        Command::Vault(cmd) => runtime()?.block_on(serve::vault(cmd)),
        Command::Workflow { command, remote } => {
            runtime()?.block_on(client::workflow(command, remote))
        }
        Command::Trigger { command, remote } => {
            runtime()?.block_on(client::trigger(command, remote))
        }
        Command::Credential { command, remote } => {
            runtime()?.block_on(credential::credential(command, remote))
        }
        Command::RunStatus { run_id, remote } => {
            runtime()?.block_on(client::run_status(run_id, remote))
        }
        Command::Run {
            server: Some(RunOnServer::Retry { id, wait, remote }),
            ..
        } => runtime()?.block_on(client::run_cmd(
            client::RunCommand::Retry { id, wait },
            remote,
        )),
        Command::Run { server: None, args } => runtime()?.block_on(local::run(args)),
        Command::Validate(args) => local::validate(args),
        Command::Schema => {
            out(&serde_json::to_string_pretty(
                &orcheo_core::document::workflow_schema(),
            )?);
            Ok(exit::OK)
        }
        Command::Nodes { type_id, markdown } => {
            let specs = orcheo_nodes::catalog().specs();
            if markdown {
                out(orcheo_nodes::docs::catalog_markdown(&specs).trim_end());
                return Ok(exit::OK);
            }
            match type_id {
                Some(t) => match specs.into_iter().find(|s| s.type_id == t) {
                    Some(s) => out(&serde_json::to_string_pretty(&s)?),
                    None => {
                        eprintln!("error: no node type `{t}`; run `orcheo nodes` to list them");
                        return Ok(exit::INVALID);
                    }
                },
                None => out(&serde_json::to_string_pretty(&specs)?),
            }
            Ok(exit::OK)
        }
        Command::Checkpoints {
            run_id,
            checkpoint_dir,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(local::list_checkpoints(&run_id, &checkpoint_dir))
        }
    }
}
