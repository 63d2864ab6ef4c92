//! API keys (random, shown once, stored as prefix + SHA-256), one-time login tokens and the
//! audit log.

use crate::{json_col, now_ms, opt_time, to_time, Page, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A permission an API key carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    /// Read workflows, versions and the node catalog.
    #[serde(rename = "workflows:read")]
    WorkflowsRead,
    /// Create, change and delete workflows.
    #[serde(rename = "workflows:write")]
    WorkflowsWrite,
    /// Read runs, their events and checkpoints.
    #[serde(rename = "runs:read")]
    RunsRead,
    /// Start, cancel, resume and fork runs.
    #[serde(rename = "runs:execute")]
    RunsExecute,
    /// Manage credentials in the vault.
    #[serde(rename = "credentials:manage")]
    CredentialsManage,
    /// Manage triggers.
    #[serde(rename = "triggers:manage")]
    TriggersManage,
    /// Everything, including API keys and the audit log.
    #[serde(rename = "admin")]
    Admin,
}

/// Every scope, in documentation order.
pub const ALL_SCOPES: &[Scope] = &[
    Scope::WorkflowsRead,
    Scope::WorkflowsWrite,
    Scope::RunsRead,
    Scope::RunsExecute,
    Scope::CredentialsManage,
    Scope::TriggersManage,
    Scope::Admin,
];

impl Scope {
    /// The scope's name, as written in keys and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::WorkflowsRead => "workflows:read",
            Scope::WorkflowsWrite => "workflows:write",
            Scope::RunsRead => "runs:read",
            Scope::RunsExecute => "runs:execute",
            Scope::CredentialsManage => "credentials:manage",
            Scope::TriggersManage => "triggers:manage",
            Scope::Admin => "admin",
        }
    }
    /// Parses a scope name.
    pub fn parse(s: &str) -> Result<Scope, String> {
        ALL_SCOPES
            .iter()
            .copied()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown scope `{s}`; scopes are {}",
                    ALL_SCOPES
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// An API key's metadata (the secret is never stored).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: String,
    /// A name to recognise it by.
    pub name: String,
    /// The public part of the key (`ok_<prefix>_…`).
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it was last used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Whether the key carries `scope` (admin carries every scope).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == scope || *s == Scope::Admin)
    }
}

/// A key just made: its record and the secret, shown this once.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The record.
    pub record: ApiKeyRecord,
    /// The whole key, `ok_<prefix>_<secret>`.
    pub secret: String,
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Position in the log.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (an API key name and prefix, or `cli`).
    pub actor: String,
    /// What (`workflow.create`, `run.cancel`, …).
    pub action: String,
    /// On what (an id).
    pub target: String,
    /// Details.
    #[schema(value_type = Object)]
    pub detail: Value,
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` random base62 characters from the operating system's generator.
pub fn random_token(n: usize) -> Result<String, StoreError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf)
            .map_err(|e| StoreError::Config(format!("no random numbers available: {e}")))?;
        for b in buf {
            // 62 * 4 = 248: reject the top values so every character is equally likely.
            if b < 248 && out.len() < n {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// SHA-256 of a key or token, hex-encoded. Keys are long random strings, so a fast hash is
/// the right one: there is nothing to brute-force.
pub fn hash_secret(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    crate::hex(&d)
}

/// The prefix of a key of the form `ok_<prefix>_<secret>`.
pub fn key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("ok_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 8 && !secret.is_empty()).then_some(prefix)
}

fn key_row(r: &AnyRow) -> Result<(ApiKeyRecord, String), StoreError> {
    let scopes: Vec<Scope> = serde_json::from_value(json_col(r, "scopes")?)
        .map_err(|e| StoreError::Corrupt(format!("api key scopes: {e}")))?;
    Ok((
        ApiKeyRecord {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            prefix: r.try_get("prefix")?,
            scopes,
            created_by: r.try_get("created_by")?,
            created_at: to_time(r.try_get("created_at")?),
            last_used_at: opt_time(r.try_get("last_used_at")?),
            revoked_at: opt_time(r.try_get("revoked_at")?),
        },
        r.try_get("hash")?,
    ))
}

/// Compares two byte strings in time that depends only on their length (secrets, hashes,
/// signatures).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Store {
    /// Makes an API key. The secret is returned once and stored only as a hash.
    pub async fn create_api_key(
        &self,
        name: &str,
        scopes: &[Scope],
        created_by: &str,
    ) -> Result<NewApiKey, StoreError> {
        if scopes.is_empty() {
            return Err(StoreError::Invalid(
                "an API key needs at least one scope".into(),
            ));
        }
        let mut scopes = scopes.to_vec();
        scopes.dedup();
        let prefix = random_token(8)?;
        let secret = format!("ok_{prefix}_{}", random_token(43)?);
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, hash, scopes, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(prefix.as_str())
        .bind(hash_secret(&secret))
        .bind(serde_json::to_string(&scopes).unwrap_or_else(|_| "[]".into()))
        .bind(created_by)
        .bind(now)
        .execute(&self.inner.write)
        .await?;
        Ok(NewApiKey {
            record: ApiKeyRecord {
                id,
                name: name.to_string(),
                prefix,
                scopes,
                created_by: created_by.to_string(),
                created_at: to_time(now),
                last_used_at: None,
                revoked_at: None,
            },
            secret,
        })
    }

    /// The key a presented secret belongs to, if it is valid and not revoked.
    pub async fn verify_api_key(&self, key: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let Some(prefix) = key_prefix(key) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT * FROM api_keys WHERE prefix = $1")
            .bind(prefix)
            .fetch_optional(&self.inner.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (rec, hash) = key_row(&row)?;
        if rec.revoked_at.is_some()
            || !constant_time_eq(hash.as_bytes(), hash_secret(key).as_bytes())
        {
            return Ok(None);
        }
        Ok(Some(rec))
    }

    /// Records that a key was used (at most once a minute per key).
    pub async fn touch_api_key(&self, id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - 60_000)
        .execute(&self.inner.write)
        .await?;
        Ok(())
    }

    /// Every key, newest first (revoked ones included).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at DESC, id DESC")
            .fetch_all(&self.inner.read)
            .await?;
        rows.iter().map(|r| key_row(r).map(|k| k.0)).collect()
    }

    /// How many keys are not revoked.
    pub async fn count_active_api_keys(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
            .fetch_one(&self.inner.write)
            .await?;
        Ok(r.try_get::<i64, _>(0)? as u64)
    }

    /// Revokes a key by id or prefix.
    pub async fn revoke_api_key(&self, id_or_prefix: &str) -> Result<ApiKeyRecord, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE (id = $2 OR prefix = $2) AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id_or_prefix)
        .execute(&self.inner.write)
        .await?;
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1 OR prefix = $1")
            .bind(id_or_prefix)
            .fetch_optional(&self.inner.write)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("no API key has id or prefix `{id_or_prefix}`"))
            })?;
        let rec = key_row(&row)?.0;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "API key `{}` is already revoked",
                rec.prefix
            )));
        }
        Ok(rec)
    }

    /// Makes a one-time login token valid for `ttl`; returns the token (shown once).
    pub async fn create_login_token(
        &self,
        scopes: &[Scope],
        ttl: std::time::Duration,
    ) -> Result<String, StoreError> {
        let token = random_token(40)?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO login_tokens (hash, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash_secret(&token))
        .bind(serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .bind(now + ttl.as_millis() as i64)
        .execute(&self.inner.write)
        .await?;
        Ok(token)
    }

    /// Uses up a login token; returns its scopes when it was valid, unused and unexpired.
    pub async fn redeem_login_token(&self, token: &str) -> Result<Option<Vec<Scope>>, StoreError> {
        let now = now_ms();
        let hash = hash_secret(token);
        let done = sqlx::query(
            "UPDATE login_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(hash.as_str())
        .execute(&self.inner.write)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT scopes FROM login_tokens WHERE hash = $1")
            .bind(hash.as_str())
            .fetch_one(&self.inner.write)
            .await?;
        let scopes = serde_json::from_value(json_col(&row, "scopes")?)
            .map_err(|e| StoreError::Corrupt(format!("login token scopes: {e}")))?;
        Ok(Some(scopes))
    }

    /// Appends to the audit log.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.to_string())
        .execute(&self.inner.write)
        .await?;
        Ok(())
    }

    /// Audit entries, newest first.
    pub async fn list_audit(
        &self,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let limit = limit.unwrap_or(100).clamp(1, 1000) as i64;
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.inner.read)
        .await?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: to_time(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: json_col(r, "detail")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
