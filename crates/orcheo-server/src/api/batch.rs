//! Batch runs (an array, CSV or JSON Lines → one run each) and the dead-letter view (failed
//! runs with their error, origin and last checkpoint; re-drivable one by one or in bulk).

use super::ApiQuery;
use crate::auth::{Need, RunsExecute, RunsRead};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use orcheo_core::checkpoint::{CheckpointSummary, RunStatus};
use orcheo_store::{NewRun, RunFilter, RunRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Where a batch goes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    /// The workflow (required for CSV and JSON Lines bodies).
    workflow_id: Option<String>,
    /// A version (default: the newest).
    version: Option<u32>,
}

/// The runs a batch made.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchCreated {
    /// One run id per input, in input order.
    pub run_ids: Vec<String>,
}

/// A JSON batch.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The workflow.
    pub workflow_id: String,
    /// A version (default: the newest).
    pub version: Option<u32>,
    /// One run per input object.
    #[schema(value_type = Vec<Object>)]
    pub inputs: Vec<Value>,
}

const MAX_BATCH: usize = 10_000;

/// Starts one run per input: a JSON body `{workflow_id, inputs: [...]}`, or a CSV (header row
/// = field names) or JSON Lines upload with `?workflow_id=`. Every input is checked first;
/// nothing is started when one is invalid.
#[utoipa::path(post, path = "/api/runs/batch", tag = "runs", params(BatchQuery),
    request_body(content = BatchRequest, description = "JSON; or text/csv, application/x-ndjson with ?workflow_id="),
    security(("api_key" = ["runs:execute"])),
    responses((status = 202, body = BatchCreated), (status = 404, body = Problem), (status = 415, body = Problem),
              (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_batch(
    Need(p, _): Need<RunsExecute>,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<BatchQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<BatchCreated>)> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (workflow_id, version, inputs) = if ct.starts_with("application/json") {
        let b: BatchRequest = serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(
                format!("the batch body is not `{{workflow_id, inputs: [...]}}`: {e}"),
                None,
            )
        })?;
        (b.workflow_id, b.version, b.inputs)
    } else {
        let wf = q.workflow_id.clone().ok_or_else(|| {
            ApiError::bad_request("a CSV or JSON Lines batch needs ?workflow_id=")
        })?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("the batch upload is not UTF-8 text"))?;
        let inputs = if ct.starts_with("text/csv") {
            parse_csv(text)?
        } else if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") {
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str(l).map_err(|e| {
                        ApiError::invalid(format!("line {} is not JSON: {e}", i + 1), None)
                    })
                })
                .collect::<ApiResult<Vec<Value>>>()?
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send a batch as application/json, text/csv or application/x-ndjson",
            ));
        };
        (wf, q.version, inputs)
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid("the batch has no inputs", None));
    }
    if inputs.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            format!("a batch has at most {MAX_BATCH} inputs; split it"),
            None,
        ));
    }
    let version = match version {
        Some(v) => v,
        None => st.store.get_workflow(&workflow_id).await?.latest_version,
    };
    let wf = st
        .compiled
        .get(&st.store, &st.catalog, &workflow_id, version)
        .await?;
    let mut problems = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if !input.is_object() {
            problems.push(json!({"index": i, "message": "an input must be a JSON object"}));
            continue;
        }
        if let Some(v) = &wf.input_validator {
            for e in v.iter_errors(input) {
                problems.push(json!({"index": i, "path": e.instance_path().as_str(), "message": e.to_string()}));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(
            format!(
                "{} input(s) do not fit the workflow; no run was started",
                problems.len()
            ),
            Some(Value::Array(problems)),
        ));
    }
    let batch_id = uuid::Uuid::now_v7().to_string();
    let mut run_ids = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let (run, _) = st
            .store
            .create_run(NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                workflow_id: workflow_id.clone(),
                version,
                input,
                origin: json!({"kind": "manual", "batch": batch_id, "index": i}),
                idempotency_key: None,
                created_by: p.actor(),
            })
            .await?;
        run_ids.push(run.id);
    }
    st.wake.notify_one();
    st.store
        .audit(
            &p.actor(),
            "run.batch",
            &batch_id,
            json!({"workflow_id": workflow_id, "runs": run_ids.len()}),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(BatchCreated { run_ids })))
}

/// CSV with a header row → one object per row; numbers and booleans stay strings (the
/// workflow's templates convert them).
fn parse_csv(text: &str) -> ApiResult<Vec<Value>> {
    let mut rows = csv_rows(text).into_iter();
    let header = rows.next().ok_or_else(|| {
        ApiError::invalid("the CSV is empty; its first row names the fields", None)
    })?;
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        if row.len() == 1 && row[0].is_empty() {
            continue;
        }
        if row.len() != header.len() {
            return Err(ApiError::invalid(
                format!(
                    "CSV row {} has {} fields; the header has {}",
                    n + 2,
                    row.len(),
                    header.len()
                ),
                None,
            ));
        }
        let obj: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(row.into_iter().map(Value::String))
            .collect();
        out.push(Value::Object(obj));
    }
    Ok(out)
}

/// RFC 4180 fields: quotes, doubled quotes, commas and newlines inside quotes.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Dead-letter filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// Only this workflow's runs.
    workflow_id: Option<String>,
    /// Failed at or after (RFC 3339, by creation time).
    since: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    limit: Option<u32>,
}

/// A failed run with what is needed to decide about it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The run (its `error`, `failed_node` and `origin` say what and where).
    pub run: RunRecord,
    /// Its last checkpoint, from which a re-drive continues.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub last_checkpoint: Option<CheckpointSummary>,
}

/// A page of dead letters.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeadLetters {
    /// Failed runs, newest first.
    pub items: Vec<DeadLetter>,
    /// The next page's cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Failed runs with their error, origin and last checkpoint.
#[utoipa::path(get, path = "/api/dead-letters", tag = "runs", params(DeadQuery),
    security(("api_key" = ["runs:read"])),
    responses((status = 200, body = DeadLetters), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn dead_letters(
    _: Need<RunsRead>,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<DeadQuery>,
) -> ApiResult<Json<DeadLetters>> {
    let since = super::runs::parse_time(&q.since, "since")?;
    let page = st
        .store
        .list_runs(&RunFilter {
            workflow_id: q.workflow_id,
            status: Some(RunStatus::Failed),
            since,
            until: None,
            cursor: q.cursor,
            limit: q.limit,
        })
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for run in page.items {
        let last_checkpoint = st.store.list_checkpoints(&run.id).await?.pop();
        items.push(DeadLetter {
            run,
            last_checkpoint,
        });
    }
    Ok(Json(DeadLetters {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// Which failed runs to re-drive.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redrive {
    /// These runs.
    #[serde(default)]
    pub run_ids: Vec<String>,
    /// Or every failed run of this workflow (up to 1000).
    pub workflow_id: Option<String>,
}

/// What a re-drive did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Redriven {
    /// Runs queued again.
    pub retried: Vec<String>,
    /// Runs that were not failed (or not found), with why.
    #[schema(value_type = Vec<Object>)]
    pub skipped: Vec<Value>,
}

/// Queues failed runs again from their last checkpoints, one by one or in bulk.
#[utoipa::path(post, path = "/api/dead-letters/redrive", tag = "runs", request_body = Redrive,
    security(("api_key" = ["runs:execute"])),
    responses((status = 202, body = Redriven), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn redrive(
    Need(p, _): Need<RunsExecute>,
    State(st): State<AppState>,
    super::ApiJson(body): super::ApiJson<Redrive>,
) -> ApiResult<(StatusCode, Json<Redriven>)> {
    let mut ids = body.run_ids;
    if let Some(wf) = &body.workflow_id {
        let page = st
            .store
            .list_runs(&RunFilter {
                workflow_id: Some(wf.clone()),
                status: Some(RunStatus::Failed),
                limit: Some(500),
                ..Default::default()
            })
            .await?;
        ids.extend(page.items.into_iter().map(|r| r.id));
    }
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "name the runs (`run_ids`) or a `workflow_id`",
            None,
        ));
    }
    ids.sort();
    ids.dedup();
    let mut retried = Vec::new();
    let mut skipped = Vec::new();
    for id in ids {
        match st.store.retry_run(&id).await {
            Ok(_) => retried.push(id),
            Err(e) => skipped.push(json!({"run_id": id, "why": e.to_string()})),
        }
    }
    st.wake.notify_one();
    st.store
        .audit(
            &p.actor(),
            "run.redrive",
            "dead-letters",
            json!({"retried": retried.len(), "skipped": skipped.len()}),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Redriven { retried, skipped })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_and_errors() {
        let v = parse_csv("name,note\nAda,\"says \"\"hi\"\", twice\"\nBob,\"two\nlines\"\n")
            .expect("csv");
        assert_eq!(
            v,
            vec![
                json!({"name": "Ada", "note": "says \"hi\", twice"}),
                json!({"name": "Bob", "note": "two\nlines"})
            ]
        );
        assert!(parse_csv("a,b\n1\n").is_err());
        assert!(parse_csv("").is_err());
    }
}
