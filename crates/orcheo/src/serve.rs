//! `orcheo serve` and `orcheo api-key`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use orcheo_server::{Config, Server};
use orcheo_store::{Scope, Store};
use std::path::PathBuf;

/// Where the configuration comes from; flags override `orcheo.toml` and `ORCHEO_*`.
#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// Configuration file (default: ./orcheo.toml when present, or ORCHEO_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite file and lock); default ~/.orcheo.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// postgres://… to use PostgreSQL instead of SQLite.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config> {
        let mut cfg = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(u) = &self.database_url {
            cfg.database_url = Some(u.clone());
        }
        Ok(cfg)
    }
}

/// Arguments of `orcheo serve`.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long)]
    pub bind: Option<String>,
    /// Port (default 8000; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Most runs executed at once.
    #[arg(long)]
    pub worker_concurrency: Option<usize>,
    /// Serve the API without executing runs (another server's worker runs them).
    #[arg(long)]
    pub no_worker: bool,
}

/// `orcheo serve`: runs until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(args: ServeArgs) -> Result<u8> {
    let mut cfg = args.config.load()?;
    if let Some(b) = args.bind {
        cfg.bind = b;
    }
    if let Some(p) = args.port {
        cfg.port = p;
    }
    if let Some(n) = args.worker_concurrency {
        cfg.worker_concurrency = n;
    }
    if args.no_worker {
        cfg.worker = false;
    }
    let database = match &cfg.database_url {
        Some(u) => orcheo_store::redact_url(u),
        None => format!("SQLite in {}", cfg.data_dir.display()),
    };
    let (server, welcome) = Server::start(cfg).await?;
    let url = server.url();
    crate::out(&format!(
        "Orcheo is running at {url}  (database: {database})"
    ));
    crate::out(&format!("API reference: {url}/api/docs"));
    crate::out("");
    if let Some(key) = &welcome.admin_key {
        crate::out("First start: an admin API key was created. It is shown only now:");
        crate::out(&format!("    {key}"));
    }
    crate::out("Open this one-time link to sign in from a browser (valid for 24 hours):");
    crate::out(&format!("    {}", welcome.login_url));
    crate::out("");
    crate::out("Press Ctrl-C to stop.");
    wait_for_signal().await;
    crate::out("Shutting down: letting running runs finish, the rest resume on the next start…");
    server.shutdown().await?;
    Ok(crate::exit::OK)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `orcheo api-key …`: manage keys directly in the database (run on the server's machine).
#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key; prints the secret once.
    Create {
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// A scope (repeat for several): workflows:read, workflows:write, runs:read,
        /// runs:execute, credentials:manage, triggers:manage, admin.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List keys (metadata only).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Revoke a key by id or prefix; it stops working at once.
    Revoke {
        /// Key id or prefix.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

async fn open(cfg: &ConfigArgs) -> Result<Store> {
    let cfg = cfg.load()?;
    Store::open(&cfg.store())
        .await
        .context("opening the database")
}

/// `orcheo vault …`: key management on the server's machine.
#[derive(Subcommand)]
pub enum VaultCommand {
    /// Re-encrypt every credential under a new key (a new key in the key file, or the first of
    /// ORCHEO_VAULT_KEY); then the old keys are removed, unless --keep-old. Servers keep running.
    RotateKey {
        /// Keep the old keys in the key file (they still open nothing once all is resealed).
        #[arg(long)]
        keep_old: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Runs an `orcheo vault` command.
pub async fn vault(cmd: VaultCommand) -> Result<u8> {
    match cmd {
        VaultCommand::RotateKey {
            keep_old,
            json,
            config,
        } => {
            let cfg = config.load()?;
            let store = Store::open(&cfg.store())
                .await
                .context("opening the database")?;
            let r = orcheo_server::vault::rotate_key(&store, &cfg, keep_old).await;
            store.close().await;
            let r = r?;
            if json {
                crate::out(&serde_json::to_string_pretty(&r)?);
            } else {
                crate::out(&format!(
                    "vault key {} is active{}; {} credential versions re-encrypted",
                    r.active_key,
                    if r.new_key { " (new)" } else { "" },
                    r.resealed
                ));
                if !r.retired.is_empty() {
                    crate::out(&format!("retired: {}", r.retired.join(", ")));
                }
            }
            Ok(crate::exit::OK)
        }
    }
}

/// Runs an `orcheo api-key` command.
pub async fn api_key(cmd: ApiKeyCommand) -> Result<u8> {
    match cmd {
        ApiKeyCommand::Create {
            name,
            scopes,
            json,
            config,
        } => {
            let scopes = scopes
                .iter()
                .flat_map(|s| s.split(','))
                .map(Scope::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!(e))?;
            let store = open(&config).await?;
            let k = store.create_api_key(&name, &scopes, "cli").await?;
            store
                .audit(
                    "cli",
                    "api_key.create",
                    &k.record.id,
                    serde_json::json!({"name": name, "prefix": k.record.prefix, "scopes": k.record.scopes}),
                )
                .await?;
            if json {
                let mut v = serde_json::to_value(&k.record)?;
                v["secret_once"] = k.secret.clone().into();
                crate::out(&serde_json::to_string_pretty(&v)?);
            } else {
                crate::out(&k.secret);
                eprintln!(
                    "(key `{}` id {}; the secret above is not stored and cannot be shown again)",
                    name, k.record.id
                );
            }
            store.close().await;
            Ok(crate::exit::OK)
        }
        ApiKeyCommand::List { json, config } => {
            let store = open(&config).await?;
            let keys = store.list_api_keys().await?;
            if json {
                crate::out(&serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                    crate::out(&format!(
                        "ok_{}_…  {:<28} {:<40} {}{}",
                        k.prefix,
                        k.name,
                        scopes.join(","),
                        k.created_at.format("%Y-%m-%d %H:%M"),
                        if k.revoked_at.is_some() {
                            "  REVOKED"
                        } else {
                            ""
                        }
                    ));
                }
            }
            store.close().await;
            Ok(crate::exit::OK)
        }
        ApiKeyCommand::Revoke { id, json, config } => {
            let store = open(&config).await?;
            let k = store.revoke_api_key(&id).await?;
            store
                .audit(
                    "cli",
                    "api_key.revoke",
                    &k.id,
                    serde_json::json!({"prefix": k.prefix}),
                )
                .await?;
            if json {
                crate::out(&serde_json::to_string_pretty(&k)?);
            } else {
                crate::out(&format!("revoked ok_{}_… ({})", k.prefix, k.name));
            }
            store.close().await;
            Ok(crate::exit::OK)
        }
    }
}
