//! Server configuration: defaults, then an optional `orcheo.toml`, then `ORCHEO_*`
//! environment variables, then command-line flags (applied by the binary).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything `orcheo serve` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (default 127.0.0.1: only this machine).
    pub bind: String,
    /// Port (default 8000; 0 picks a free one).
    pub port: u16,
    /// Data directory: the SQLite file, the lock file.
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL; unset means SQLite in the data directory.
    pub database_url: Option<String>,
    /// Most runs this server executes at once.
    pub worker_concurrency: usize,
    /// Whether this process runs workflows at all (an API-only server sets false).
    pub worker: bool,
    /// How long a worker's lease on a run lasts without renewal, in seconds.
    pub lease_ttl_secs: f64,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// How long graceful shutdown lets running runs finish, in seconds.
    pub shutdown_grace_secs: f64,
    /// The URL people open (for the login link); derived from bind and port when unset.
    pub public_url: Option<String>,
    /// Internal addresses outbound requests (polling triggers, HTTP nodes) may reach: IPs or
    /// CIDR ranges, or `*` for all. Empty (the default) blocks private, loopback and
    /// link-local addresses against server-side request forgery.
    pub http_allow: Vec<String>,
    /// The vault's master key(s): base64 or hex, comma-separated, the first active. Wins over
    /// the passphrase and the key file.
    pub vault_key: Option<SecretString>,
    /// A passphrase the vault key is derived from (Argon2id, salt kept in the database).
    pub vault_passphrase: Option<SecretString>,
    /// The vault key file (default `<data dir>/vault.key`, created on first start).
    pub vault_key_file: Option<PathBuf>,
}

/// A configuration value that must not be printed (`Debug` shows `***`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            port: 8000,
            data_dir: default_data_dir(),
            database_url: None,
            worker_concurrency: 64,
            worker: true,
            lease_ttl_secs: 30.0,
            body_limit: 10 * 1024 * 1024,
            shutdown_grace_secs: 10.0,
            public_url: None,
            http_allow: Vec::new(),
            vault_key: None,
            vault_passphrase: None,
            vault_key_file: None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(h) => Path::new(&h).join(".orcheo"),
        None => PathBuf::from(".orcheo"),
    }
}

impl Config {
    /// Defaults, then `orcheo.toml` (the given path, or `./orcheo.toml` when present), then
    /// the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => std::env::var_os("ORCHEO_CONFIG")
                .map(PathBuf::from)
                .or_else(|| Some(PathBuf::from("orcheo.toml")).filter(|p| p.exists())),
        };
        let mut cfg = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    anyhow::anyhow!("cannot read the configuration file {}: {e}", p.display())
                })?;
                toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("the configuration file {} is invalid: {e}", p.display())
                })?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Applies `ORCHEO_*` variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        fn parse<T: std::str::FromStr>(name: &str, v: String) -> anyhow::Result<T> {
            v.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}=`{v}` is not a valid value"))
        }
        if let Some(v) = get("ORCHEO_BIND") {
            self.bind = v;
        }
        if let Some(v) = get("ORCHEO_PORT") {
            self.port = parse("ORCHEO_PORT", v)?;
        }
        if let Some(v) = get("ORCHEO_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("ORCHEO_DATABASE_URL") {
            self.database_url = Some(v).filter(|s| !s.trim().is_empty());
        }
        if let Some(v) = get("ORCHEO_WORKER_CONCURRENCY") {
            self.worker_concurrency = parse("ORCHEO_WORKER_CONCURRENCY", v)?;
        }
        if let Some(v) = get("ORCHEO_WORKER") {
            self.worker = parse("ORCHEO_WORKER", v)?;
        }
        if let Some(v) = get("ORCHEO_LEASE_TTL_SECS") {
            self.lease_ttl_secs = parse("ORCHEO_LEASE_TTL_SECS", v)?;
        }
        if let Some(v) = get("ORCHEO_BODY_LIMIT") {
            self.body_limit = parse("ORCHEO_BODY_LIMIT", v)?;
        }
        if let Some(v) = get("ORCHEO_SHUTDOWN_GRACE_SECS") {
            self.shutdown_grace_secs = parse("ORCHEO_SHUTDOWN_GRACE_SECS", v)?;
        }
        if let Some(v) = get("ORCHEO_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("ORCHEO_VAULT_KEY").filter(|v| !v.trim().is_empty()) {
            self.vault_key = Some(SecretString(v));
        }
        if let Some(v) = get("ORCHEO_VAULT_PASSPHRASE").filter(|v| !v.is_empty()) {
            self.vault_passphrase = Some(SecretString(v));
        }
        if let Some(v) = get("ORCHEO_VAULT_KEY_FILE") {
            self.vault_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("ORCHEO_HTTP_ALLOW") {
            self.http_allow = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        self.check()
    }

    /// Rejects values that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.worker_concurrency == 0 {
            anyhow::bail!("worker_concurrency must be at least 1");
        }
        if !(self.lease_ttl_secs.is_finite() && self.lease_ttl_secs >= 0.5) {
            anyhow::bail!("lease_ttl_secs must be at least 0.5");
        }
        if !(self.shutdown_grace_secs.is_finite() && self.shutdown_grace_secs >= 0.0) {
            anyhow::bail!("shutdown_grace_secs must be zero or more");
        }
        if self.body_limit < 1024 {
            anyhow::bail!("body_limit must be at least 1024 bytes");
        }
        orcheo_nodes::net::NetPolicy::new(&self.http_allow)?;
        Ok(())
    }

    /// The vault key file's path.
    pub fn vault_key_path(&self) -> PathBuf {
        self.vault_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("vault.key"))
    }

    /// The lease duration.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs_f64(self.lease_ttl_secs)
    }

    /// The store configuration.
    pub fn store(&self) -> orcheo_store::StoreConfig {
        orcheo_store::StoreConfig {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            max_connections: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_bad_values_are_named() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "ORCHEO_PORT" => Some("9001".into()),
            "ORCHEO_DATABASE_URL" => Some("postgres://x@y/z".into()),
            _ => None,
        })
        .expect("env");
        assert_eq!(c.port, 9001);
        assert_eq!(c.database_url.as_deref(), Some("postgres://x@y/z"));
        let err = c
            .apply_env(|k| (k == "ORCHEO_PORT").then(|| "eighty".to_string()))
            .expect_err("bad port");
        assert!(err.to_string().contains("ORCHEO_PORT=`eighty`"));
        let t: Result<Config, _> = toml::from_str("prot = 1");
        assert!(t.is_err(), "unknown keys are refused");
        let t: Config = toml::from_str("port = 1234\nworker_concurrency = 4").expect("toml");
        assert_eq!(
            (t.port, t.worker_concurrency, t.bind.as_str()),
            (1234, 4, "127.0.0.1")
        );
    }
}
