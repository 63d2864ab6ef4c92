//! Cron triggers: the management routes and the scheduler loop. Every server runs the loop;
//! a tick's runs are created with the idempotency key `cron:<trigger>:<tick>` and the planned
//! tick then advances by compare-and-set, so each tick fires once across servers and restarts.

use super::schedule::{Misfire, Schedule};
use crate::api::ApiJson;
use crate::auth::{Need, TriggersManage};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use orcheo_store::{NewRun, NewTrigger, TriggerRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

/// What to do when a tick comes while the previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Do not start another run.
    #[default]
    Skip,
    /// Keep one tick waiting (in the trigger's state) and fire it when the previous run ends;
    /// further ticks meanwhile are dropped.
    QueueOne,
    /// Start it anyway.
    Allow,
    /// Cancel the previous run, then start.
    CancelPrevious,
}

/// A cron trigger's settings.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronConfig {
    /// The cron expression (5 fields, or 6 with seconds; `@daily`, `L`, `#`, `W` …).
    pub expression: String,
    /// IANA time zone (default UTC).
    #[serde(default = "utc")]
    pub timezone: String,
    /// No firing before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    /// No firing after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<DateTime<Utc>>,
    /// When the previous run is still going (default skip).
    #[serde(default)]
    pub overlap: Overlap,
    /// Ticks missed during downtime (default skip).
    #[serde(default)]
    pub misfire: Misfire,
    /// The run input (default `{}`); `scheduled_for` is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
}

fn utc() -> String {
    "UTC".into()
}

/// Making a cron trigger.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCron {
    /// The workflow each tick starts.
    pub workflow_id: String,
    /// Pin a version (default: the newest at each tick).
    pub version: Option<u32>,
    /// Settings.
    #[serde(flatten)]
    pub config: CronConfig,
}

/// A schedule preview.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NextFires {
    /// The expression in words.
    pub description: String,
    /// The next firings (UTC).
    pub next: Vec<DateTime<Utc>>,
}

/// The schedule of a stored cron trigger.
pub fn schedule_of(t: &TriggerRecord) -> Result<Schedule, String> {
    let c: CronConfig = serde_json::from_value(t.config.clone()).map_err(|e| e.to_string())?;
    Schedule::parse(&c.expression, &c.timezone, c.start_at, c.end_at)
}

/// Makes a cron trigger.
#[utoipa::path(post, path = "/api/triggers/cron", tag = "triggers", request_body = CreateCron,
    security(("api_key" = ["triggers:manage"])),
    responses((status = 201, body = TriggerRecord), (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_cron(
    Need(p, _): Need<TriggersManage>,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<CreateCron>,
) -> ApiResult<(StatusCode, Json<TriggerRecord>)> {
    st.store.get_workflow(&body.workflow_id).await?;
    let c = body.config;
    let schedule = Schedule::parse(&c.expression, &c.timezone, c.start_at, c.end_at)
        .map_err(|e| ApiError::invalid(e, None))?;
    if let Misfire::CatchUp { limit } = c.misfire {
        if limit == 0 || limit > 1000 {
            return Err(ApiError::invalid(
                "misfire catch_up limit must be 1–1000",
                None,
            ));
        }
    }
    if c.input.as_ref().is_some_and(|i| !i.is_object()) {
        return Err(ApiError::invalid(
            "a schedule's input must be a JSON object",
            None,
        ));
    }
    let next = schedule.next_after(Utc::now());
    let t = st
        .store
        .create_trigger(NewTrigger {
            id: uuid::Uuid::now_v7().to_string(),
            workflow_id: body.workflow_id.clone(),
            version: body.version,
            kind: "cron".into(),
            config: serde_json::to_value(&c).map_err(ApiError::internal)?,
            secret: None,
            token: None,
            created_by: p.actor(),
            next_at: next,
        })
        .await?;
    st.store
        .audit(
            &p.actor(),
            "trigger.create",
            &t.id,
            json!({"kind": "cron", "expression": c.expression, "timezone": c.timezone}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// The next firings of a cron trigger, and its expression in words.
#[utoipa::path(get, path = "/api/triggers/{id}/next", tag = "triggers",
    params(("id" = String, Path, description = "Trigger id"), ("count" = Option<usize>, Query, description = "How many (default 5, at most 100)")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = NextFires), (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn next_fires(
    _: Need<TriggersManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    crate::api::ApiQuery(q): crate::api::ApiQuery<std::collections::HashMap<String, String>>,
) -> ApiResult<Json<NextFires>> {
    let t = st.store.get_trigger(&id).await?;
    if t.kind != "cron" {
        return Err(ApiError::invalid(
            format!("trigger `{id}` is a {}, not a schedule", t.kind),
            None,
        ));
    }
    let n = q
        .get("count")
        .map(|c| {
            c.parse::<usize>()
                .map_err(|_| ApiError::bad_request("count must be a number"))
        })
        .transpose()?
        .unwrap_or(5)
        .clamp(1, 100);
    let s = schedule_of(&t).map_err(|e| ApiError::invalid(e, None))?;
    Ok(Json(NextFires {
        description: s.describe(),
        next: s.upcoming(Utc::now(), n),
    }))
}

/// Fires due schedules until `stop`; checks every half second.
pub async fn run_scheduler(st: AppState, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if let Err(e) = tick(&st, Utc::now()).await {
            tracing::warn!(error = %e.detail, "firing schedules failed; retrying");
        }
    }
}

/// Fires every schedule due at `now`, and queued ticks whose previous run has ended.
pub async fn tick(st: &AppState, now: DateTime<Utc>) -> ApiResult<()> {
    for t in st.store.queued_schedules().await? {
        let Some(at) = t.state["queued"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        else {
            st.store.set_trigger_state(&t.id, &Value::Null).await?;
            continue;
        };
        if !st.store.active_trigger_runs(&t.id).await?.is_empty() {
            continue;
        }
        let Ok(cfg) = serde_json::from_value::<CronConfig>(t.config.clone()) else {
            continue;
        };
        // Run first, then clear: a crash in between re-fires the same tick, which its
        // idempotency key folds into the run already made.
        start_tick_run(st, &t, &cfg, at.with_timezone(&Utc)).await?;
        st.store.set_trigger_state(&t.id, &Value::Null).await?;
    }
    for t in st.store.due_triggers("cron", now).await? {
        let span =
            tracing::info_span!("schedule", trigger_id = %t.id, workflow_id = %t.workflow_id);
        let _g = span.enter();
        let cfg: CronConfig = match serde_json::from_value(t.config.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable schedule; pausing it");
                st.store.set_trigger_enabled(&t.id, false).await?;
                continue;
            }
        };
        let schedule =
            match Schedule::parse(&cfg.expression, &cfg.timezone, cfg.start_at, cfg.end_at) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "invalid schedule; pausing it");
                    st.store.set_trigger_enabled(&t.id, false).await?;
                    continue;
                }
            };
        let Some(planned) = t.next_at else { continue };
        let (fire, next) = schedule.due(planned, now, cfg.misfire);
        for at in fire {
            fire_once(st, &t, &cfg, at).await?;
        }
        // Runs first, then the claim: a crash in between re-fires the same ticks, which the
        // idempotency keys fold into the runs already made.
        st.store
            .advance_schedule(&t.id, Some(planned), next)
            .await?;
    }
    Ok(())
}

async fn fire_once(
    st: &AppState,
    t: &TriggerRecord,
    cfg: &CronConfig,
    at: DateTime<Utc>,
) -> ApiResult<()> {
    let active = st.store.active_trigger_runs(&t.id).await?;
    match cfg.overlap {
        Overlap::Skip if !active.is_empty() => {
            tracing::info!(scheduled_for = %at, "previous run still going; tick skipped");
            return Ok(());
        }
        Overlap::QueueOne if !active.is_empty() => {
            if t.state.get("queued").is_none() {
                tracing::info!(scheduled_for = %at, "previous run still going; tick queued");
                st.store
                    .set_trigger_state(&t.id, &json!({"queued": at.to_rfc3339()}))
                    .await?;
            } else {
                tracing::info!(scheduled_for = %at, "a tick is already queued; tick dropped");
            }
            return Ok(());
        }
        Overlap::CancelPrevious => {
            for id in &active {
                let _ = st
                    .store
                    .cancel_run(id, "cancelled by the next tick of its schedule")
                    .await;
                if let Some(w) = &st.worker {
                    w.cancel_local(id);
                }
            }
        }
        _ => {}
    }
    start_tick_run(st, t, cfg, at).await
}

/// Creates the run of one tick (idempotency key `cron:<trigger>:<tick ms>`).
async fn start_tick_run(
    st: &AppState,
    t: &TriggerRecord,
    cfg: &CronConfig,
    at: DateTime<Utc>,
) -> ApiResult<()> {
    let version = match t.version {
        Some(v) => v,
        None => st.store.get_workflow(&t.workflow_id).await?.latest_version,
    };
    let mut input = cfg.input.clone().unwrap_or_else(|| json!({}));
    if let Some(o) = input.as_object_mut() {
        o.insert("scheduled_for".into(), Value::String(at.to_rfc3339()));
    }
    let (_, created) = st
        .store
        .create_run(NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            workflow_id: t.workflow_id.clone(),
            version,
            input,
            origin: json!({"kind": "cron", "trigger_id": t.id, "scheduled_for": at.to_rfc3339()}),
            idempotency_key: Some(format!("cron:{}:{}", t.id, at.timestamp_millis())),
            created_by: format!("schedule {}", t.id),
        })
        .await?;
    if created {
        st.wake.notify_one();
    }
    Ok(())
}
