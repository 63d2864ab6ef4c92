//! Triggers declared in a workflow document's `triggers` (schedules, webhooks, polling): each
//! pushed version makes the stored triggers match. Their ids are `<workflow>:<trigger id>`;
//! new ones are created, changed ones updated (a webhook keeps its URL), removed ones deleted.
//! Documents hold no secrets: a signed webhook or an authenticated poller names a vault
//! credential with `secret_credential`.

use super::cron::CronConfig;
use super::polling::PollingConfig;
use super::schedule::Schedule;
use super::webhook::WebhookConfig;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use chrono::{DateTime, Utc};
use orcheo_core::document::TriggerType;
use orcheo_store::{NewTrigger, TriggerRecord};
use serde_json::{json, Value};

/// One declared trigger, checked.
pub struct Declared {
    /// The trigger's id in the document.
    pub id: String,
    /// `cron`, `webhook` or `polling`.
    pub kind: &'static str,
    /// Its normalised settings.
    pub config: Value,
    /// Whether it fires.
    pub enabled: bool,
    /// The first planned firing (schedules: the next tick; pollers: now).
    pub next_at: Option<DateTime<Utc>>,
}

/// The triggers a document declares, checked (manual triggers need nothing stored). An error
/// names the trigger and what is wrong, and refuses the version.
pub fn declared(st: &AppState, doc: &orcheo_core::Workflow) -> ApiResult<Vec<Declared>> {
    let now = Utc::now();
    let mut out = Vec::new();
    for (i, t) in doc.triggers.iter().enumerate() {
        let bad = |e: String| {
            ApiError::invalid(
                format!("trigger `{}` (/triggers/{i}/config): {e}", t.id),
                None,
            )
        };
        let raw = Value::Object(t.config.clone());
        let (kind, config, next_at) = match t.trigger_type {
            TriggerType::Manual => continue,
            TriggerType::Cron => {
                let c: CronConfig = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
                let s = Schedule::parse(&c.expression, &c.timezone, c.start_at, c.end_at)
                    .map_err(bad)?;
                let v = serde_json::to_value(&c).map_err(ApiError::internal)?;
                ("cron", v, s.next_after(now))
            }
            TriggerType::Webhook => {
                let c: WebhookConfig =
                    serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
                let c = super::webhook::check_config(c).map_err(|e| bad(e.detail))?;
                if c.signature.is_some() && c.secret_credential.is_none() {
                    return Err(bad("a signed webhook declared in a document needs `secret_credential`: the name of a vault credential holding the signing secret (documents hold no secrets)".into()));
                }
                let v = serde_json::to_value(&c).map_err(ApiError::internal)?;
                ("webhook", v, None)
            }
            TriggerType::Polling => {
                let c: PollingConfig =
                    serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
                c.check(st, false).map_err(bad)?;
                let v = serde_json::to_value(&c).map_err(ApiError::internal)?;
                ("polling", v, Some(now))
            }
        };
        out.push(Declared {
            id: t.id.clone(),
            kind,
            config,
            enabled: t.enabled.unwrap_or(true),
            next_at,
        });
    }
    Ok(out)
}

/// Makes the stored triggers of workflow `wf` match what `doc` declares. Triggers made
/// through the API are left alone.
pub async fn sync(
    st: &AppState,
    wf: &str,
    doc: &orcheo_core::Workflow,
    actor: &str,
) -> ApiResult<()> {
    let wanted = declared(st, doc)?;
    let prefix = format!("{wf}:");
    let existing: Vec<TriggerRecord> = st
        .store
        .list_triggers(Some(wf))
        .await?
        .into_iter()
        .filter(|t| t.id.starts_with(&prefix))
        .collect();
    for d in &wanted {
        let id = format!("{prefix}{}", d.id);
        match existing.iter().find(|t| t.id == id) {
            Some(t) if t.kind == d.kind && t.config == d.config && t.enabled == d.enabled => {}
            Some(t) if t.kind == d.kind => {
                // A poller keeps its place; a schedule plans from its new expression.
                let next = match d.kind {
                    "polling" => t.next_at.or(d.next_at),
                    _ => d.next_at,
                };
                st.store
                    .update_trigger(&id, &d.config, d.enabled, next)
                    .await?;
                st.store
                    .audit(actor, "trigger.update", &id, json!({"from": "document"}))
                    .await?;
            }
            other => {
                if other.is_some() {
                    // The kind changed: a new trigger under the same id.
                    st.store.delete_trigger(&id).await?;
                }
                create(st, wf, &id, d, actor).await?;
            }
        }
    }
    for t in existing {
        if !wanted.iter().any(|d| format!("{prefix}{}", d.id) == t.id) {
            st.store.delete_trigger(&t.id).await?;
            st.store
                .audit(actor, "trigger.delete", &t.id, json!({"from": "document"}))
                .await?;
        }
    }
    Ok(())
}

async fn create(st: &AppState, wf: &str, id: &str, d: &Declared, actor: &str) -> ApiResult<()> {
    let token = match d.kind {
        "webhook" => Some(orcheo_store::random_token(32)?),
        _ => None,
    };
    st.store
        .create_trigger(NewTrigger {
            id: id.to_string(),
            workflow_id: wf.to_string(),
            version: None,
            kind: d.kind.into(),
            config: d.config.clone(),
            secret: None,
            token,
            created_by: actor.to_string(),
            next_at: d.next_at,
        })
        .await?;
    if !d.enabled {
        st.store.set_trigger_enabled(id, false).await?;
    }
    st.store
        .audit(
            actor,
            "trigger.create",
            id,
            json!({"from": "document", "kind": d.kind}),
        )
        .await?;
    Ok(())
}
