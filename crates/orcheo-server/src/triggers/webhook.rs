//! Webhook triggers: management under `/api/triggers`, and the ingress `/hooks/{token}` that
//! verifies a request and turns it into a run.

use super::signature::{self, Scheme};
use crate::api::{ApiJson, ApiQuery};
use crate::auth::{Need, TriggersManage};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use orcheo_store::{NewRun, NewTrigger, TriggerRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// How a webhook trigger accepts requests.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Accepted HTTP methods (default `["POST"]`).
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// How senders sign requests; none accepts unsigned requests (the URL is the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub signature: Option<Scheme>,
    /// How far a signed timestamp may be from now, in seconds (default 300).
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: i64,
    /// Largest accepted body in bytes (default 1 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Headers that must be present with these exact values (names case-insensitive).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub required_headers: Map<String, Value>,
    /// Deduplicate by this header's value (the same value returns the same run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_header: Option<String>,
    /// Deduplicate by the value at this JSON Pointer in the body (e.g. `/id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_path: Option<String>,
    /// Answer with the run's result instead of `202` (see [`Respond`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond: Option<Respond>,
    /// Requests per second this trigger accepts (per server); more get `429` with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<super::ratelimit::RateLimit>,
    /// Take the signing secret from this vault credential (read at each request, so a rotation
    /// applies at once); the way webhooks declared in documents get a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_credential: Option<String>,
    /// The credential's field holding the secret (needed when it has several secret fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_field: Option<String>,
}

/// Wait for the run and answer with a node's output: `{"status": 201, "headers": {...},
/// "body": ...}` fields of that output shape the response; any other output is the JSON body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    /// The node whose output answers (default: the run's final state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How long to wait, in seconds (default 10, at most 120); after it the answer is `202`.
    #[serde(default = "default_wait")]
    pub timeout_secs: f64,
}

fn default_wait() -> f64 {
    10.0
}

fn default_methods() -> Vec<String> {
    vec!["POST".into()]
}
fn default_tolerance() -> i64 {
    300
}
fn default_max_body() -> usize {
    1024 * 1024
}

/// Making a webhook trigger.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// The workflow each request starts.
    pub workflow_id: String,
    /// Pin a version (default: the newest at each request).
    pub version: Option<u32>,
    /// The signing secret; generated (and shown once) when the scheme needs one and none is given.
    pub secret: Option<String>,
    /// Settings.
    #[serde(flatten)]
    pub config: WebhookConfig,
}

/// A webhook trigger just made.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    /// The trigger.
    #[serde(flatten)]
    pub trigger: TriggerRecord,
    /// The URL senders call. Keep it secret: it is the trigger's address.
    pub url: String,
    /// The generated signing secret, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_once: Option<String>,
}

/// Trigger listing filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TriggerQuery {
    /// Only this workflow's triggers.
    workflow_id: Option<String>,
}

/// Checks a webhook's settings (from the API or a document) and normalises its methods.
pub fn check_config(cfg: WebhookConfig) -> ApiResult<WebhookConfig> {
    let mut methods = Vec::new();
    for m in &cfg.methods {
        let up = m.trim().to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&up.as_str()) {
            return Err(ApiError::invalid(
                format!(
                    "method `{m}` cannot trigger a webhook; use GET, POST, PUT, PATCH or DELETE"
                ),
                None,
            ));
        }
        methods.push(up);
    }
    if let Some(l) = &cfg.rate_limit {
        l.check().map_err(|e| ApiError::invalid(e, None))?;
    }
    if let Some(r) = &cfg.respond {
        if !(r.timeout_secs.is_finite() && r.timeout_secs > 0.0 && r.timeout_secs <= 120.0) {
            return Err(ApiError::invalid(
                "respond.timeout_secs must be between 0 and 120",
                None,
            ));
        }
    }
    if methods.is_empty() {
        return Err(ApiError::invalid(
            "give the webhook at least one method",
            None,
        ));
    }
    if cfg
        .idempotency_path
        .as_deref()
        .is_some_and(|p| !p.is_empty() && !p.starts_with('/'))
    {
        return Err(ApiError::invalid(
            "idempotency_path is a JSON Pointer and starts with `/`, e.g. `/id`",
            None,
        ));
    }
    if cfg.secret_credential.is_some() && cfg.signature.is_none() {
        return Err(ApiError::invalid(
            "a secret_credential without a signature scheme is never checked; set `signature`",
            None,
        ));
    }
    if cfg.secret_field.is_some() && cfg.secret_credential.is_none() {
        return Err(ApiError::invalid(
            "secret_field needs secret_credential",
            None,
        ));
    }
    Ok(WebhookConfig { methods, ..cfg })
}

/// Makes a webhook trigger: an unguessable URL that starts a run per accepted request.
#[utoipa::path(post, path = "/api/triggers/webhook", tag = "triggers", request_body = CreateWebhook,
    security(("api_key" = ["triggers:manage"])),
    responses((status = 201, body = CreatedWebhook), (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_webhook(
    Need(p, _): Need<TriggersManage>,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    st.store.get_workflow(&body.workflow_id).await?;
    let cfg = check_config(body.config)?;
    if let Some(name) = &cfg.secret_credential {
        if body.secret.is_some() {
            return Err(ApiError::invalid(
                "give either `secret` or `secret_credential`, not both",
                None,
            ));
        }
        st.vault
            .credential_secret(name, cfg.secret_field.as_deref())
            .await
            .map_err(|e| ApiError::invalid(e, None))?;
    }
    let (secret, shown) = match (&cfg.signature, body.secret) {
        (Some(_), None) if cfg.secret_credential.is_some() => (None, None),
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "a secret without a signature scheme is never checked; set `signature`",
                None,
            ))
        }
        (None, None) => (None, None),
        (Some(Scheme::StandardWebhooks), None) => {
            let raw = orcheo_store::random_token(32)?;
            let s = format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
            );
            (Some(s.clone()), Some(s))
        }
        (Some(Scheme::StandardWebhooks), Some(s)) => {
            signature::standard_key(&s).map_err(|e| ApiError::invalid(e.to_string(), None))?;
            (Some(s), None)
        }
        (Some(_), None) => {
            let s = orcheo_store::random_token(40)?;
            (Some(s.clone()), Some(s))
        }
        (Some(_), Some(s)) if s.len() < 8 => {
            return Err(ApiError::invalid(
                "a signing secret needs at least 8 characters",
                None,
            ))
        }
        (Some(_), Some(s)) => (Some(s), None),
    };
    let config = cfg;
    let token = orcheo_store::random_token(32)?;
    let id = uuid::Uuid::now_v7().to_string();
    let secret = secret
        .map(|s| st.vault.seal_trigger_secret(&id, &s))
        .transpose()?;
    let trigger = st
        .store
        .create_trigger(NewTrigger {
            id,
            workflow_id: body.workflow_id.clone(),
            version: body.version,
            kind: "webhook".into(),
            config: serde_json::to_value(&config).map_err(ApiError::internal)?,
            secret,
            token: Some(token.clone()),
            created_by: p.actor(),
            next_at: None,
        })
        .await?;
    st.store
        .audit(
            &p.actor(),
            "trigger.create",
            &trigger.id,
            json!({"kind": "webhook", "workflow_id": trigger.workflow_id}),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            url: format!("{}/hooks/{token}", st.base_url),
            trigger,
            secret_once: shown,
        }),
    ))
}

/// A webhook's address.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookUrl {
    /// The URL senders call. Keep it secret: it is the trigger's address.
    pub url: String,
}

/// The URL of a webhook trigger (for webhooks declared in documents, whose URL is made when the
/// version is pushed).
#[utoipa::path(get, path = "/api/triggers/{id}/url", tag = "triggers",
    params(("id" = String, Path, description = "Trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = WebhookUrl), (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn webhook_url(
    _: Need<TriggersManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookUrl>> {
    let t = st.store.get_trigger(&id).await?;
    match t.token {
        Some(token) if t.kind == "webhook" => Ok(Json(WebhookUrl {
            url: format!("{}/hooks/{token}", st.base_url),
        })),
        _ => Err(ApiError::invalid(
            format!("trigger `{id}` is a {}, not a webhook", t.kind),
            None,
        )),
    }
}

/// Triggers, newest first.
#[utoipa::path(get, path = "/api/triggers", tag = "triggers", params(TriggerQuery),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = Vec<TriggerRecord>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_triggers(
    _: Need<TriggersManage>,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<TriggerQuery>,
) -> ApiResult<Json<Vec<TriggerRecord>>> {
    Ok(Json(
        st.store.list_triggers(q.workflow_id.as_deref()).await?,
    ))
}

/// Stops a trigger from firing (its URL answers 404) until resumed.
#[utoipa::path(post, path = "/api/triggers/{id}/pause", tag = "triggers", params(("id" = String, Path, description = "Trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = TriggerRecord), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn pause_trigger(
    Need(p, _): Need<TriggersManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TriggerRecord>> {
    let t = st.store.set_trigger_enabled(&id, false).await?;
    st.store
        .audit(&p.actor(), "trigger.pause", &id, json!({}))
        .await?;
    Ok(Json(t))
}

/// Lets a paused trigger fire again.
#[utoipa::path(post, path = "/api/triggers/{id}/resume", tag = "triggers", params(("id" = String, Path, description = "Trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = TriggerRecord), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn resume_trigger(
    Need(p, _): Need<TriggersManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TriggerRecord>> {
    let t = st.store.set_trigger_enabled(&id, true).await?;
    st.store
        .audit(&p.actor(), "trigger.resume", &id, json!({}))
        .await?;
    Ok(Json(t))
}

/// Deletes a trigger; a webhook's URL stops working at once.
#[utoipa::path(delete, path = "/api/triggers/{id}", tag = "triggers", params(("id" = String, Path, description = "Trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn delete_trigger(
    Need(p, _): Need<TriggersManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.store.delete_trigger(&id).await?;
    st.store
        .audit(&p.actor(), "trigger.delete", &id, json!({}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the ingress answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The run the request started (or, for a duplicate, the run it started before).
    pub run_id: String,
    /// True when an earlier request with the same idempotency key made this run.
    pub duplicate: bool,
}

/// Headers that carry credentials or signatures: kept out of the run input.
const HIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-api-key",
    "webhook-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "x-slack-signature",
];

/// Webhook ingress: verifies the request (method, size, required headers, signature over the
/// raw bytes, replay) and starts a run whose input carries method, path, headers, query and
/// body. No API key: the URL token and the signature are the credentials.
#[utoipa::path(post, path = "/hooks/{token}", tag = "triggers", security(()),
    params(("token" = String, Path, description = "The webhook's URL token")),
    request_body(content = Object, description = "Any body the sender sends (JSON, form or raw bytes)"),
    responses((status = 202, body = Accepted), (status = 200, description = "Duplicate: the earlier run", body = Accepted),
              (status = 401, description = "Bad or missing signature", body = Problem), (status = 404, body = Problem),
              (status = 405, body = Problem), (status = 409, description = "Replayed message id", body = Problem),
              (status = 413, body = Problem), (status = 422, body = Problem),
              (status = 429, description = "Over the trigger's rate limit; see Retry-After", body = Problem)))]
pub async fn ingress(
    State(st): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match accept(&st, &token, &method, &uri, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn accept(
    st: &AppState,
    token: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let unknown = || {
        ApiError::not_found("no active webhook has this URL; check the URL, or whether the trigger was paused or deleted")
    };
    let t = st
        .store
        .trigger_by_token(token)
        .await?
        .ok_or_else(unknown)?;
    if !t.enabled || t.kind != "webhook" {
        return Err(unknown());
    }
    let cfg: WebhookConfig =
        serde_json::from_value(t.config.clone()).map_err(ApiError::internal)?;
    if !cfg.methods.iter().any(|m| m == method.as_str()) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!(
                "this webhook accepts {}, not {method}",
                cfg.methods.join(", ")
            ),
        ));
    }
    if let Some(limit) = &cfg.rate_limit {
        if let Err(wait) = st.limits.take(&t.id, limit, std::time::Instant::now()) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut res = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!(
                    "this webhook accepts {} requests per second; retry in {secs} s",
                    limit.per_second
                ),
            )
            .into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            return Ok(res);
        }
    }
    if body.len() > cfg.max_body_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!(
                "the body has {} bytes; this webhook accepts at most {}",
                body.len(),
                cfg.max_body_bytes
            ),
        ));
    }
    let header = |name: &str| -> Option<String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    for (name, want) in &cfg.required_headers {
        let got = header(&name.to_ascii_lowercase());
        let ok = match want {
            Value::String(w) => got.as_deref() == Some(w.as_str()),
            _ => got.is_some(),
        };
        if !ok {
            return Err(ApiError::invalid(
                format!(
                    "this webhook requires the header `{name}`{}",
                    match want {
                        Value::String(w) => format!(" with the value `{w}`"),
                        _ => String::new(),
                    }
                ),
                None,
            ));
        }
    }
    let mut message_id = None;
    if let Some(scheme) = &cfg.signature {
        let secret = match (&cfg.secret_credential, &t.secret) {
            (Some(name), _) => st
                .vault
                .credential_secret(name, cfg.secret_field.as_deref())
                .await
                .map_err(|e| {
                    tracing::error!(trigger_id = %t.id, error = %e, "the webhook's signing secret is unavailable");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "webhook_unavailable",
                        "this webhook's signing secret is unavailable; its owner must fix the credential",
                    )
                })?,
            (None, Some(stored)) => st.vault.open_trigger_secret(&t.id, stored).map_err(|e| {
                tracing::error!(trigger_id = %t.id, error = %e, "the webhook's signing secret does not open");
                ApiError::internal("the webhook's signing secret cannot be read; see the server log")
            })?,
            (None, None) => String::new(),
        };
        let now = chrono::Utc::now().timestamp();
        let v = signature::verify(
            scheme,
            &secret,
            &signature::Request {
                header: &header,
                body,
            },
            now,
            cfg.tolerance_secs,
        )
        .map_err(|e| ApiError::unauthorized(format!("webhook signature check failed: {e}")))?;
        message_id = v.message_id;
    }
    let content_type = header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let parsed = if content_type.starts_with("multipart/form-data") {
        parse_multipart(&content_type, body.clone()).await?
    } else {
        parse_body(&content_type, body)?
    };
    // Slack checks a new URL with a signed challenge; answer it without starting a run.
    if matches!(cfg.signature, Some(Scheme::Slack))
        && parsed.get("type") == Some(&json!("url_verification"))
    {
        return Ok(Json(
            json!({"challenge": parsed.get("challenge").cloned().unwrap_or(Value::Null)}),
        )
        .into_response());
    }
    if let Some(id) = &message_id {
        let keep_ms = (cfg.tolerance_secs.max(60) * 2) * 1000;
        if !st.store.record_webhook_receipt(&t.id, id, keep_ms).await? {
            return Err(ApiError::conflict(format!(
                "message `{id}` was already received; a replayed request starts no run"
            )));
        }
    }
    let dedup = match (&cfg.idempotency_header, &cfg.idempotency_path) {
        (Some(h), _) if header(&h.to_ascii_lowercase()).is_some() => {
            header(&h.to_ascii_lowercase())
        }
        (_, Some(p)) => parsed.pointer(p).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        _ => None,
    };
    let mut hs = Map::new();
    for (k, v) in headers {
        let k = k.as_str().to_ascii_lowercase();
        if HIDDEN_HEADERS.contains(&k.as_str()) {
            continue;
        }
        if let Ok(v) = v.to_str() {
            hs.insert(k, Value::String(v.to_string()));
        }
    }
    if let Some(Scheme::SharedSecret { header: h }) = &cfg.signature {
        hs.remove(&h.to_ascii_lowercase());
    }
    let query: Map<String, Value> = uri
        .query()
        .map(|q| form_pairs(q.as_bytes()))
        .unwrap_or_default();
    let request_id = message_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let input = json!({
        "method": method.as_str(),
        "path": uri.path(),
        "headers": hs,
        "query": query,
        "body": parsed,
    });
    let version = match t.version {
        Some(v) => v,
        None => st.store.get_workflow(&t.workflow_id).await?.latest_version,
    };
    let wf = st
        .compiled
        .get(&st.store, &st.catalog, &t.workflow_id, version)
        .await?;
    if let Some(v) = &wf.input_validator {
        let errs: Vec<String> = v.iter_errors(&input).map(|e| e.to_string()).collect();
        if !errs.is_empty() {
            return Err(ApiError::invalid(
                format!(
                    "the request does not fit the workflow's input_schema: {}",
                    errs.join("; ")
                ),
                None,
            ));
        }
    }
    let (run, created) = st
        .store
        .create_run(NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            workflow_id: t.workflow_id.clone(),
            version,
            input,
            origin: json!({"kind": "webhook", "trigger_id": t.id, "request_id": request_id}),
            idempotency_key: dedup.map(|k| format!("webhook:{}:{k}", t.id)),
            created_by: format!("webhook {}", t.id),
        })
        .await?;
    if created {
        st.wake.notify_one();
    }
    if let Some(r) = &cfg.respond {
        return Ok(respond_with_run(st, &run.id, r).await);
    }
    let code = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(Accepted {
            run_id: run.id,
            duplicate: !created,
        }),
    )
        .into_response())
}

/// Waits for the run (up to the trigger's limit) and answers with the chosen output.
async fn respond_with_run(st: &AppState, run_id: &str, r: &Respond) -> Response {
    let mut live = st.store.subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(r.timeout_secs);
    loop {
        let run = match st.store.get_run(run_id).await {
            Ok(run) => run,
            Err(e) => return ApiError::from(e).into_response(),
        };
        match run.status.as_str() {
            "completed" => {
                let out = run.output.unwrap_or(Value::Null);
                let value = match &r.node {
                    Some(n) => out["results"].get(n).cloned().unwrap_or(Value::Null),
                    None => out["state"].clone(),
                };
                return shaped(value);
            }
            "failed" | "cancelled" => {
                let why = run
                    .error
                    .as_ref()
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("cancelled")
                    .to_string();
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "run-failed",
                    format!("run `{run_id}` did not complete: {why}"),
                )
                .into_response();
            }
            "waiting" => break,
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        // Wake on this run's closing events, or re-check now and then.
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            _ = async {
                while let Ok(ev) = live.recv().await {
                    if &*ev.run_id == run_id
                        && matches!(ev.kind.as_str(), "run_completed" | "run_failed" | "run_cancelled" | "run_waiting")
                    {
                        return;
                    }
                }
            } => {}
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            run_id: run_id.to_string(),
            duplicate: false,
        }),
    )
        .into_response()
}

/// A node output as an HTTP response: `status`, `headers` and `body` fields when it has them.
fn shaped(value: Value) -> Response {
    let is_shaped = value.as_object().is_some_and(|o| {
        o.contains_key("body") && (o.contains_key("status") || o.contains_key("headers"))
    });
    if !is_shaped {
        return Json(value).into_response();
    }
    let status = value["status"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = match &value["body"] {
        Value::String(s) => (status, s.clone()).into_response(),
        other => (status, Json(other.clone())).into_response(),
    };
    if let Some(h) = value["headers"].as_object() {
        for (k, v) in h {
            if let (Ok(name), Some(Ok(val))) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(axum::http::HeaderValue::from_str),
            ) {
                res.headers_mut().insert(name, val);
            }
        }
    }
    res
}

/// The body as the run sees it: JSON parsed, forms as objects, text as a string, other bytes
/// as `{"base64": …}`.
fn parse_body(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    if content_type.starts_with("application/json") || content_type.contains("+json") {
        return serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body is declared JSON but does not parse: {e}"))
        });
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return Ok(Value::Object(form_pairs(body)));
    }
    match std::str::from_utf8(body) {
        Ok(s) if content_type.starts_with("text/") || content_type.is_empty() => {
            Ok(Value::String(s.to_string()))
        }
        _ => Ok(json!({"base64": base64::engine::general_purpose::STANDARD.encode(body)})),
    }
}

/// `multipart/form-data` → `{field: "text", upload: {"filename", "content_type", "size",
/// "base64"}}` (repeated names become lists).
async fn parse_multipart(content_type: &str, body: Bytes) -> ApiResult<Value> {
    let boundary = multer::parse_boundary(content_type).map_err(|e| {
        ApiError::bad_request(format!("the multipart body has no usable boundary: {e}"))
    })?;
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut out = Map::new();
    loop {
        let field = mp
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("the multipart body is malformed: {e}")))?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(String::from);
        let ctype = field.content_type().map(|m| m.to_string());
        let data = field.bytes().await.map_err(|e| {
            ApiError::bad_request(format!("multipart field `{name}` is malformed: {e}"))
        })?;
        let value = match (&file_name, std::str::from_utf8(&data)) {
            (None, Ok(text)) => Value::String(text.to_string()),
            _ => json!({
                "filename": file_name,
                "content_type": ctype,
                "size": data.len(),
                "base64": base64::engine::general_purpose::STANDARD.encode(&data),
            }),
        };
        match out.get_mut(&name) {
            Some(Value::Array(a)) => a.push(value),
            Some(old) => {
                let first = old.take();
                *old = Value::Array(vec![first, value]);
            }
            None => {
                out.insert(name, value);
            }
        }
    }
    Ok(Value::Object(out))
}

/// `a=1&b=x+y` → `{"a": "1", "b": "x y"}` (repeated keys become lists).
fn form_pairs(raw: &[u8]) -> Map<String, Value> {
    let mut out = Map::new();
    for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, |b| *b == b'=');
        let k = decode_component(it.next().unwrap_or_default());
        let v = Value::String(decode_component(it.next().unwrap_or_default()));
        match out.get_mut(&k) {
            Some(Value::Array(a)) => a.push(v),
            Some(old) => {
                let first = old.take();
                *old = Value::Array(vec![first, v]);
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    out
}

fn decode_component(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_bodies() {
        let f = form_pairs(b"a=1&b=x+y%21&a=2&empty=&bad=%zz");
        assert_eq!(
            Value::Object(f),
            json!({"a": ["1", "2"], "b": "x y!", "empty": "", "bad": "%zz"})
        );
        assert_eq!(
            parse_body("application/json", br#"{"x":1}"#).expect("json"),
            json!({"x": 1})
        );
        assert!(parse_body("application/json", b"{").is_err());
        assert_eq!(parse_body("text/plain", b"hi").expect("text"), json!("hi"));
        assert_eq!(
            parse_body("application/octet-stream", &[0, 159]).expect("raw"),
            json!({"base64": "AJ8="})
        );
        assert_eq!(parse_body("", b"").expect("empty"), Value::Null);
    }

    #[tokio::test]
    async fn multipart_fields_and_files() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"order\"\r\n\r\nA-1\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x01\x02\r\n\
                    --XyZ--\r\n";
        let v = parse_multipart("multipart/form-data; boundary=XyZ", Bytes::from(body))
            .await
            .expect("multipart");
        assert_eq!(v["order"], "A-1");
        assert_eq!(v["doc"]["filename"], "a.bin");
        assert_eq!(v["doc"]["size"], 2);
        assert_eq!(v["doc"]["base64"], "AQI=");
        assert!(parse_multipart("multipart/form-data", Bytes::from("x"))
            .await
            .is_err());
    }
}
