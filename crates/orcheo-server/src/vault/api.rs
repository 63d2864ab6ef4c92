//! The credential routes: types, create, list, get, update, rotate, delete. No route ever
//! returns a secret: responses carry metadata and each type's non-secret fields only, and
//! request errors name the field that is wrong, never its value.

use crate::api::ApiJson;
use crate::auth::{CredentialsManage, Need, WorkflowsRead};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use orcheo_store::{CredentialPatch, CredentialRecord, NewCredential};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A credential type as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CredentialTypeView {
    /// Type id (`bearer`, `openai` …).
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// `generic`, `oauth2` or `service`.
    pub category: String,
    /// JSON Schema of its data; secret fields carry `"writeOnly": true`.
    #[schema(value_type = Object)]
    pub schema: Value,
    /// The fields whose values are secret.
    pub secret_fields: Vec<String>,
    /// Whether `POST /api/credentials/{id}/test` can check it.
    pub testable: bool,
}

/// Every credential type with its schema: the template list forms are built from.
#[utoipa::path(get, path = "/api/credential-types", tag = "credentials",
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, body = [CredentialTypeView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_types(_: Need<WorkflowsRead>) -> Json<Vec<CredentialTypeView>> {
    Json(
        orcheo_vault::catalog()
            .iter()
            .map(|t| CredentialTypeView {
                id: t.id.into(),
                name: t.name.into(),
                description: t.description.into(),
                category: serde_json::to_value(t.category)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                schema: t.schema.clone(),
                secret_fields: t.secret_fields.iter().map(|s| s.to_string()).collect(),
                testable: !matches!(t.test, orcheo_vault::TestKind::None),
            })
            .collect(),
    )
}

/// A credential with its standing: what the API returns.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CredentialView {
    /// The stored metadata.
    #[serde(flatten)]
    pub record: CredentialRecord,
    /// True when past `expires_at`: runs refuse it.
    pub expired: bool,
    /// When the next rotation is due (`rotate_every_days` after the last one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_due_at: Option<DateTime<Utc>>,
    /// True when that time has passed: a reminder to rotate.
    pub rotation_due: bool,
}

impl From<CredentialRecord> for CredentialView {
    fn from(record: CredentialRecord) -> Self {
        let now = Utc::now();
        let due = record
            .rotate_every_days
            .map(|d| record.rotated_at + chrono::Duration::days(d));
        CredentialView {
            expired: record.expires_at.is_some_and(|e| e <= now),
            rotation_due: due.is_some_and(|d| d <= now),
            rotation_due_at: due,
            record,
        }
    }
}

/// Who may use a credential.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialScope {
    /// Every workflow (the default).
    Shared,
    /// Only these workflows.
    Workflows {
        /// Workflow ids.
        ids: Vec<String>,
    },
    /// Only runs started by API keys holding one of these scopes (or `admin`).
    Roles {
        /// Scope names, e.g. `runs:execute`.
        scopes: Vec<String>,
    },
}

/// Making a credential.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// The name workflows refer to (letters, digits, `-`, `_`, `.`; unique).
    pub name: String,
    /// The type id (see `GET /api/credential-types`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The data, secrets included, as the type's schema describes.
    #[schema(value_type = Object)]
    pub data: Value,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Who may use it (default shared).
    pub scope: Option<CredentialScope>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Remind to rotate it this many days after each rotation.
    pub rotate_every_days: Option<i64>,
}

/// Changing a credential's metadata (secrets change by rotation).
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateCredential {
    /// New name (workflows using the old one stop finding it).
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New scope.
    pub scope: Option<CredentialScope>,
    /// New expiry; `null` clears it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New rotation period; `null` clears it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<i64>)]
    pub rotate_every_days: Option<Option<i64>>,
}

fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A new version of a credential's data.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateCredential {
    /// The new data. With `merge`, only the fields given change.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Keep the fields of the current version that `data` does not give (default false).
    #[serde(default)]
    pub merge: bool,
}

/// Decodes a request body without ever quoting its values in the error (they may be secrets).
fn decode<T: serde::de::DeserializeOwned>(body: Value) -> ApiResult<T> {
    serde_path_to_error::deserialize::<_, T>(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        // serde quotes offending values ("invalid type: string \"…\""); keep only the kind.
        let what = if inner.starts_with("unknown field") || inner.starts_with("missing field") {
            inner
                .split(", expected")
                .next()
                .unwrap_or(&inner)
                .to_string()
        } else if let Some(exp) = inner.split("expected ").nth(1) {
            format!("expected {exp}")
        } else {
            "invalid value".to_string()
        };
        ApiError::invalid(format!("request body at `{path}`: {what}"), None)
    })
}

fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            format!("credential name `{name}` must be 1–100 letters, digits, `-`, `_` or `.`"),
            None,
        ))
    }
}

fn check_scope(scope: &CredentialScope) -> ApiResult<Value> {
    if let CredentialScope::Roles { scopes } = scope {
        for s in scopes {
            if !orcheo_store::ALL_SCOPES.iter().any(|k| k.as_str() == s) {
                return Err(ApiError::invalid(
                    format!("`{s}` is not an API key scope"),
                    None,
                ));
            }
        }
    }
    serde_json::to_value(scope).map_err(ApiError::internal)
}

fn validate(kind: &str, data: &Value) -> ApiResult<Value> {
    orcheo_vault::types::validate(kind, data).map_err(|e| match &e {
        orcheo_vault::ValidationError::Invalid { problems, .. } => ApiError::invalid(
            e.to_string(),
            Some(json!(problems
                .iter()
                .map(|p| json!({"pointer": p.path, "message": p.message}))
                .collect::<Vec<_>>())),
        ),
        _ => ApiError::invalid(e.to_string(), None),
    })
}

/// Stores a credential, its data sealed as version 1.
#[utoipa::path(post, path = "/api/credentials", tag = "credentials", request_body = CreateCredential,
    security(("api_key" = ["credentials:manage"])),
    responses((status = 201, body = CredentialView), (status = 409, body = Problem), (status = 422, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_credential(
    Need(p, _): Need<CredentialsManage>,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<CredentialView>)> {
    let body: CreateCredential = decode(body)?;
    check_name(&body.name)?;
    let scope = check_scope(&body.scope.unwrap_or(CredentialScope::Shared))?;
    let data = validate(&body.kind, &body.data)?;
    if body
        .rotate_every_days
        .is_some_and(|d| !(1..=3650).contains(&d))
    {
        return Err(ApiError::invalid("rotate_every_days must be 1–3650", None));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let sealed = st.vault.seal(&id, 1, &data)?;
    let rec = st
        .store
        .create_credential(NewCredential {
            id: id.clone(),
            name: body.name.clone(),
            kind: body.kind.clone(),
            description: body.description,
            scope,
            public_data: orcheo_vault::types::public_view(&body.kind, &data),
            sealed: sealed.to_string(),
            key_id: sealed.key_id.clone(),
            expires_at: body.expires_at,
            rotate_every_days: body.rotate_every_days,
            created_by: p.actor(),
        })
        .await?;
    st.store
        .audit(
            &p.actor(),
            "credential.create",
            &id,
            json!({"name": body.name, "type": body.kind, "version": 1}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rec.into())))
}

/// Every credential (metadata only).
#[utoipa::path(get, path = "/api/credentials", tag = "credentials",
    security(("api_key" = ["credentials:manage"])),
    responses((status = 200, body = [CredentialView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_credentials(
    _: Need<CredentialsManage>,
    State(st): State<AppState>,
) -> ApiResult<Json<Vec<CredentialView>>> {
    Ok(Json(
        st.store
            .list_credentials()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// One credential (metadata only).
#[utoipa::path(get, path = "/api/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential id")),
    security(("api_key" = ["credentials:manage"])),
    responses((status = 200, body = CredentialView), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_credential(
    _: Need<CredentialsManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CredentialView>> {
    Ok(Json(st.store.get_credential(&id).await?.into()))
}

/// Changes a credential's name, description, scope, expiry or rotation period.
#[utoipa::path(patch, path = "/api/credentials/{id}", tag = "credentials", request_body = UpdateCredential,
    params(("id" = String, Path, description = "Credential id")),
    security(("api_key" = ["credentials:manage"])),
    responses((status = 200, body = CredentialView), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn update_credential(
    Need(p, _): Need<CredentialsManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<CredentialView>> {
    let body: UpdateCredential = decode(body)?;
    if let Some(n) = &body.name {
        check_name(n)?;
    }
    let scope = body.scope.as_ref().map(check_scope).transpose()?;
    let rec = st
        .store
        .update_credential(
            &id,
            CredentialPatch {
                name: body.name,
                description: body.description,
                scope,
                expires_at: body.expires_at,
                rotate_every_days: body.rotate_every_days,
            },
        )
        .await?;
    st.store
        .audit(
            &p.actor(),
            "credential.update",
            &id,
            json!({"name": rec.name}),
        )
        .await?;
    Ok(Json(rec.into()))
}

/// Replaces a credential's data with a new version. Runs that already resolved the old version
/// keep it; new resolutions get the new one; the old one is erased a day later.
#[utoipa::path(post, path = "/api/credentials/{id}/rotate", tag = "credentials", request_body = RotateCredential,
    params(("id" = String, Path, description = "Credential id")),
    security(("api_key" = ["credentials:manage"])),
    responses((status = 200, body = CredentialView), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn rotate_credential(
    Need(p, _): Need<CredentialsManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<CredentialView>> {
    let body: RotateCredential = decode(body)?;
    let cur = st.store.get_credential(&id).await?;
    let mut data = body.data;
    if body.merge {
        let mut old = st.vault.open(&id, cur.version).await.map_err(open_error)?;
        if let (Some(o), Some(n)) = (old.as_object_mut(), data.as_object()) {
            for (k, v) in n {
                o.insert(k.clone(), v.clone());
            }
        }
        data = old;
    }
    let data = validate(&cur.kind, &data)?;
    let next = cur.version + 1;
    let sealed = st.vault.seal(&id, next, &data)?;
    let rec = st
        .store
        .rotate_credential(
            &id,
            cur.version,
            &orcheo_vault::types::public_view(&cur.kind, &data),
            &sealed.to_string(),
            &sealed.key_id,
        )
        .await?;
    st.store
        .audit(
            &p.actor(),
            "credential.rotate",
            &id,
            json!({"name": rec.name, "version": next}),
        )
        .await?;
    Ok(Json(rec.into()))
}

/// Revokes a credential: it is gone at once and its sealed versions are erased.
#[utoipa::path(delete, path = "/api/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential id")),
    security(("api_key" = ["credentials:manage"])),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn delete_credential(
    Need(p, _): Need<CredentialsManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let rec = st.store.get_credential(&id).await?;
    st.store.delete_credential(&id).await?;
    st.store
        .audit(
            &p.actor(),
            "credential.delete",
            &id,
            json!({"name": rec.name}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a credential against its service (an HTTP call, a database connection, an SMTP
/// login, a token request) and keeps the report; secrets are masked in it.
#[utoipa::path(post, path = "/api/credentials/{id}/test", tag = "credentials",
    params(("id" = String, Path, description = "Credential id")),
    security(("api_key" = ["credentials:manage"])),
    responses((status = 200, body = crate::credentials::check::TestReport), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn test_credential(
    Need(p, _): Need<CredentialsManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::credentials::check::TestReport>> {
    let rec = st.store.get_credential(&id).await?;
    let ty = orcheo_vault::types::get(&rec.kind).ok_or_else(|| {
        ApiError::invalid(format!("credential type `{}` is unknown", rec.kind), None)
    })?;
    let data = st.vault.open(&id, rec.version).await.map_err(open_error)?;
    let report = crate::credentials::check::test_credential(
        ty,
        &data,
        st.http.unchecked(),
        st.http.policy(),
        std::time::Duration::from_secs(20),
    )
    .await;
    let stored = serde_json::to_value(&report).map_err(ApiError::internal)?;
    st.store.set_credential_test(&id, &stored).await?;
    st.store
        .audit(
            &p.actor(),
            "credential.test",
            &id,
            json!({"name": rec.name, "version": rec.version, "ok": report.ok}),
        )
        .await?;
    Ok(Json(report))
}

/// A vault failure as an API error (never with secret material: vault errors carry ids only).
pub fn open_error(e: super::OpenError) -> ApiError {
    match e {
        super::OpenError::Store(s) => s.into(),
        other => ApiError::new(
            StatusCode::CONFLICT,
            "vault",
            format!("the credential cannot be opened: {other}"),
        ),
    }
}
