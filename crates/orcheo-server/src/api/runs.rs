//! Runs: start, inspect, cancel, resume, retry, fork; events, live streams, checkpoints.

use super::{ApiJson, ApiQuery};
use crate::auth::{Need, RunsExecute, RunsRead};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orcheo_core::checkpoint::{Checkpoint, CheckpointSummary, RunStatus};
use orcheo_store::{CancelOutcome, NewRun, Page, RunFilter, RunRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// Starting a run.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The workflow.
    pub workflow_id: String,
    /// The version (default: the newest).
    pub version: Option<u32>,
    /// The run input (default `{}`).
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// Debug mode: every node execution also records its rendered config and the state it
    /// saw (`node_input` events).
    #[serde(default)]
    pub debug: bool,
}

/// Listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunListQuery {
    /// Only runs of this workflow.
    workflow_id: Option<String>,
    /// Only runs in this status (queued, running, waiting, completed, failed, cancelled).
    status: Option<String>,
    /// Created at or after (RFC 3339).
    since: Option<String>,
    /// Created before (RFC 3339).
    until: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    limit: Option<u32>,
}

/// The value a waiting run continues with.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRun {
    /// The answer to the interrupt (an approval decision, a form, …).
    #[schema(value_type = Object)]
    pub value: Value,
    /// Answer only the interrupt of this node; the run's other interrupts keep waiting.
    /// Without it the value answers every interrupt the run waits on.
    pub node: Option<String>,
    /// With `node`, only this map item of it.
    pub index: Option<usize>,
}

/// Forking a run from a checkpoint.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkRun {
    /// The checkpoint to start from.
    pub checkpoint: u64,
    /// State fields to replace before continuing (replay when absent).
    #[schema(value_type = Option<Object>)]
    pub state: Option<Map<String, Value>>,
}

/// Where to continue an event listing or stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events numbered above this (default 0: from the start).
    after: Option<u64>,
    /// Page size, 1–10000 (default 1000; listings only).
    limit: Option<u32>,
}

/// A page of stored events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Events in order; each has `seq`, `ts`, `type` and the type's fields.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Pass as `after` for the next page (absent when this page is the end of what is stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// What cancel did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CancelResponse {
    /// The run.
    pub run_id: String,
    /// `cancelled` (it was queued or waiting), `cancelling` (its worker was told to stop).
    pub result: String,
}

pub(crate) fn parse_time(
    s: &Option<String>,
    what: &str,
) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    s.as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "`{what}` must be an RFC 3339 time like 2026-01-31T12:00:00Z: {e}"
                    ))
                })
        })
        .transpose()
}

/// Queues a run of a workflow version. With an `Idempotency-Key` header, the same key returns
/// the same run instead of starting another.
#[utoipa::path(post, path = "/api/runs", tag = "runs", request_body = CreateRun,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe creation: the same key returns the same run")),
    security(("api_key" = ["runs:execute"])),
    responses((status = 202, description = "Queued", body = RunRecord),
              (status = 200, description = "An earlier request with this Idempotency-Key made this run", body = RunRecord),
              (status = 404, body = Problem), (status = 422, description = "The input does not fit the workflow", body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_run(
    Need(p, _): Need<RunsExecute>,
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateRun>,
) -> ApiResult<(StatusCode, Json<RunRecord>)> {
    let key = match headers.get("idempotency-key") {
        Some(v) => {
            let k = v.to_str().map_err(|_| {
                ApiError::bad_request("the Idempotency-Key header must be visible ASCII")
            })?;
            if k.is_empty() || k.len() > 255 {
                return Err(ApiError::bad_request(
                    "the Idempotency-Key header must be 1–255 characters",
                ));
            }
            Some(format!("{}:{k}", p.key.id))
        }
        None => None,
    };
    let version = match body.version {
        Some(v) => v,
        None => {
            st.store
                .get_workflow(&body.workflow_id)
                .await?
                .latest_version
        }
    };
    let wf = st
        .compiled
        .get(&st.store, &st.catalog, &body.workflow_id, version)
        .await?;
    let input = body.input.unwrap_or_else(|| json!({}));
    if let Some(v) = &wf.input_validator {
        let errs: Vec<Value> = v
            .iter_errors(&input)
            .map(|e| json!({"path": e.instance_path().as_str(), "message": e.to_string()}))
            .collect();
        if !errs.is_empty() {
            return Err(ApiError::invalid(
                format!(
                    "the input does not match the workflow's input_schema ({} problem(s)); the first: {}",
                    errs.len(),
                    errs[0]["message"].as_str().unwrap_or("")
                ),
                Some(Value::Array(errs)),
            ));
        }
    }
    if !input.is_object() {
        return Err(ApiError::invalid(
            "the run input must be a JSON object (its fields become state fields)",
            None,
        ));
    }
    let actor = p.actor();
    let (run, created) = st
        .store
        .create_run_audited(
            NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                workflow_id: body.workflow_id.clone(),
                version,
                input,
                origin: if body.debug {
                    json!({"kind": "manual", "debug": true})
                } else {
                    json!({"kind": "manual"})
                },
                idempotency_key: key,
                created_by: actor.clone(),
            },
            Some((
                &actor,
                "run.create",
                json!({"workflow_id": body.workflow_id, "version": version}),
            )),
        )
        .await?;
    if created {
        st.wake.notify_one();
    }
    Ok((
        if created {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        },
        Json(run),
    ))
}

/// Runs, newest first.
#[utoipa::path(get, path = "/api/runs", tag = "runs", params(RunListQuery),
    security(("api_key" = ["runs:read"])),
    responses((status = 200, body = Page<RunRecord>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_runs(
    _: Need<RunsRead>,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<RunListQuery>,
) -> ApiResult<Json<Page<RunRecord>>> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            serde_json::from_value::<RunStatus>(Value::String(s.to_string())).map_err(|_| {
                ApiError::bad_request(format!(
                    "unknown status `{s}`; use queued, running, waiting, completed, failed or cancelled"
                ))
            })
        })
        .transpose()?;
    let page = st
        .store
        .list_runs(&RunFilter {
            workflow_id: q.workflow_id,
            status,
            since: parse_time(&q.since, "since")?,
            until: parse_time(&q.until, "until")?,
            cursor: q.cursor,
            limit: q.limit,
        })
        .await?;
    Ok(Json(page))
}

/// One run: status, input, output, error, waiting interrupts.
#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs", params(("id" = String, Path, description = "Run id")),
    security(("api_key" = ["runs:read"])),
    responses((status = 200, body = RunRecord), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_run(
    _: Need<RunsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunRecord>> {
    Ok(Json(st.store.get_run(&id).await?))
}

/// Cancels a queued or waiting run at once; asks a running run's worker to stop it.
#[utoipa::path(post, path = "/api/runs/{id}/cancel", tag = "runs", params(("id" = String, Path, description = "Run id")),
    security(("api_key" = ["runs:execute"])),
    responses((status = 202, body = CancelResponse), (status = 404, body = Problem),
              (status = 409, description = "The run already finished", body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn cancel_run(
    Need(p, _): Need<RunsExecute>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<CancelResponse>)> {
    let reason = format!("cancelled by {}", p.actor());
    let result = match st.store.cancel_run(&id, &reason).await? {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Requested => {
            if let Some(w) = &st.worker {
                w.cancel_local(&id);
            }
            "cancelling"
        }
        CancelOutcome::AlreadyFinished(s) => {
            return Err(ApiError::conflict(format!(
                "run `{id}` already finished ({}); there is nothing to cancel",
                s.as_str()
            )))
        }
    };
    st.store
        .audit(&p.actor(), "run.cancel", &id, json!({"result": result}))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CancelResponse {
            run_id: id,
            result: result.into(),
        }),
    ))
}

/// Continues a waiting run with a value (the answer to its interrupt).
#[utoipa::path(post, path = "/api/runs/{id}/resume", tag = "runs", request_body = ResumeRun,
    params(("id" = String, Path, description = "Run id")),
    security(("api_key" = ["runs:execute"])),
    responses((status = 202, body = RunRecord), (status = 404, body = Problem),
              (status = 409, description = "The run is not waiting", body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn resume_run(
    Need(p, _): Need<RunsExecute>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ResumeRun>,
) -> ApiResult<(StatusCode, Json<RunRecord>)> {
    let at = match body.node {
        Some(node) => {
            let current = st.store.get_run(&id).await?;
            let waits: Vec<(String, Option<usize>)> = current
                .waiting
                .as_ref()
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|w| {
                            (
                                w["node"].as_str().unwrap_or("").to_string(),
                                w["index"].as_u64().map(|i| i as usize),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if current.status == RunStatus::Waiting
                && !waits
                    .iter()
                    .any(|(n, i)| *n == node && (body.index.is_none() || *i == body.index))
            {
                let list: Vec<String> = waits
                    .iter()
                    .map(|(n, i)| match i {
                        Some(i) => format!("{n}[{i}]"),
                        None => n.clone(),
                    })
                    .collect();
                return Err(ApiError::conflict(format!(
                    "run `{id}` does not wait at `{node}`{}; it waits at {}",
                    body.index.map(|i| format!(" item {i}")).unwrap_or_default(),
                    list.join(", ")
                )));
            }
            Some(orcheo_core::ResumeTarget {
                node,
                index: body.index,
            })
        }
        None => None,
    };
    let run = st
        .store
        .resume_run(&id, &json!({"value": body.value, "at": at}))
        .await?;
    st.wake.notify_one();
    st.store
        .audit(&p.actor(), "run.resume", &id, json!({}))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Retries a failed run from its last checkpoint: finished nodes are not run again.
#[utoipa::path(post, path = "/api/runs/{id}/retry", tag = "runs", params(("id" = String, Path, description = "Run id")),
    security(("api_key" = ["runs:execute"])),
    responses((status = 202, body = RunRecord), (status = 404, body = Problem),
              (status = 409, description = "The run has not failed", body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn retry_run(
    Need(p, _): Need<RunsExecute>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<RunRecord>)> {
    let run = st.store.retry_run(&id).await?;
    st.wake.notify_one();
    st.store
        .audit(&p.actor(), "run.retry", &id, json!({}))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Starts a new run from a checkpoint of this one (replay), optionally with edited state.
#[utoipa::path(post, path = "/api/runs/{id}/fork", tag = "runs", request_body = ForkRun,
    params(("id" = String, Path, description = "Run id")),
    security(("api_key" = ["runs:execute"])),
    responses((status = 202, description = "The new run, queued", body = RunRecord), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn fork_run(
    Need(p, _): Need<RunsExecute>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ForkRun>,
) -> ApiResult<(StatusCode, Json<RunRecord>)> {
    let src = st.store.get_run(&id).await?;
    if st
        .store
        .get_checkpoint(&id, body.checkpoint)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "run `{id}` has no checkpoint {}; GET /api/runs/{id}/checkpoints lists them",
            body.checkpoint
        )));
    }
    let (run, _) = st
        .store
        .create_run(NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            workflow_id: src.workflow_id.clone(),
            version: src.version,
            input: src.input.clone(),
            origin: json!({"kind": "fork", "run_id": id, "checkpoint": body.checkpoint, "state": body.state}),
            idempotency_key: None,
            created_by: p.actor(),
        })
        .await?;
    st.wake.notify_one();
    st.store
        .audit(
            &p.actor(),
            "run.fork",
            &run.id,
            json!({"from": id, "checkpoint": body.checkpoint}),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Stored events of a run, in order, after `after`.
#[utoipa::path(get, path = "/api/runs/{id}/events", tag = "runs",
    params(("id" = String, Path, description = "Run id"), EventsQuery),
    security(("api_key" = ["runs:read"])),
    responses((status = 200, body = EventPage), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_events(
    _: Need<RunsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    st.store.get_run(&id).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let evs = st
        .store
        .list_events(&id, q.after.unwrap_or(0), limit)
        .await?;
    let next_after = (evs.len() == limit as usize)
        .then(|| evs.last().map(|e| e.seq))
        .flatten();
    let events = evs
        .iter()
        .map(|e| serde_json::from_str(&e.json).unwrap_or(Value::Null))
        .collect();
    Ok(Json(EventPage { events, next_after }))
}

fn start_after(headers: &HeaderMap, q: &EventsQuery) -> ApiResult<u64> {
    if let Some(v) = headers.get("last-event-id") {
        let s = v.to_str().unwrap_or("").trim();
        return s.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "Last-Event-ID `{s}` is not an event sequence number"
            ))
        });
    }
    Ok(q.after.unwrap_or(0))
}

fn follow(
    st: &AppState,
    id: String,
    after: u64,
) -> tokio::sync::mpsc::Receiver<Arc<orcheo_store::StoredEvent>> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(crate::stream::follow(
        st.store.clone(),
        id,
        after,
        tx,
        st.shutdown.clone(),
    ));
    rx
}

/// Server-Sent Events: stored events after `Last-Event-ID` (or `?after=`), then live ones,
/// each once and in order; the stream ends when the run does. Each event's `id` is its `seq`.
#[utoipa::path(get, path = "/api/runs/{id}/stream", tag = "runs",
    params(("id" = String, Path, description = "Run id"), EventsQuery,
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this sequence number")),
    security(("api_key" = ["runs:read"])),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream"),
              (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn stream_sse(
    _: Need<RunsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    st.store.get_run(&id).await?;
    let after = start_after(&headers, &q)?;
    let rx = follow(&st, id, after);
    let stream = ReceiverStream::new(rx).map(|ev| {
        Ok::<_, std::convert::Infallible>(
            SseEvent::default()
                .id(ev.seq.to_string())
                .event(ev.kind.clone())
                .data(&*ev.json),
        )
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// WebSocket: the same events as the SSE stream, one JSON text message each, from `?after=`.
#[utoipa::path(get, path = "/api/runs/{id}/ws", tag = "runs",
    params(("id" = String, Path, description = "Run id"), EventsQuery),
    security(("api_key" = ["runs:read"])),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
              (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn stream_ws(
    _: Need<RunsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    st.store.get_run(&id).await?;
    let after = q.after.unwrap_or(0);
    Ok(ws.on_upgrade(move |socket| ws_session(socket, st, id, after)))
}

async fn ws_session(mut socket: WebSocket, st: AppState, id: String, after: u64) {
    let mut rx = follow(&st, id, after);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    if socket.send(Message::Text(ev.json.to_string().into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            }
        }
    }
}

/// A run's checkpoints, oldest first.
#[utoipa::path(get, path = "/api/runs/{id}/checkpoints", tag = "runs", params(("id" = String, Path, description = "Run id")),
    security(("api_key" = ["runs:read"])),
    responses((status = 200, body = Vec<Object>), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_checkpoints(
    _: Need<RunsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CheckpointSummary>>> {
    st.store.get_run(&id).await?;
    Ok(Json(st.store.list_checkpoints(&id).await?))
}

/// One checkpoint: state, results, pending work, writes, interrupts.
#[utoipa::path(get, path = "/api/runs/{id}/checkpoints/{checkpoint}", tag = "runs",
    params(("id" = String, Path, description = "Run id"), ("checkpoint" = u64, Path, description = "Checkpoint id")),
    security(("api_key" = ["runs:read"])),
    responses((status = 200, body = Object), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_checkpoint(
    _: Need<RunsRead>,
    State(st): State<AppState>,
    Path((id, checkpoint)): Path<(String, u64)>,
) -> ApiResult<Json<Checkpoint>> {
    st.store
        .get_checkpoint(&id, checkpoint)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("run `{id}` has no checkpoint {checkpoint}")))
}
