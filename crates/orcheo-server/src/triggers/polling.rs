//! Polling triggers: fetch a URL on an interval, pick items out of the response with jq, and
//! start one run per item not seen before. Conditional requests (`If-None-Match`,
//! `If-Modified-Since`) skip unchanged responses; the keys of started items are kept in the
//! database, and each run's idempotency key `poll:<trigger>:<item key>` makes an item start at
//! most one run even when two servers poll at once or the seen list has forgotten it.

use crate::api::ApiJson;
use crate::auth::{Need, TriggersManage};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use orcheo_store::{NewRun, NewTrigger, TriggerRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Digest;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEFAULT_ITEMS: &str = "if type == \"array\" then .[] else . end";

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PollMethod {
    /// `GET` (the default).
    #[default]
    Get,
    /// `POST` with the configured JSON body (for query APIs such as GraphQL).
    Post,
}

/// How the stored secret authenticates the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PollAuth {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic base64(username:secret)`.
    Basic {
        /// The user name (the secret is the password).
        username: String,
    },
    /// A header carrying the secret, e.g. `X-API-Key`.
    Header {
        /// Header name.
        name: String,
    },
    /// A query parameter carrying the secret, e.g. `api_key`.
    Query {
        /// Parameter name.
        name: String,
    },
}

/// The first poll's items: start runs for them, or only remember them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Initial {
    /// Remember what is there and start runs only for items that appear later (the default,
    /// so switching a poller on does not replay a whole feed).
    #[default]
    Skip,
    /// Start a run for every item of the first poll too.
    Emit,
}

/// A polling trigger's settings.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollingConfig {
    /// The URL to fetch (http or https). Internal addresses need the server's allowlist.
    pub url: String,
    /// `GET` (default) or `POST`.
    #[serde(default)]
    pub method: PollMethod,
    /// Extra request headers (not secret: they are shown in the API; use `auth` for secrets).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub headers: Map<String, Value>,
    /// JSON body for `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<Value>,
    /// Seconds between polls (default 300, at least 1).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds one poll may take (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// jq program whose outputs are the items (default: the elements of an array response,
    /// or the whole response).
    #[serde(default = "default_items")]
    pub items: String,
    /// jq program giving an item's key, e.g. `.id` (default: a hash of the whole item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The first poll's items: `skip` (default) or `emit`.
    #[serde(default)]
    pub initial: Initial,
    /// Most runs one poll starts (default 100); the rest start on the next polls.
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// How many item keys to remember (default 10000, oldest forgotten first).
    #[serde(default = "default_max_seen")]
    pub max_seen: usize,
    /// Largest accepted response in bytes (default 5 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Send `If-None-Match` / `If-Modified-Since` from the last response (default true).
    #[serde(default = "yes")]
    pub conditional: bool,
    /// How the trigger's secret is sent (the secret itself is given once, at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PollAuth>,
    /// Extra run input fields; `item`, `key`, `trigger_id` and `polled_at` are added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// Take the secret `auth` sends from this vault credential (read at each poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_credential: Option<String>,
    /// The credential's field holding it (needed when it has several secret fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_field: Option<String>,
}

fn default_interval() -> u64 {
    300
}
fn default_timeout() -> u64 {
    30
}
fn default_items() -> String {
    DEFAULT_ITEMS.into()
}
fn default_max_items() -> usize {
    100
}
fn default_max_seen() -> usize {
    10_000
}
fn default_max_bytes() -> usize {
    5 * 1024 * 1024
}
fn yes() -> bool {
    true
}

impl PollingConfig {
    /// Checks everything that can be checked without polling.
    pub fn check(&self, st: &AppState, has_secret: bool) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("url `{}` is not a valid URL: {e}", self.url))?;
        st.http
            .policy()
            .check_url(&url)
            .map_err(|e| e.to_string())?;
        if !(1..=7 * 86_400).contains(&self.interval_secs) {
            return Err("interval_secs must be between 1 and 604800 (a week)".into());
        }
        if !(1..=600).contains(&self.timeout_secs) {
            return Err("timeout_secs must be between 1 and 600".into());
        }
        if !(1..=10_000).contains(&self.max_items) {
            return Err("max_items must be between 1 and 10000".into());
        }
        if !(1..=1_000_000).contains(&self.max_seen) {
            return Err("max_seen must be between 1 and 1000000".into());
        }
        if !(1024..=100 * 1024 * 1024).contains(&self.max_bytes) {
            return Err("max_bytes must be between 1024 and 104857600".into());
        }
        orcheo_core::jq::check(&self.items).map_err(|e| format!("items: {e}"))?;
        if let Some(k) = &self.key {
            orcheo_core::jq::check(k).map_err(|e| format!("key: {e}"))?;
        }
        for (name, v) in &self.headers {
            if !v.is_string() {
                return Err(format!("header `{name}` must be a string"));
            }
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
        }
        if self.body.is_some() && self.method == PollMethod::Get {
            return Err("a body needs method POST".into());
        }
        if self.input.as_ref().is_some_and(|i| !i.is_object()) {
            return Err("input must be a JSON object".into());
        }
        let has_secret = has_secret || self.secret_credential.is_some();
        if self.secret_field.is_some() && self.secret_credential.is_none() {
            return Err("secret_field needs secret_credential".into());
        }
        match (&self.auth, has_secret) {
            (Some(_), false) => Err("auth needs a secret: give `secret` with the trigger, or `secret_credential` naming a vault credential".into()),
            (None, true) => Err("a secret without auth would never be sent: say how with `auth` (bearer, basic, header or query)".into()),
            _ => Ok(url),
        }
    }
}

/// Making a polling trigger.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolling {
    /// The workflow each new item starts.
    pub workflow_id: String,
    /// Pin a version (default: the newest at each poll).
    pub version: Option<u32>,
    /// The credential `auth` sends (a token, password or API key). Stored, never shown again.
    pub secret: Option<String>,
    /// Settings.
    #[serde(flatten)]
    pub config: PollingConfig,
}

/// What one poll did.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct PollOutcome {
    /// The response status (none when the request failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The server said nothing changed (`304`).
    pub not_modified: bool,
    /// Items in the response.
    pub items: usize,
    /// Items not seen before (runs were started for at most `max_items` of them, or none on a
    /// skipped first poll).
    pub new_items: usize,
    /// The runs started.
    pub runs: Vec<String>,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Makes a polling trigger; its first poll is due at once.
#[utoipa::path(post, path = "/api/triggers/polling", tag = "triggers", request_body = CreatePolling,
    security(("api_key" = ["triggers:manage"])),
    responses((status = 201, body = TriggerRecord), (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_polling(
    Need(p, _): Need<TriggersManage>,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<CreatePolling>,
) -> ApiResult<(StatusCode, Json<TriggerRecord>)> {
    st.store.get_workflow(&body.workflow_id).await?;
    let secret = body.secret.filter(|s| !s.is_empty());
    if secret.is_some() && body.config.secret_credential.is_some() {
        return Err(ApiError::invalid(
            "give either `secret` or `secret_credential`, not both",
            None,
        ));
    }
    if let Some(name) = &body.config.secret_credential {
        st.vault
            .credential_secret(name, body.config.secret_field.as_deref())
            .await
            .map_err(|e| ApiError::invalid(e, None))?;
    }
    let url = body
        .config
        .check(&st, secret.is_some())
        .map_err(|e| ApiError::invalid(e, None))?;
    let id = uuid::Uuid::now_v7().to_string();
    let secret = secret
        .map(|s| st.vault.seal_trigger_secret(&id, &s))
        .transpose()?;
    let t = st
        .store
        .create_trigger(NewTrigger {
            id,
            workflow_id: body.workflow_id,
            version: body.version,
            kind: "polling".into(),
            config: serde_json::to_value(&body.config).map_err(ApiError::internal)?,
            secret,
            token: None,
            created_by: p.actor(),
            next_at: Some(Utc::now()),
        })
        .await?;
    st.store
        .audit(
            &p.actor(),
            "trigger.create",
            &t.id,
            json!({"kind": "polling", "url": orcheo_nodes::net::redact(&url)}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Polls a polling trigger now (also when paused) and says what it found: for trying a
/// configuration. New items start runs as a scheduled poll would.
#[utoipa::path(post, path = "/api/triggers/{id}/poll", tag = "triggers",
    params(("id" = String, Path, description = "Trigger id")),
    security(("api_key" = ["triggers:manage"])),
    responses((status = 200, body = PollOutcome), (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn poll_now(
    Need(p, _): Need<TriggersManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PollOutcome>> {
    let t = st.store.get_trigger(&id).await?;
    if t.kind != "polling" {
        return Err(ApiError::invalid(
            format!("trigger `{id}` is a {}, not a poller", t.kind),
            None,
        ));
    }
    let out = poll_once(&st, &t).await?;
    st.store
        .audit(
            &p.actor(),
            "trigger.poll",
            &id,
            json!({"status": out.status, "new_items": out.new_items}),
        )
        .await?;
    Ok(Json(out))
}

/// Triggers this server is polling right now (a slow poll is not started twice here).
type InFlight = Arc<Mutex<HashSet<String>>>;

/// Polls due triggers until `stop`; looks every half second, at most eight polls at once.
pub async fn run_poller(st: AppState, stop: tokio_util::sync::CancellationToken) {
    let busy: InFlight = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(8));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if let Err(e) = claim_due(&st, &busy, &slots, Utc::now()).await {
            tracing::warn!(error = %e.detail, "finding due polls failed; retrying");
        }
    }
}

async fn claim_due(
    st: &AppState,
    busy: &InFlight,
    slots: &Arc<tokio::sync::Semaphore>,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    for t in st.store.due_triggers("polling", now).await? {
        if lock(busy).contains(&t.id) {
            continue;
        }
        let interval = serde_json::from_value::<PollingConfig>(t.config.clone())
            .map(|c| c.interval_secs)
            .unwrap_or(300);
        // Claim the poll across servers: whoever moves next_at polls.
        let next = now + chrono::Duration::seconds(interval as i64);
        if !st
            .store
            .advance_schedule(&t.id, t.next_at, Some(next))
            .await?
        {
            continue;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        lock(busy).insert(t.id.clone());
        let (st, busy) = (st.clone(), busy.clone());
        tokio::spawn(async move {
            let id = t.id.clone();
            if let Err(e) = poll_once(&st, &t).await {
                tracing::warn!(trigger_id = %id, error = %e.detail, "poll failed");
            }
            lock(&busy).remove(&id);
            drop(permit);
        });
    }
    Ok(())
}

fn lock(m: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state kept between polls (the `state` shown on the trigger).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct PollState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_polled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// Failed polls in a row (the interval backs off while it grows).
    #[serde(default)]
    failures: u32,
    /// Whether a poll has succeeded once (the `initial` policy applies before that).
    #[serde(default)]
    primed: bool,
    #[serde(default)]
    last_new: usize,
    #[serde(default)]
    total_runs: u64,
}

/// Polls once: fetch, extract, start runs for new items, save the cursor. Request and
/// extraction failures are recorded on the trigger (and returned in the outcome), not raised.
pub async fn poll_once(st: &AppState, t: &TriggerRecord) -> ApiResult<PollOutcome> {
    let span = tracing::info_span!("poll", trigger_id = %t.id, workflow_id = %t.workflow_id);
    let _e = span.enter();
    let cfg: PollingConfig = serde_json::from_value(t.config.clone())
        .map_err(|e| ApiError::internal(format!("unreadable polling settings: {e}")))?;
    // The secret is sealed in the row, or kept in a vault credential: open it for this poll.
    let mut opened = t.clone();
    opened.secret = match &cfg.secret_credential {
        Some(name) => match st
            .vault
            .credential_secret(name, cfg.secret_field.as_deref())
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                // Recorded like a failed poll, so the trigger shows why.
                let mut state: PollState =
                    serde_json::from_value(t.state.clone()).unwrap_or_default();
                state.last_polled_at = Some(Utc::now());
                state.failures = state.failures.saturating_add(1);
                state.last_error = Some(e.clone());
                let shown = serde_json::to_value(&state).map_err(ApiError::internal)?;
                st.store.save_poll_state(&t.id, &shown, &t.seen).await?;
                return Ok(PollOutcome {
                    error: Some(e),
                    ..PollOutcome::default()
                });
            }
        },
        None => t
            .secret
            .as_deref()
            .map(|s| st.vault.open_trigger_secret(&t.id, s))
            .transpose()
            .map_err(|e| ApiError::internal(format!("the trigger's secret cannot be read: {e}")))?,
    };
    let t = &opened;
    let mut state: PollState = serde_json::from_value(t.state.clone()).unwrap_or_default();
    let now = Utc::now();
    state.last_polled_at = Some(now);
    let mut out = PollOutcome::default();
    let mut seen = t.seen.clone();
    match fetch_and_start(st, t, &cfg, &mut state, &mut seen, &mut out, now).await {
        Ok(()) => {
            state.failures = 0;
            state.last_error = None;
        }
        Err(e) => {
            let e = mask_secret(e, t.secret.as_deref(), cfg.auth.as_ref());
            tracing::warn!(error = %e, "poll failed");
            state.failures = state.failures.saturating_add(1);
            state.last_error = Some(e.clone());
            out.error = Some(e);
            // Back off while the source keeps failing: 2, 4, 8, 16 intervals.
            let factor = 1i64 << state.failures.min(4);
            let next = now + chrono::Duration::seconds(cfg.interval_secs as i64 * factor);
            st.store.advance_schedule(&t.id, None, Some(next)).await?;
        }
    }
    out.status = state.last_status;
    let shown = serde_json::to_value(&state).map_err(ApiError::internal)?;
    st.store.save_poll_state(&t.id, &shown, &seen).await?;
    Ok(out)
}

async fn fetch_and_start(
    st: &AppState,
    t: &TriggerRecord,
    cfg: &PollingConfig,
    state: &mut PollState,
    seen: &mut Vec<String>,
    out: &mut PollOutcome,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let body = match fetch(st, t, cfg, state).await? {
        Some(b) => b,
        None => {
            out.not_modified = true;
            state.last_new = 0;
            return Ok(());
        }
    };
    let items = orcheo_core::jq::run(&cfg.items, &body).map_err(|e| format!("items: {e}"))?;
    out.items = items.len();
    let known: HashSet<&str> = seen.iter().map(String::as_str).collect();
    let mut fresh: Vec<(String, Value)> = Vec::new();
    let mut batch = HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let key = item_key(cfg, &item).map_err(|e| format!("item {i}: {e}"))?;
        if !known.contains(key.as_str()) && batch.insert(key.clone()) {
            fresh.push((key, item));
        }
    }
    out.new_items = fresh.len();
    state.last_new = fresh.len();
    let emit = state.primed || cfg.initial == Initial::Emit;
    state.primed = true;
    let mut remember: Vec<String> = Vec::new();
    if !emit {
        remember.extend(fresh.into_iter().map(|(k, _)| k));
    } else {
        let version = match t.version {
            Some(v) => v,
            None => {
                st.store
                    .get_workflow(&t.workflow_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .latest_version
            }
        };
        for (key, item) in fresh.into_iter().take(cfg.max_items) {
            let mut input = match &cfg.input {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            input.insert("item".into(), item);
            input.insert("key".into(), Value::String(key.clone()));
            input.insert("trigger_id".into(), Value::String(t.id.clone()));
            input.insert("polled_at".into(), Value::String(now.to_rfc3339()));
            let (run, created) = st
                .store
                .create_run(NewRun {
                    id: uuid::Uuid::now_v7().to_string(),
                    workflow_id: t.workflow_id.clone(),
                    version,
                    input: Value::Object(input),
                    origin: json!({"kind": "polling", "trigger_id": t.id, "item_key": key}),
                    idempotency_key: Some(format!("poll:{}:{}", t.id, short_key(&key))),
                    created_by: format!("poller {}", t.id),
                })
                .await
                .map_err(|e| format!("starting a run: {e}"))?;
            if created {
                state.total_runs += 1;
                out.runs.push(run.id);
            }
            remember.push(key);
        }
        if !out.runs.is_empty() {
            st.wake.notify_one();
        }
    }
    seen.extend(remember);
    if seen.len() > cfg.max_seen {
        let drop = seen.len() - cfg.max_seen;
        seen.drain(..drop);
    }
    Ok(())
}

/// Fetches the URL; `None` when the server answered `304 Not Modified`.
async fn fetch(
    st: &AppState,
    t: &TriggerRecord,
    cfg: &PollingConfig,
    state: &mut PollState,
) -> Result<Option<Value>, String> {
    let mut url = reqwest::Url::parse(&cfg.url).map_err(|e| format!("url: {e}"))?;
    if let (Some(PollAuth::Query { name }), Some(s)) = (&cfg.auth, &t.secret) {
        url.query_pairs_mut().append_pair(name, s);
    }
    let method = match cfg.method {
        PollMethod::Get => reqwest::Method::GET,
        PollMethod::Post => reqwest::Method::POST,
    };
    let mut req = st
        .http
        .request(method, url)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(cfg.timeout_secs))
        .header(reqwest::header::ACCEPT, "application/json, */*;q=0.5");
    for (name, v) in &cfg.headers {
        if let Some(v) = v.as_str() {
            req = req.header(name.as_str(), v);
        }
    }
    if let Some(b) = &cfg.body {
        req = req.json(b);
    }
    match (&cfg.auth, &t.secret) {
        (Some(PollAuth::Bearer), Some(s)) => req = req.bearer_auth(s),
        (Some(PollAuth::Basic { username }), Some(s)) => req = req.basic_auth(username, Some(s)),
        (Some(PollAuth::Header { name }), Some(s)) => req = req.header(name.as_str(), s.as_str()),
        _ => {}
    }
    if cfg.conditional {
        if let Some(e) = &state.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e.as_str());
        }
        if let Some(m) = &state.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, m.as_str());
        }
    }
    let res = req
        .send()
        .await
        .map_err(|e| format!("request failed: {}", orcheo_nodes::net::describe(&e)))?;
    let status = res.status();
    state.last_status = Some(status.as_u16());
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    let header = |h: reqwest::header::HeaderName| {
        res.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let bytes = read_capped(res, cfg.max_bytes).await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        let snippet: String = text.chars().take(300).collect();
        return Err(format!("the server answered {status}: {snippet}"));
    }
    // Only a good response moves the cursor.
    state.etag = etag;
    state.last_modified = last_modified;
    Ok(Some(match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
    }))
}

async fn read_capped(res: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if res.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!(
            "the response is larger than max_bytes ({max} bytes)"
        ));
    }
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| format!("reading the response: {}", orcheo_nodes::net::describe(&e)))?;
        if body.len() + chunk.len() > max {
            return Err(format!(
                "the response is larger than max_bytes ({max} bytes)"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Hides the trigger's secret in a message (the source may echo what it was sent) with the
/// vault's masker: the raw value and its encodings, and for basic auth the `user:secret` pair.
fn mask_secret(text: String, secret: Option<&str>, auth: Option<&PollAuth>) -> String {
    let Some(s) = secret.filter(|s| !s.is_empty()) else {
        return text;
    };
    let mut secrets = vec![s.to_string()];
    if let Some(PollAuth::Basic { username }) = auth {
        secrets.push(format!("{username}:{s}"));
    }
    orcheo_vault::Masker::new(secrets)
        .mask_str(&text)
        .into_owned()
}

/// An item's key: the `key` program's output as text, or a hash of the item.
fn item_key(cfg: &PollingConfig, item: &Value) -> Result<String, String> {
    match &cfg.key {
        None => Ok(sha256_hex(item.to_string().as_bytes())),
        Some(k) => match orcheo_core::jq::run_one(k, item).map_err(|e| format!("key: {e}"))? {
            Value::String(s) if !s.is_empty() => Ok(s),
            Value::Null => Err(format!("key `{k}` gave null: every item needs a key")),
            Value::String(_) => Err(format!("key `{k}` gave an empty string")),
            other => Ok(other.to_string()),
        },
    }
}

/// Keys longer than 100 characters are hashed in the idempotency key.
fn short_key(key: &str) -> String {
    if key.len() <= 100 {
        key.to_string()
    } else {
        sha256_hex(key.as_bytes())
    }
}

fn sha256_hex(b: &[u8]) -> String {
    orcheo_store::hex(&sha2::Sha256::digest(b))
}
