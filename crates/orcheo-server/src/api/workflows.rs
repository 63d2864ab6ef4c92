//! Workflows and versions.

use super::{ApiJson, ApiQuery};
use crate::auth::{Need, WorkflowsRead, WorkflowsWrite};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use orcheo_core::validate;
use orcheo_core::Workflow;
use orcheo_store::{
    NewVersion, NewWorkflow, Page, VersionRecord, WorkflowFilter, WorkflowPatch, WorkflowRecord,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Text in the name or description (case-insensitive).
    q: Option<String>,
    /// Only workflows with this tag.
    tag: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    limit: Option<u32>,
}

/// A workflow with its newest document.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowDetail {
    /// The workflow.
    #[serde(flatten)]
    pub workflow: WorkflowRecord,
    /// The newest version's document.
    #[schema(value_type = Object)]
    pub document: Value,
    /// Validation warnings of that document.
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<validate::Problem>,
}

/// Creating a workflow.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    /// The `orcheo.workflow/1` document.
    #[schema(value_type = Object)]
    pub document: Value,
    /// An id of your choosing (letters, digits, `-`, `_`); generated when absent.
    pub id: Option<String>,
    /// Tags (default: the document's).
    pub tags: Option<Vec<String>>,
    /// Why this first version exists.
    pub message: Option<String>,
    /// Most runs at once (default unlimited).
    pub max_concurrency: Option<u32>,
}

/// Changing a workflow: metadata, and optionally a new version.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflow {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New concurrency limit (0 removes it).
    pub max_concurrency: Option<u32>,
    /// A new document: becomes a new version when it differs from the newest.
    #[schema(value_type = Option<Object>)]
    pub document: Option<Value>,
    /// Why (for the new version).
    pub message: Option<String>,
}

/// A new version.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    /// The document.
    #[schema(value_type = Object)]
    pub document: Value,
    /// Why.
    pub message: Option<String>,
}

/// A version just made (or the newest, when the document was unchanged).
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionCreated {
    /// The version.
    #[serde(flatten)]
    pub version: VersionRecord,
    /// False when the document equals the newest version and nothing was written.
    pub created: bool,
    /// Validation warnings.
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<validate::Problem>,
}

/// A document to check.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ValidateRequest {
    /// The document.
    #[schema(value_type = Object)]
    pub document: Value,
}

/// What validation found.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ValidateResponse {
    /// True when there are no errors (warnings allowed).
    pub valid: bool,
    /// Every problem, each with a JSON Pointer, a code and a fix.
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<validate::Problem>,
}

/// Which versions to compare.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version.
    from: u32,
    /// The newer version (default: the newest).
    to: Option<u32>,
}

/// Paging of versions.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    limit: Option<u32>,
}

/// Validates a document against this server's catalog: the parsed workflow and its warnings.
pub(crate) fn check_document(
    st: &AppState,
    doc: &Value,
) -> ApiResult<(Workflow, Vec<validate::Problem>)> {
    validate::validate_value(doc, &st.catalog).map_err(|problems| {
        let n = problems
            .iter()
            .filter(|p| p.severity == validate::Severity::Error)
            .count();
        let first = problems
            .iter()
            .find(|p| p.severity == validate::Severity::Error)
            .map(|p| format!(": {} at `{}` ({})", p.message, p.path, p.fix))
            .unwrap_or_default();
        ApiError::invalid(
            format!("the workflow document has {n} error(s){first}"),
            serde_json::to_value(&problems).ok(),
        )
    })
}

/// Validates a document and adds it as a version (nothing when unchanged); `rename` also
/// takes the workflow's name from the document.
async fn add_checked_version(
    st: &AppState,
    id: &str,
    doc: &Value,
    actor: &str,
    message: Option<String>,
    rename: bool,
) -> ApiResult<(VersionRecord, bool, Vec<validate::Problem>)> {
    let (doc, warnings) = check_document(st, doc)?;
    crate::triggers::declared::declared(st, &doc)?;
    let (v, created) = st
        .store
        .add_version(
            id,
            NewVersion {
                content_hash: content_hash(&doc),
                document: doc.to_value(),
                author: actor.to_string(),
                message: message.unwrap_or_default(),
            },
            rename.then_some(doc.name.as_str()),
        )
        .await?;
    if created {
        crate::triggers::declared::sync(st, id, &doc, actor).await?;
    }
    let mut warnings = warnings;
    let needs = crate::vault::readiness::needs(st, &doc, id, actor).await?;
    warnings.extend(crate::vault::readiness::as_warnings(&doc, &needs));
    Ok((v, created, warnings))
}

/// SHA-256 of the document's canonical text (keys sorted), so equal documents hash equally.
pub(crate) fn content_hash(doc: &Workflow) -> String {
    let text = orcheo_core::graph::canonical_text(doc);
    orcheo_store::hex(&Sha256::digest(text.as_bytes()))
}

fn check_id(id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            format!("workflow id `{id}` is not allowed: use 1–128 letters, digits, `-` or `_`"),
            None,
        ))
    }
}

/// Workflows, most recently changed first.
#[utoipa::path(get, path = "/api/workflows", tag = "workflows", params(ListQuery),
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, body = Page<WorkflowRecord>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_workflows(
    _: Need<WorkflowsRead>,
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<WorkflowRecord>>> {
    Ok(Json(
        st.store
            .list_workflows(&WorkflowFilter {
                q: q.q,
                tag: q.tag,
                cursor: q.cursor,
                limit: q.limit,
            })
            .await?,
    ))
}

/// Creates a workflow from a valid document; it becomes version 1.
#[utoipa::path(post, path = "/api/workflows", tag = "workflows", request_body = CreateWorkflow,
    security(("api_key" = ["workflows:write"])),
    responses((status = 201, body = WorkflowDetail), (status = 409, body = Problem),
              (status = 422, description = "The document is invalid; `errors` lists every problem", body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_workflow(
    Need(p, _): Need<WorkflowsWrite>,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<CreateWorkflow>,
) -> ApiResult<(StatusCode, Json<WorkflowDetail>)> {
    let (doc, warnings) = check_document(&st, &body.document)?;
    crate::triggers::declared::declared(&st, &doc)?;
    let id = match body.id {
        Some(id) => {
            check_id(&id)?;
            id
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let hash = content_hash(&doc);
    let (wf, v) = st
        .store
        .create_workflow(NewWorkflow {
            id,
            name: doc.name.clone(),
            description: doc.description.clone().unwrap_or_default(),
            tags: body.tags.unwrap_or_else(|| doc.tags.clone()),
            max_concurrency: body.max_concurrency.filter(|n| *n > 0),
            version: NewVersion {
                document: doc.to_value(),
                content_hash: hash,
                author: p.actor(),
                message: body.message.unwrap_or_else(|| "created".into()),
            },
        })
        .await?;
    crate::triggers::declared::sync(&st, &wf.id, &doc, &p.actor()).await?;
    let mut warnings = warnings;
    let needs = crate::vault::readiness::needs(&st, &doc, &wf.id, &p.actor()).await?;
    warnings.extend(crate::vault::readiness::as_warnings(&doc, &needs));
    st.store
        .audit(
            &p.actor(),
            "workflow.create",
            &wf.id,
            json!({"name": wf.name, "version": 1}),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WorkflowDetail {
            workflow: wf,
            document: v.document,
            warnings,
        }),
    ))
}

/// Checks a document without saving it (for editors).
#[utoipa::path(post, path = "/api/workflows/validate", tag = "workflows", request_body = ValidateRequest,
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, body = ValidateResponse), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn validate_workflow(
    _: Need<WorkflowsRead>,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<ValidateRequest>,
) -> Json<ValidateResponse> {
    match validate::validate_value(&body.document, &st.catalog) {
        Ok((_, warnings)) => Json(ValidateResponse {
            valid: true,
            problems: warnings,
        }),
        Err(problems) => Json(ValidateResponse {
            valid: false,
            problems,
        }),
    }
}

/// One workflow with its newest document.
#[utoipa::path(get, path = "/api/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, body = WorkflowDetail), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_workflow(
    _: Need<WorkflowsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkflowDetail>> {
    let wf = st.store.get_workflow(&id).await?;
    let v = st.store.get_version(&id, Some(wf.latest_version)).await?;
    let warnings = validate::validate_value(&v.document, &st.catalog)
        .map(|(_, w)| w)
        .unwrap_or_else(|p| p);
    Ok(Json(WorkflowDetail {
        workflow: wf,
        document: v.document,
        warnings,
    }))
}

/// Changes a workflow's name, description, tags or concurrency limit; with `document`, also
/// adds a version when the document differs from the newest.
#[utoipa::path(put, path = "/api/workflows/{id}", tag = "workflows", request_body = UpdateWorkflow,
    params(("id" = String, Path, description = "Workflow id")),
    security(("api_key" = ["workflows:write"])),
    responses((status = 200, body = WorkflowDetail), (status = 404, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn update_workflow(
    Need(p, _): Need<WorkflowsWrite>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateWorkflow>,
) -> ApiResult<Json<WorkflowDetail>> {
    st.store.get_workflow(&id).await?;
    let mut warnings = Vec::new();
    let mut new_version = None;
    if let Some(doc) = &body.document {
        let (v, created, w) =
            add_checked_version(&st, &id, doc, &p.actor(), body.message.clone(), false).await?;
        warnings = w;
        if created {
            new_version = Some(v.version);
        }
    }
    let wf = st
        .store
        .update_workflow(
            &id,
            WorkflowPatch {
                name: body.name.clone(),
                description: body.description.clone(),
                tags: body.tags.clone(),
                max_concurrency: body.max_concurrency.map(|n| Some(n).filter(|n| *n > 0)),
            },
        )
        .await?;
    st.store
        .audit(
            &p.actor(),
            "workflow.update",
            &id,
            json!({"name": body.name, "description": body.description, "tags": body.tags,
                   "max_concurrency": body.max_concurrency, "new_version": new_version}),
        )
        .await?;
    let v = st.store.get_version(&id, Some(wf.latest_version)).await?;
    Ok(Json(WorkflowDetail {
        workflow: wf,
        document: v.document,
        warnings,
    }))
}

/// Deletes a workflow (its versions and runs stay readable by id).
#[utoipa::path(delete, path = "/api/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    security(("api_key" = ["workflows:write"])),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn delete_workflow(
    Need(p, _): Need<WorkflowsWrite>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.store.delete_workflow(&id).await?;
    st.store
        .audit(&p.actor(), "workflow.delete", &id, json!({}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Versions, newest first (without documents).
#[utoipa::path(get, path = "/api/workflows/{id}/versions", tag = "workflows", params(("id" = String, Path, description = "Workflow id"), PageQuery),
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, body = Page<VersionRecord>), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_versions(
    _: Need<WorkflowsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<VersionRecord>>> {
    Ok(Json(
        st.store
            .list_versions(&id, q.cursor.as_deref(), q.limit)
            .await?,
    ))
}

/// Adds a version (201), or returns the newest one (200) when the document is unchanged.
#[utoipa::path(post, path = "/api/workflows/{id}/versions", tag = "workflows", request_body = CreateVersion,
    params(("id" = String, Path, description = "Workflow id")),
    security(("api_key" = ["workflows:write"])),
    responses((status = 201, body = VersionCreated), (status = 200, description = "Unchanged", body = VersionCreated),
              (status = 404, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_version(
    Need(p, _): Need<WorkflowsWrite>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateVersion>,
) -> ApiResult<(StatusCode, Json<VersionCreated>)> {
    let (v, created, warnings) =
        add_checked_version(&st, &id, &body.document, &p.actor(), body.message, true).await?;
    if created {
        st.store
            .audit(
                &p.actor(),
                "workflow.version",
                &id,
                json!({"version": v.version}),
            )
            .await?;
    }
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(VersionCreated {
            version: v,
            created,
            warnings,
        }),
    ))
}

/// One version with its document.
#[utoipa::path(get, path = "/api/workflows/{id}/versions/{version}", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id"), ("version" = u32, Path, description = "Version number")),
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, body = VersionRecord), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_version(
    _: Need<WorkflowsRead>,
    State(st): State<AppState>,
    Path((id, version)): Path<(String, u32)>,
) -> ApiResult<Json<VersionRecord>> {
    Ok(Json(st.store.get_version(&id, Some(version)).await?))
}

/// Structural diff between two versions: nodes added, removed and changed, edges, the rest.
#[utoipa::path(get, path = "/api/workflows/{id}/diff", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id"), DiffQuery),
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, body = crate::diff::WorkflowDiff), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn diff_versions(
    _: Need<WorkflowsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> ApiResult<Json<crate::diff::WorkflowDiff>> {
    let a = st.store.get_version(&id, Some(q.from)).await?;
    let b = st.store.get_version(&id, q.to).await?;
    Ok(Json(crate::diff::diff(&a.document, &b.document)))
}
