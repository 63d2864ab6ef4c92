//! Orcheo's persistence: workflows and their versions, runs, run events, checkpoints, API keys
//! and the audit log, behind one [`Store`] API with two backends (an embedded SQLite file, the
//! default, and PostgreSQL for teams).
//!
//! SQL is written once with `$N` placeholders, which both backends accept; only the DDL differs
//! (`migrations/sqlite`, `migrations/postgres`). JSON is stored as TEXT and times as epoch
//! milliseconds so rows decode the same way on both.

mod credentials;
mod keys;
mod runs;
mod triggers;
mod workflows;
mod writer;

pub use credentials::{CredentialPatch, CredentialRecord, NewCredential, SealedVersion};
pub use keys::{
    constant_time_eq, hash_secret, key_prefix, random_token, ApiKeyRecord, AuditEntry, NewApiKey,
    Scope, ALL_SCOPES,
};
pub use runs::{
    CancelOutcome, LeasedRun, NewRun, RunFilter, RunFinish, RunRecord, RunStorage, StoredEvent,
};
pub use triggers::{NewTrigger, TriggerRecord};
pub use workflows::{
    NewVersion, NewWorkflow, VersionRecord, WorkflowFilter, WorkflowPatch, WorkflowRecord,
};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One file under the data directory (WAL mode).
    Sqlite,
    /// A PostgreSQL server shared by several `orcheo serve` processes.
    Postgres,
}

impl Backend {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The caller passed something unusable (a cursor that is not one of ours).
    #[error("{0}")]
    Invalid(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A write by a worker whose lease was taken over (fencing).
    #[error("write refused: {0}")]
    Refused(String),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The background writer stopped.
    #[error("the store's writer has stopped")]
    Closed,
}

/// Where a store keeps its data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://…` or `sqlite://…`; None means `<data_dir>/orcheo.db`.
    pub database_url: Option<String>,
    /// The data directory (SQLite file, key file, lock file).
    pub data_dir: PathBuf,
    /// Most pooled connections for reads (and, on PostgreSQL, writes).
    pub max_connections: u32,
}

impl StoreConfig {
    /// The default SQLite store under `data_dir`.
    pub fn sqlite(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: None,
            data_dir: data_dir.into(),
            max_connections: 8,
        }
    }
}

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

pub(crate) struct Inner {
    pub(crate) read: AnyPool,
    pub(crate) write: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) ops: mpsc::UnboundedSender<writer::Op>,
    pub(crate) events: broadcast::Sender<Arc<StoredEvent>>,
}

/// The one persistence API of Orcheo. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .finish()
    }
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "run_filters",
        include_str!("../migrations/sqlite/0002_run_filters.sql"),
    ),
    (
        3,
        "triggers",
        include_str!("../migrations/sqlite/0003_triggers.sql"),
    ),
    (
        4,
        "trigger_schedule",
        include_str!("../migrations/sqlite/0004_trigger_schedule.sql"),
    ),
    (
        5,
        "trigger_state",
        include_str!("../migrations/sqlite/0005_trigger_state.sql"),
    ),
    (
        6,
        "credentials",
        include_str!("../migrations/sqlite/0006_credentials.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "run_filters",
        include_str!("../migrations/postgres/0002_run_filters.sql"),
    ),
    (
        3,
        "triggers",
        include_str!("../migrations/postgres/0003_triggers.sql"),
    ),
    (
        4,
        "trigger_schedule",
        include_str!("../migrations/postgres/0004_trigger_schedule.sql"),
    ),
    (
        5,
        "trigger_state",
        include_str!("../migrations/postgres/0005_trigger_state.sql"),
    ),
    (
        6,
        "credentials",
        include_str!("../migrations/postgres/0006_credentials.sql"),
    ),
];

impl Store {
    /// Opens (and creates, and migrates) the store a configuration names. Must be called
    /// inside a Tokio runtime: it starts the store's background writer.
    pub async fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let url = match &cfg.database_url {
            Some(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => {
                std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
                    StoreError::Config(format!(
                        "cannot create the data directory {}: {e}",
                        cfg.data_dir.display()
                    ))
                })?;
                sqlite_url(&cfg.data_dir.join("orcheo.db"))
            }
        };
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL `{}`: use postgres://user@host:port/db or sqlite://path",
                redact_url(&url)
            )));
        };
        let (read, write) = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.clone()
                } else {
                    format!("{url}?mode=rwc")
                };
                let opts = || {
                    AnyPoolOptions::new()
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                sqlx::raw_sql(
                                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                     PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
                                     PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16000;",
                                )
                                .execute(conn)
                                .await?;
                                Ok(())
                            })
                        })
                };
                // SQLite has one writer at a time: one connection writes, the others read.
                let write = opts()
                    .max_connections(1)
                    .min_connections(1)
                    .connect(&url)
                    .await
                    .map_err(|e| connect_error(&url, e))?;
                let read = opts()
                    .max_connections(cfg.max_connections.max(2))
                    .connect(&url)
                    .await
                    .map_err(|e| connect_error(&url, e))?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(cfg.max_connections.max(4))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&url)
                    .await
                    .map_err(|e| connect_error(&url, e))?;
                (pool.clone(), pool)
            }
        };
        migrate(&write, backend).await?;
        let (ops, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(8192);
        let inner = Arc::new(Inner {
            read,
            write,
            backend,
            ops,
            events,
        });
        tokio::spawn(writer::run(inner.clone(), rx));
        Ok(Store { inner })
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.inner.read).await?;
        Ok(())
    }

    /// Waits until every write queued so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .ops
            .send(writer::Op::Flush(tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Runs `sql` (which takes `$1` = now and `$2` = id) and reports `NotFound` for `what`
    /// when it touched no row: soft deletes and similar one-row changes.
    pub(crate) async fn touch_one(
        &self,
        sql: &'static str,
        id: &str,
        what: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(sql)
            .bind(now_ms())
            .bind(id)
            .execute(&self.inner.write)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "{what} `{id}` does not exist"
            )));
        }
        Ok(())
    }

    /// Closes the pools after the queued writes are committed.
    pub async fn close(&self) {
        let _ = self.flush().await;
        self.inner.read.close().await;
        self.inner.write.close().await;
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn connect_error(url: &str, e: sqlx::Error) -> StoreError {
    StoreError::Config(format!(
        "cannot connect to the database {}: {e}",
        redact_url(url)
    ))
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let create = match backend {
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        }
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        }
    };
    sqlx::query(create).execute(pool).await?;
    let list = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    let mut tx = pool.begin().await?;
    if backend == Backend::Postgres {
        // Several servers starting at once migrate one after another.
        sqlx::query("SELECT pg_advisory_xact_lock(72616001)")
            .execute(&mut *tx)
            .await?;
    }
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    if let Some(newest) = applied.last() {
        if *newest > list.last().map(|m| m.0).unwrap_or(0) {
            return Err(StoreError::Config(format!(
                "the database has schema version {newest}, newer than this orcheo knows; upgrade orcheo"
            )));
        }
    }
    for (version, name, sql) in list {
        if applied.contains(version) {
            continue;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(*version)
        .bind(name.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tracing::info!(version, name, "applied database migration");
    }
    tx.commit().await?;
    Ok(())
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub(crate) fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(to_time)
}

pub(crate) fn json_col(row: &AnyRow, col: &str) -> Result<serde_json::Value, StoreError> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub(crate) fn opt_json_col(
    row: &AnyRow,
    col: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

/// Lowercase hexadecimal of bytes (hashes, signatures, cursors).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hexadecimal; None for anything else (odd length, other characters).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A keyset cursor: the sort key and id of the last item of a page, opaque to clients.
pub(crate) fn encode_cursor(key: i64, id: &str) -> String {
    hex(format!("{key}|{id}").as_bytes())
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    let bad = || {
        StoreError::Invalid(format!(
            "invalid cursor `{cursor}`: pass the next_cursor of a previous page unchanged"
        ))
    };
    if cursor.len() > 512 {
        return Err(bad());
    }
    let bytes = unhex(cursor).ok_or_else(bad)?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    let (k, id) = s.split_once('|').ok_or_else(bad)?;
    Ok((k.parse().map_err(|_| bad())?, id.to_string()))
}

/// Escapes `%`, `_` and `\` for a LIKE pattern (with `ESCAPE '\'`).
pub(crate) fn like_pattern(q: &str) -> String {
    let mut out = String::from("%");
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A bind value for dynamically built queries.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I(i64),
    S(String),
}

pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            Arg::I(v) => q.bind(*v),
            Arg::S(v) => q.bind(v.as_str()),
        };
    }
    q
}

/// A query built at run time. Only ever called with SQL assembled from constant fragments
/// and `$N` placeholders; values are always bound, never spliced in.
pub(crate) fn dynamic(
    sql: String,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
}

/// Helpers for tests of this and other crates: a fresh database per test.
pub mod testing {
    use super::*;

    /// The PostgreSQL server tests use (`ORCHEO_TEST_POSTGRES`, default the local one).
    pub fn postgres_server() -> String {
        std::env::var("ORCHEO_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
    }

    /// Creates an empty PostgreSQL database of its own and returns its URL.
    pub async fn fresh_postgres_url() -> Result<String, StoreError> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let server = postgres_server();
        let name = format!("orcheo_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::AnyConnection::connect(&format!("{server}/postgres"))
            .await
            .map_err(|e| connect_error(&server, e))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(format!("{server}/{name}"))
    }

    /// A configuration for a fresh store of `backend` under `dir`.
    pub async fn fresh_config(backend: Backend, dir: &Path) -> Result<StoreConfig, StoreError> {
        let mut cfg = StoreConfig::sqlite(dir);
        if backend == Backend::Postgres {
            cfg.database_url = Some(fresh_postgres_url().await?);
        }
        Ok(cfg)
    }
}
