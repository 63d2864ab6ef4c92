//! Orcheo's server: the REST API under `/api`, live event streams (SSE and WebSocket),
//! API-key auth with scopes, the OpenAPI document and reference page, and the durable worker
//! loop that leases queued runs from the store and executes them with the engine.

pub mod api;
pub mod auth;
pub mod config;
/// Credential operations that reach outside the vault (testing against the real service).
pub mod credentials;
pub mod diff;
pub mod error;
pub mod stream;
pub mod triggers;
pub mod vault;
pub mod worker;

pub use config::Config;

use anyhow::Context;
use orcheo_core::{Catalog, CompiledWorkflow, Workflow};
use orcheo_store::{Backend, Scope, Store};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The node catalog.
    pub catalog: Arc<Catalog>,
    /// Compiled workflow versions (immutable, so cached forever, bounded).
    pub compiled: Arc<CompiledCache>,
    /// Wakes the local worker when a run is queued.
    pub wake: Arc<tokio::sync::Notify>,
    /// The local worker, if this process runs one.
    pub worker: Option<Arc<worker::Worker>>,
    /// The configuration.
    pub config: Arc<Config>,
    /// Fired when the server begins to shut down (streams end).
    pub shutdown: CancellationToken,
    /// The base URL people and senders use (webhook URLs start with it).
    pub base_url: Arc<str>,
    /// Per-trigger rate limits.
    pub limits: Arc<triggers::ratelimit::RateLimits>,
    /// The credential vault.
    pub vault: Arc<vault::Vault>,
    /// The client for outbound requests (polling), guarded against server-side request
    /// forgery by the configured allowlist.
    pub http: orcheo_nodes::net::GuardedClient,
}

/// The outbound HTTP client: the SSRF allowlist, at most 10 redirects, rustls, a user agent.
fn outbound_client(config: &Config) -> anyhow::Result<orcheo_nodes::net::GuardedClient> {
    orcheo_nodes::net::GuardedClient::from_allowlist(&config.http_allow).map_err(anyhow::Error::msg)
}

/// Compiled workflow versions by `(workflow id, version)`.
#[derive(Default)]
pub struct CompiledCache(Mutex<HashMap<(String, u32), Arc<CompiledWorkflow>>>);

impl CompiledCache {
    /// The compiled version, compiling (and caching) it when needed.
    pub async fn get(
        &self,
        store: &Store,
        catalog: &Arc<Catalog>,
        id: &str,
        version: u32,
    ) -> Result<Arc<CompiledWorkflow>, error::ApiError> {
        let key = (id.to_string(), version);
        if let Some(c) = self.lock().get(&key) {
            return Ok(c.clone());
        }
        let v = store.get_version(id, Some(version)).await?;
        let doc = Workflow::from_value(v.document).map_err(|e| {
            error::ApiError::invalid(
                format!("stored workflow `{id}` version {version} no longer parses: {e}"),
                None,
            )
        })?;
        let compiled = CompiledWorkflow::compile(doc, catalog)
            .map(Arc::new)
            .map_err(|p| {
                error::ApiError::invalid(
                    format!(
                    "workflow `{id}` version {version} is not valid for this server's node catalog"
                ),
                    serde_json::to_value(p).ok(),
                )
            })?;
        let mut m = self.lock();
        if m.len() >= 1024 {
            m.clear();
        }
        m.insert(key, compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<CompiledWorkflow>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The state handlers share.
    pub state: AppState,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Keeps the SQLite data directory locked while the server runs.
    _lock: Option<std::fs::File>,
}

/// What a start prints: the admin key (first start only) and a one-time login URL.
#[derive(Debug, Clone)]
pub struct Welcome {
    /// The admin API key, created on the very first start (shown once).
    pub admin_key: Option<String>,
    /// Opens a browser session without typing a key (valid once, for 24 hours), like
    /// Jupyter's token URL; a new one is made at every start.
    pub login_url: String,
}

impl Server {
    /// Opens the store, starts the worker and listens. On the very first start (no API key
    /// exists yet) it also creates an admin key; every start makes a one-time login URL.
    pub async fn start(cfg: Config) -> anyhow::Result<(Server, Welcome)> {
        cfg.check()?;
        let store = Store::open(&cfg.store()).await?;
        let lock = if store.backend() == Backend::Sqlite {
            let lock = lock_data_dir(&cfg.data_dir)?;
            // Only this process can hold leases on this file: runs left running by a killed
            // process are taken over at once instead of after their lease expires.
            let n = store.expire_all_leases().await?;
            if n > 0 {
                tracing::info!(
                    runs = n,
                    "resuming runs left unfinished by the previous process"
                );
            }
            Some(lock)
        } else {
            None
        };
        let listener = TcpListener::bind((cfg.bind.as_str(), cfg.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", cfg.bind, cfg.port))?;
        let addr = listener.local_addr()?;
        let http = outbound_client(&cfg)?;
        let catalog = {
            // The HTTP node uses the server's guarded client (its allowlist).
            let mut c = orcheo_nodes::catalog();
            c.register(orcheo_nodes::HttpRequest::new(http.clone()));
            Arc::new(c)
        };
        let config = Arc::new(cfg);
        let wake = Arc::new(tokio::sync::Notify::new());
        let compiled = Arc::new(CompiledCache::default());
        let shutdown = CancellationToken::new();
        let vault = Arc::new(vault::Vault::load(store.clone(), &config, http.clone()).await?);
        let worker = if config.worker {
            Some(worker::Worker::start(
                store.clone(),
                catalog.clone(),
                compiled.clone(),
                wake.clone(),
                vault.clone(),
                &config,
            ))
        } else {
            None
        };
        let state = AppState {
            store: store.clone(),
            catalog,
            compiled,
            wake,
            worker,
            config: config.clone(),
            shutdown: shutdown.clone(),
            base_url: public_url(&config, addr).into(),
            limits: Arc::default(),
            http,
            vault,
        };
        let admin_key = if store.count_active_api_keys().await? == 0 {
            let key = store
                .create_api_key("admin (first start)", &[Scope::Admin], "orcheo serve")
                .await?;
            store
                .audit(
                    "orcheo serve",
                    "api_key.create",
                    &key.record.id,
                    serde_json::json!({"name": key.record.name, "prefix": key.record.prefix, "scopes": ["admin"]}),
                )
                .await?;
            Some(key.secret)
        } else {
            None
        };
        let token = store
            .create_login_token(&[Scope::Admin], Duration::from_secs(24 * 3600))
            .await?;
        let welcome = Welcome {
            admin_key,
            login_url: format!("{}/login?token={token}", public_url(&config, addr)),
        };
        tokio::spawn(triggers::cron::run_scheduler(
            state.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(triggers::polling::run_poller(
            state.clone(),
            shutdown.clone(),
        ));
        let app = api::router(state.clone());
        let stop = shutdown.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service())
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        tracing::info!(%addr, backend = store.backend().as_str(), "orcheo serve is listening");
        Ok((
            Server {
                addr,
                state,
                http,
                _lock: lock,
            },
            welcome,
        ))
    }

    /// The shared state (store, vault, configuration): for tests and embedding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The base URL people open.
    pub fn url(&self) -> String {
        public_url(&self.state.config, self.addr)
    }

    /// Stops taking requests and runs, lets running runs finish for the grace period, and
    /// leaves the rest resumable (their leases are released for the next start).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.shutdown.cancel();
        if let Some(w) = &self.state.worker {
            w.shutdown(Duration::from_secs_f64(
                self.state.config.shutdown_grace_secs,
            ))
            .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http).await;
        self.state.store.close().await;
        Ok(())
    }
}

fn public_url(cfg: &Config, addr: SocketAddr) -> String {
    match &cfg.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else if addr.is_ipv6() {
                format!("[{}]", addr.ip())
            } else {
                addr.ip().to_string()
            };
            format!("http://{host}:{}", addr.port())
        }
    }
}

/// Takes an exclusive lock on the data directory, so two servers never share one SQLite file.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let path = dir.join("orcheo.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another orcheo server is using the data directory {}; stop it, or give this one another --data-dir (several servers can share one PostgreSQL database instead)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}
