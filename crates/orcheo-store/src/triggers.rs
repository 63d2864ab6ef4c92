//! Triggers: webhook endpoints, schedules and polling, and webhook replay protection.

use crate::{json_col, now_ms, to_time, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A trigger as stored (its secret is never part of it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TriggerRecord {
    /// Trigger id.
    pub id: String,
    /// The workflow it starts.
    pub workflow_id: String,
    /// A pinned version (none: the newest at each firing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// `webhook`, `cron` or `polling`.
    pub kind: String,
    /// Kind-specific settings.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Whether it fires.
    pub enabled: bool,
    /// Whether a signing secret is set.
    pub has_secret: bool,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The unguessable URL token (webhooks), kept out of listings' JSON.
    #[serde(skip)]
    pub token: Option<String>,
    /// The signing secret, for verification only; never serialised.
    #[serde(skip)]
    pub secret: Option<String>,
    /// The next planned firing (schedules) or poll (polling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// What the last poll saw (polling): status, ETag, Last-Modified, error, counts.
    #[serde(skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Option<Object>)]
    pub state: Value,
    /// Keys of the items a polling trigger already started runs for, oldest first.
    #[serde(skip)]
    pub seen: Vec<String>,
}

/// What making a trigger needs.
#[derive(Debug, Clone)]
pub struct NewTrigger {
    /// Id.
    pub id: String,
    /// Workflow.
    pub workflow_id: String,
    /// Pinned version.
    pub version: Option<u32>,
    /// Kind.
    pub kind: String,
    /// Settings.
    pub config: Value,
    /// Signing secret.
    pub secret: Option<String>,
    /// URL token.
    pub token: Option<String>,
    /// Who.
    pub created_by: String,
    /// First planned firing (schedules).
    pub next_at: Option<DateTime<Utc>>,
}

fn trigger_row(r: &AnyRow) -> Result<TriggerRecord, StoreError> {
    let secret: Option<String> = r.try_get("secret")?;
    Ok(TriggerRecord {
        id: r.try_get("id")?,
        workflow_id: r.try_get("workflow_id")?,
        version: r.try_get::<Option<i64>, _>("version")?.map(|v| v as u32),
        kind: r.try_get("kind")?,
        config: json_col(r, "config")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        has_secret: secret.is_some(),
        created_by: r.try_get("created_by")?,
        created_at: to_time(r.try_get("created_at")?),
        updated_at: to_time(r.try_get("updated_at")?),
        token: r.try_get("token")?,
        secret,
        next_at: crate::opt_time(r.try_get("next_at")?),
        state: match r.try_get::<Option<String>, _>("state")? {
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("trigger state: {e}")))?,
            None => Value::Null,
        },
        seen: match r.try_get::<Option<String>, _>("seen")? {
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("trigger seen keys: {e}")))?,
            None => Vec::new(),
        },
    })
}

impl Store {
    /// Makes a trigger.
    pub async fn create_trigger(&self, t: NewTrigger) -> Result<TriggerRecord, StoreError> {
        let now = now_ms();
        // A document may declare again a trigger it once removed: drop the old tombstone.
        sqlx::query("DELETE FROM triggers WHERE id = $1 AND deleted_at IS NOT NULL")
            .bind(t.id.as_str())
            .execute(&self.inner.write)
            .await?;
        sqlx::query(
            "INSERT INTO triggers (id, workflow_id, version, kind, config, secret, token, created_by, created_at, updated_at, next_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
        )
        .bind(t.id.as_str())
        .bind(t.workflow_id.as_str())
        .bind(t.version.map(i64::from))
        .bind(t.kind.as_str())
        .bind(t.config.to_string())
        .bind(t.secret.as_deref())
        .bind(t.token.as_deref())
        .bind(t.created_by.as_str())
        .bind(now)
        .bind(t.next_at.map(|d| d.timestamp_millis()))
        .execute(&self.inner.write)
        .await?;
        self.get_trigger(&t.id).await
    }

    /// One trigger (not deleted).
    pub async fn get_trigger(&self, id: &str) -> Result<TriggerRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM triggers WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&self.inner.read)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("trigger `{id}` does not exist")))?;
        trigger_row(&row)
    }

    /// The webhook trigger a URL token belongs to (enabled or not).
    pub async fn trigger_by_token(&self, token: &str) -> Result<Option<TriggerRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM triggers WHERE token = $1 AND deleted_at IS NULL")
            .bind(token)
            .fetch_optional(&self.inner.read)
            .await?;
        row.as_ref().map(trigger_row).transpose()
    }

    /// Triggers, newest first, optionally of one workflow.
    pub async fn list_triggers(
        &self,
        workflow_id: Option<&str>,
    ) -> Result<Vec<TriggerRecord>, StoreError> {
        let rows = match workflow_id {
            Some(w) => sqlx::query(
                "SELECT * FROM triggers WHERE workflow_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id",
            )
            .bind(w)
            .fetch_all(&self.inner.read)
            .await?,
            None => sqlx::query(
                "SELECT * FROM triggers WHERE deleted_at IS NULL ORDER BY created_at DESC, id",
            )
            .fetch_all(&self.inner.read)
            .await?,
        };
        rows.iter().map(trigger_row).collect()
    }

    /// Pauses or resumes a trigger.
    pub async fn set_trigger_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<TriggerRecord, StoreError> {
        let done = sqlx::query(
            "UPDATE triggers SET enabled = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(i64::from(enabled))
        .bind(now_ms())
        .bind(id)
        .execute(&self.inner.write)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "trigger `{id}` does not exist"
            )));
        }
        self.get_trigger(id).await
    }

    /// Replaces a trigger's settings, enabled flag and planned tick (document-declared
    /// triggers follow their workflow's newest version).
    pub async fn update_trigger(
        &self,
        id: &str,
        config: &Value,
        enabled: bool,
        next_at: Option<DateTime<Utc>>,
    ) -> Result<TriggerRecord, StoreError> {
        sqlx::query(
            "UPDATE triggers SET config = $1, enabled = $2, next_at = $3, updated_at = $4 WHERE id = $5 AND deleted_at IS NULL",
        )
        .bind(config.to_string())
        .bind(i64::from(enabled))
        .bind(next_at.map(|d| d.timestamp_millis()))
        .bind(now_ms())
        .bind(id)
        .execute(&self.inner.write)
        .await?;
        self.get_trigger(id).await
    }

    /// Deletes a trigger; its URL stops working at once.
    pub async fn delete_trigger(&self, id: &str) -> Result<(), StoreError> {
        self.touch_one(
            "UPDATE triggers SET deleted_at = $1, token = NULL WHERE id = $2 AND deleted_at IS NULL",
            id,
            "trigger",
        )
        .await
    }

    /// Triggers of `kind` (`cron` or `polling`) whose planned firing is at or before `now`
    /// (enabled, not deleted).
    pub async fn due_triggers(
        &self,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<TriggerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM triggers WHERE kind = $1 AND enabled = 1 AND deleted_at IS NULL AND next_at IS NOT NULL AND next_at <= $2 ORDER BY next_at",
        )
        .bind(kind)
        .bind(now.timestamp_millis())
        .fetch_all(&self.inner.read)
        .await?;
        rows.iter().map(trigger_row).collect()
    }

    /// Replaces a trigger's shown state (a schedule's queued tick); `null` clears it.
    pub async fn set_trigger_state(&self, id: &str, state: &Value) -> Result<(), StoreError> {
        let text = (!state.is_null()).then(|| state.to_string());
        sqlx::query("UPDATE triggers SET state = $1 WHERE id = $2")
            .bind(text)
            .bind(id)
            .execute(&self.inner.write)
            .await?;
        Ok(())
    }

    /// Schedules holding a queued tick (overlap `queue_one`), enabled and not deleted.
    pub async fn queued_schedules(&self) -> Result<Vec<TriggerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM triggers WHERE kind = 'cron' AND state IS NOT NULL AND enabled = 1 AND deleted_at IS NULL",
        )
        .fetch_all(&self.inner.read)
        .await?;
        rows.iter().map(trigger_row).collect()
    }

    /// Saves what a poll saw and the keys it has started runs for.
    pub async fn save_poll_state(
        &self,
        id: &str,
        state: &Value,
        seen: &[String],
    ) -> Result<(), StoreError> {
        let seen = serde_json::to_string(seen)
            .map_err(|e| StoreError::Invalid(format!("seen keys: {e}")))?;
        sqlx::query("UPDATE triggers SET state = $1, seen = $2 WHERE id = $3")
            .bind(state.to_string())
            .bind(seen)
            .bind(id)
            .execute(&self.inner.write)
            .await?;
        Ok(())
    }

    /// Moves a schedule's planned tick (or a poller's next poll) from `old` to `new` if no one
    /// else did (compare and set): true for the one caller that wins, across servers.
    pub async fn advance_schedule(
        &self,
        id: &str,
        old: Option<DateTime<Utc>>,
        new: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let r = match old {
            Some(o) => {
                sqlx::query("UPDATE triggers SET next_at = $1 WHERE id = $2 AND next_at = $3")
                    .bind(new.map(|d| d.timestamp_millis()))
                    .bind(id)
                    .bind(o.timestamp_millis())
                    .execute(&self.inner.write)
                    .await?
            }
            None => {
                sqlx::query("UPDATE triggers SET next_at = $1 WHERE id = $2")
                    .bind(new.map(|d| d.timestamp_millis()))
                    .bind(id)
                    .execute(&self.inner.write)
                    .await?
            }
        };
        Ok(r.rows_affected() == 1)
    }

    /// Runs a schedule started that are queued, running or waiting (for overlap policies).
    pub async fn active_trigger_runs(&self, trigger_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE idempotency_key LIKE $1 AND status IN ('queued', 'running', 'waiting')",
        )
        .bind(format!("cron:{trigger_id}:%"))
        .fetch_all(&self.inner.read)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .collect()
    }

    /// Remembers a webhook message id until `keep_ms` from now; false when it was already seen
    /// (a replay). Works across servers sharing the database.
    pub async fn record_webhook_receipt(
        &self,
        trigger_id: &str,
        message_id: &str,
        keep_ms: i64,
    ) -> Result<bool, StoreError> {
        // Through the ordered writer, batched with the run it guards.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .ops
            .send(crate::writer::Op::Receipt {
                trigger_id: trigger_id.to_string(),
                message_id: message_id.to_string(),
                keep_ms,
                ack: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Every trigger secret (sealed text), for re-encrypting under a new vault key.
    pub async fn trigger_secrets(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, secret FROM triggers WHERE secret IS NOT NULL ORDER BY id")
                .fetch_all(&self.inner.read)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Replaces a trigger's sealed secret if it is still `old` (compare and set).
    pub async fn reseal_trigger_secret(
        &self,
        id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE triggers SET secret = $1 WHERE id = $2 AND secret = $3")
            .bind(new)
            .bind(id)
            .bind(old)
            .execute(&self.inner.write)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Forgets webhook message ids past their window. Returns how many.
    pub async fn expire_webhook_receipts(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM webhook_receipts WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.inner.write)
            .await?;
        Ok(r.rows_affected())
    }
}
