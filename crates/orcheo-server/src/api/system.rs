//! Health, readiness, the node catalog, the OpenAPI document, the reference page and the
//! one-time login URL.

use crate::auth::{authenticate, Need, WorkflowsRead, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Liveness.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// The server is up.
#[utoipa::path(get, path = "/api/health", tag = "system", security(()),
    responses((status = 200, description = "The server is up", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Readiness details.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready` or `unavailable`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Whether this process executes runs.
    pub worker: bool,
    /// Runs executing here now.
    pub active_runs: usize,
    /// What is wrong, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The server can take work: the database answers.
#[utoipa::path(get, path = "/api/ready", tag = "system", security(()),
    responses((status = 200, description = "Ready", body = Ready),
              (status = 503, description = "The database does not answer", body = Ready)))]
pub async fn ready(State(st): State<AppState>) -> Response {
    let db = st.store.ping().await;
    let body = Ready {
        status: if db.is_ok() { "ready" } else { "unavailable" }.into(),
        database: st.store.backend().as_str().into(),
        worker: st.worker.is_some(),
        active_runs: st.worker.as_ref().map(|w| w.active()).unwrap_or(0),
        detail: db.err().map(|e| e.to_string()),
    };
    let code = if body.detail.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Every node type with its config and output JSON Schemas, for palettes and forms.
#[utoipa::path(get, path = "/api/nodes", tag = "system",
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, description = "The node catalog", body = Vec<Object>),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)))]
pub async fn nodes(_: Need<WorkflowsRead>, State(st): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(st.catalog.specs()).unwrap_or(Value::Null))
}

/// The caller's key.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The key's metadata.
    pub key: orcheo_store::ApiKeyRecord,
}

/// Who the presented key belongs to and what it may do (any valid key).
#[utoipa::path(get, path = "/api/auth/whoami", tag = "admin",
    security(("api_key" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = crate::error::Problem)))]
pub async fn whoami(
    State(st): State<AppState>,
    req: axum::http::Request<axum::body::Body>,
) -> ApiResult<Json<WhoAmI>> {
    let (parts, _) = req.into_parts();
    let p = authenticate(&parts, &st).await?;
    Ok(Json(WhoAmI { key: p.key }))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "system", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| crate::api::openapi().to_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

/// The interactive API reference (served from the binary; no CDN).
#[utoipa::path(get, path = "/api/docs", tag = "system", security(()),
    responses((status = 200, description = "An HTML page", content_type = "text/html")))]
pub async fn docs_page() -> Html<&'static str> {
    Html(include_str!("../../assets/api-reference.html"))
}

/// The one-time login link's query.
#[derive(Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
}

/// Redeems a one-time login token: creates a browser session key, sets it as an HttpOnly
/// cookie and goes to the home page.
pub async fn login(State(st): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return ApiError::bad_request(
            "the login link lacks its token; use the URL `orcheo serve` printed",
        )
        .into_response();
    };
    match st.store.redeem_login_token(&token).await {
        Ok(Some(scopes)) => {
            let key = match st
                .store
                .create_api_key("browser session (login link)", &scopes, "login link")
                .await
            {
                Ok(k) => k,
                Err(e) => return ApiError::from(e).into_response(),
            };
            let _ = st
                .store
                .audit(
                    "login link",
                    "api_key.create",
                    &key.record.id,
                    json!({"name": key.record.name, "prefix": key.record.prefix}),
                )
                .await;
            let cookie = format!(
                "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000",
                key.secret
            );
            let mut res = Redirect::to("/").into_response();
            if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Ok(None) => ApiError::unauthorized(
            "this login link was already used or has expired; create an API key with `orcheo api-key create`",
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The home page (the visual designer replaces it).
pub async fn home() -> Html<&'static str> {
    Html(
        "<!doctype html><meta charset=utf-8><title>Orcheo</title>\
         <body style=\"font-family:system-ui;max-width:40rem;margin:4rem auto\">\
         <h1>Orcheo</h1><p>The server is running. The API reference is at \
         <a href=\"/api/docs\">/api/docs</a>; the OpenAPI document at \
         <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p></body>",
    )
}

/// Unknown paths.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {}; the API reference is at /api/docs",
        uri.path()
    ))
}
