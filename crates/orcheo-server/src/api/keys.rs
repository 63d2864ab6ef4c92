//! API keys and the audit log (admin).

use super::{ApiJson, ApiQuery};
use crate::auth::{Admin, Need};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use orcheo_store::{ApiKeyRecord, AuditEntry, Page, Scope};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Making a key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A name to recognise it by.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// A new key: the secret is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key's metadata.
    #[serde(flatten)]
    pub key: ApiKeyRecord,
    /// The whole key. It is not stored and cannot be shown again.
    pub secret_once: String,
}

/// Audit paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<u32>,
}

/// Every API key (metadata only).
#[utoipa::path(get, path = "/api/api-keys", tag = "admin", security(("api_key" = ["admin"])),
    responses((status = 200, body = Vec<ApiKeyRecord>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_keys(
    _: Need<Admin>,
    State(st): State<AppState>,
) -> ApiResult<Json<Vec<ApiKeyRecord>>> {
    Ok(Json(st.store.list_api_keys().await?))
}

/// Makes a key; the response holds the secret, shown this once.
#[utoipa::path(post, path = "/api/api-keys", tag = "admin", request_body = CreateKey, security(("api_key" = ["admin"])),
    responses((status = 201, body = CreatedKey), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_key(
    Need(p, _): Need<Admin>,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid("give the key a name", None));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::invalid("give the key at least one scope", None));
    }
    let k = st
        .store
        .create_api_key(body.name.trim(), &body.scopes, &p.actor())
        .await?;
    st.store
        .audit(
            &p.actor(),
            "api_key.create",
            &k.record.id,
            json!({"name": k.record.name, "prefix": k.record.prefix, "scopes": k.record.scopes}),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: k.record,
            secret_once: k.secret,
        }),
    ))
}

/// Revokes a key (by id or prefix); it stops working at once.
#[utoipa::path(delete, path = "/api/api-keys/{id}", tag = "admin", params(("id" = String, Path, description = "Key id or prefix")),
    security(("api_key" = ["admin"])),
    responses((status = 200, body = ApiKeyRecord), (status = 404, body = Problem), (status = 409, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn revoke_key(
    Need(p, _): Need<Admin>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyRecord>> {
    let k = st.store.revoke_api_key(&id).await?;
    st.store
        .audit(
            &p.actor(),
            "api_key.revoke",
            &k.id,
            json!({"prefix": k.prefix}),
        )
        .await?;
    Ok(Json(k))
}

/// The audit log, newest first: who changed what, when.
#[utoipa::path(get, path = "/api/audit", tag = "admin", params(AuditQuery), security(("api_key" = ["admin"])),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_audit(
    _: Need<Admin>,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let before = q
        .cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid cursor `{c}`")))
        })
        .transpose()?;
    Ok(Json(st.store.list_audit(before, q.limit).await?))
}
