//! Credentials: metadata and sealed versions. The store only ever holds the vault's sealed text
//! (`v1.<key id>.<nonce>.<ciphertext>`); sealing and opening happen in the server.

use crate::{json_col, now_ms, opt_json_col, opt_time, to_time, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A credential's metadata as stored: everything but its secrets.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CredentialRecord {
    /// Credential id.
    pub id: String,
    /// The name workflows use to refer to it (unique among live credentials).
    pub name: String,
    /// Its type (`bearer`, `openai`, `oauth2` …).
    #[serde(rename = "type")]
    pub kind: String,
    /// What it is for.
    pub description: String,
    /// Who may use it: `{"kind": "shared"}`, `{"kind": "workflows", "ids": [...]}` or
    /// `{"kind": "roles", "scopes": [...]}`.
    #[schema(value_type = Object)]
    pub scope: Value,
    /// The non-secret fields of its data (user names, hosts, base URLs); secret fields appear
    /// as `{"set": true}`.
    #[schema(value_type = Object)]
    pub data: Value,
    /// The current version (rotation makes a new one).
    pub version: i64,
    /// When it stops working, if it has an expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Rotate it this many days after each rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_every_days: Option<i64>,
    /// When the current version was made.
    pub rotated_at: DateTime<Utc>,
    /// When a run last used it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// The last test's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub last_test: Option<Value>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What making a credential needs (its first version sealed by the caller).
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// Id (the sealed text is bound to it).
    pub id: String,
    /// Name.
    pub name: String,
    /// Type.
    pub kind: String,
    /// Description.
    pub description: String,
    /// Scope.
    pub scope: Value,
    /// Non-secret view of the data.
    pub public_data: Value,
    /// Version 1, sealed.
    pub sealed: String,
    /// The key it is sealed under.
    pub key_id: String,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Rotation reminder period.
    pub rotate_every_days: Option<i64>,
    /// Who.
    pub created_by: String,
}

/// Changes to a credential's metadata (`None` leaves a field as it is).
#[derive(Debug, Clone, Default)]
pub struct CredentialPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New scope.
    pub scope: Option<Value>,
    /// New expiry (`Some(None)` clears it).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New rotation period (`Some(None)` clears it).
    pub rotate_every_days: Option<Option<i64>>,
}

/// One sealed version, for opening or resealing.
#[derive(Debug, Clone)]
pub struct SealedVersion {
    /// Credential id.
    pub credential_id: String,
    /// Version.
    pub version: i64,
    /// The sealed text.
    pub sealed: String,
    /// The key it is sealed under.
    pub key_id: String,
}

fn credential_row(r: &AnyRow) -> Result<CredentialRecord, StoreError> {
    Ok(CredentialRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        kind: r.try_get("type")?,
        description: r.try_get("description")?,
        scope: json_col(r, "scope")?,
        data: json_col(r, "public_data")?,
        version: r.try_get("current_version")?,
        expires_at: opt_time(r.try_get("expires_at")?),
        rotate_every_days: r.try_get("rotate_every_days")?,
        rotated_at: to_time(r.try_get("rotated_at")?),
        last_used_at: opt_time(r.try_get("last_used_at")?),
        last_test: opt_json_col(r, "last_test")?,
        created_by: r.try_get("created_by")?,
        created_at: to_time(r.try_get("created_at")?),
        updated_at: to_time(r.try_get("updated_at")?),
    })
}

fn name_taken(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(format!(
            "a credential named `{name}` already exists; pick another name or rotate that one"
        )),
        _ => StoreError::Db(e),
    }
}

impl Store {
    /// Makes a credential with its first sealed version.
    pub async fn create_credential(
        &self,
        c: NewCredential,
    ) -> Result<CredentialRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.inner.write.begin().await?;
        sqlx::query(
            "INSERT INTO credentials (id, name, type, description, scope, public_data, current_version, expires_at, rotate_every_days, rotated_at, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $9, $9)",
        )
        .bind(c.id.as_str())
        .bind(c.name.as_str())
        .bind(c.kind.as_str())
        .bind(c.description.as_str())
        .bind(c.scope.to_string())
        .bind(c.public_data.to_string())
        .bind(c.expires_at.map(|d| d.timestamp_millis()))
        .bind(c.rotate_every_days)
        .bind(now)
        .bind(c.created_by.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| name_taken(e, &c.name))?;
        sqlx::query(
            "INSERT INTO credential_versions (credential_id, version, sealed, key_id, created_at) VALUES ($1, 1, $2, $3, $4)",
        )
        .bind(c.id.as_str())
        .bind(c.sealed.as_str())
        .bind(c.key_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_credential(&c.id).await
    }

    /// One live credential by id.
    pub async fn get_credential(&self, id: &str) -> Result<CredentialRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM credentials WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&self.inner.read)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("credential `{id}` does not exist")))?;
        credential_row(&row)
    }

    /// One live credential by name (what workflows refer to).
    pub async fn credential_by_name(
        &self,
        name: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM credentials WHERE name = $1 AND deleted_at IS NULL")
            .bind(name)
            .fetch_optional(&self.inner.read)
            .await?;
        row.as_ref().map(credential_row).transpose()
    }

    /// Live credentials by name.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM credentials WHERE deleted_at IS NULL ORDER BY name")
            .fetch_all(&self.inner.read)
            .await?;
        rows.iter().map(credential_row).collect()
    }

    /// The sealed text of one version, if it is still kept.
    pub async fn credential_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<SealedVersion>, StoreError> {
        let row = sqlx::query(
            "SELECT credential_id, version, sealed, key_id FROM credential_versions WHERE credential_id = $1 AND version = $2 AND sealed IS NOT NULL",
        )
        .bind(id)
        .bind(version)
        .fetch_optional(&self.inner.read)
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    /// Adds version `expected + 1` if the current version is still `expected` (compare and
    /// set, so two concurrent rotations or token refreshes make one version, not two).
    pub async fn rotate_credential(
        &self,
        id: &str,
        expected: i64,
        public_data: &Value,
        sealed: &str,
        key_id: &str,
    ) -> Result<CredentialRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.inner.write.begin().await?;
        let moved = sqlx::query(
            "UPDATE credentials SET current_version = current_version + 1, public_data = $1, rotated_at = $2, updated_at = $2 WHERE id = $3 AND current_version = $4 AND deleted_at IS NULL",
        )
        .bind(public_data.to_string())
        .bind(now)
        .bind(id)
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            let cur = self.get_credential(id).await?;
            return Err(StoreError::Conflict(format!(
                "credential `{}` is at version {}, not {expected}: it was changed meanwhile",
                cur.name, cur.version
            )));
        }
        sqlx::query(
            "INSERT INTO credential_versions (credential_id, version, sealed, key_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(expected + 1)
        .bind(sealed)
        .bind(key_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_credential(id).await
    }

    /// Changes a credential's metadata.
    pub async fn update_credential(
        &self,
        id: &str,
        patch: CredentialPatch,
    ) -> Result<CredentialRecord, StoreError> {
        let cur = self.get_credential(id).await?;
        let name = patch.name.unwrap_or(cur.name);
        let expires = patch.expires_at.unwrap_or(cur.expires_at);
        let every = patch.rotate_every_days.unwrap_or(cur.rotate_every_days);
        sqlx::query(
            "UPDATE credentials SET name = $1, description = $2, scope = $3, expires_at = $4, rotate_every_days = $5, updated_at = $6 WHERE id = $7 AND deleted_at IS NULL",
        )
        .bind(name.as_str())
        .bind(patch.description.unwrap_or(cur.description))
        .bind(patch.scope.unwrap_or(cur.scope).to_string())
        .bind(expires.map(|d| d.timestamp_millis()))
        .bind(every)
        .bind(now_ms())
        .bind(id)
        .execute(&self.inner.write)
        .await
        .map_err(|e| name_taken(e, &name))?;
        self.get_credential(id).await
    }

    /// Revokes a credential: it disappears and every sealed version is erased at once.
    pub async fn delete_credential(&self, id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.inner.write.begin().await?;
        let done = sqlx::query(
            "UPDATE credentials SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "credential `{id}` does not exist"
            )));
        }
        sqlx::query(
            "UPDATE credential_versions SET sealed = NULL, retired_at = $1 WHERE credential_id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Erases versions superseded before `cutoff` (runs that started on them have had that
    /// long to finish). Returns how many.
    pub async fn retire_credential_versions(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE credential_versions SET sealed = NULL, retired_at = $1 WHERE sealed IS NOT NULL AND EXISTS (SELECT 1 FROM credential_versions n WHERE n.credential_id = credential_versions.credential_id AND n.version = credential_versions.version + 1 AND n.created_at < $2)",
        )
        .bind(now_ms())
        .bind(cutoff.timestamp_millis())
        .execute(&self.inner.write)
        .await?;
        Ok(r.rows_affected())
    }

    /// Every kept sealed version (for re-encrypting under a new key).
    pub async fn sealed_versions(&self) -> Result<Vec<SealedVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT credential_id, version, sealed, key_id FROM credential_versions WHERE sealed IS NOT NULL ORDER BY credential_id, version",
        )
        .fetch_all(&self.inner.read)
        .await?;
        rows.iter().map(version_row).collect()
    }

    /// Replaces one version's sealed text if it is still `old` (a concurrent change wins).
    pub async fn reseal_version(
        &self,
        v: &SealedVersion,
        sealed: &str,
        key_id: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE credential_versions SET sealed = $1, key_id = $2 WHERE credential_id = $3 AND version = $4 AND sealed = $5",
        )
        .bind(sealed)
        .bind(key_id)
        .bind(v.credential_id.as_str())
        .bind(v.version)
        .bind(v.sealed.as_str())
        .execute(&self.inner.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records that a run used a credential.
    pub async fn mark_credential_used(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE credentials SET last_used_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.inner.write)
            .await?;
        Ok(())
    }

    /// Stores a credential test's report.
    pub async fn set_credential_test(&self, id: &str, report: &Value) -> Result<(), StoreError> {
        sqlx::query("UPDATE credentials SET last_test = $1 WHERE id = $2")
            .bind(report.to_string())
            .bind(id)
            .execute(&self.inner.write)
            .await?;
        Ok(())
    }

    /// A vault setting (the key canaries, the passphrase salt).
    pub async fn vault_meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM vault_meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.inner.read)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    /// Every vault setting whose name starts with `prefix`.
    pub async fn vault_meta_prefixed(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // A small table: filtering here avoids LIKE escaping differences between backends.
        let rows = sqlx::query("SELECT name, value FROM vault_meta ORDER BY name")
            .fetch_all(&self.inner.read)
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let name: String = r.try_get(0)?;
            if name.starts_with(prefix) {
                out.push((name, r.try_get(1)?));
            }
        }
        Ok(out)
    }

    /// Sets a vault setting; with `only_if_absent`, keeps an existing value and returns it.
    pub async fn put_vault_meta(
        &self,
        name: &str,
        value: &str,
        only_if_absent: bool,
    ) -> Result<String, StoreError> {
        let sql = if only_if_absent {
            "INSERT INTO vault_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
        } else {
            "INSERT INTO vault_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        };
        sqlx::query(sql)
            .bind(name)
            .bind(value)
            .execute(&self.inner.write)
            .await?;
        self.vault_meta(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("vault setting `{name}` vanished")))
    }

    /// Removes a vault setting.
    pub async fn delete_vault_meta(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM vault_meta WHERE name = $1")
            .bind(name)
            .execute(&self.inner.write)
            .await?;
        Ok(())
    }
}

fn version_row(r: &AnyRow) -> Result<SealedVersion, StoreError> {
    Ok(SealedVersion {
        credential_id: r.try_get("credential_id")?,
        version: r.try_get("version")?,
        sealed: r.try_get("sealed")?,
        key_id: r.try_get("key_id")?,
    })
}
