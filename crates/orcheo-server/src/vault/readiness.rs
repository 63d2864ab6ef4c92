//! Whether a workflow's credentials are usable before a run starts: each credential its nodes
//! name is checked for existence, expiry, scope and (OAuth2) connection. Shown by
//! `GET /api/workflows/{id}/readiness` and as warnings when a document is validated or saved.

use super::provider::{refusal, RunOwner};
use crate::auth::{Need, WorkflowsRead};
use crate::error::{ApiResult, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use orcheo_core::validate::{Problem as DocProblem, Severity};
use orcheo_core::Workflow;
use serde::Serialize;

/// One credential a node names, and whether runs can use it now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialNeed {
    /// The node.
    pub node: String,
    /// The node's slot.
    pub slot: String,
    /// The credential name.
    pub name: String,
    /// `ok`, `missing`, `expired`, `out_of_scope` or `not_connected`.
    pub status: String,
    /// What is wrong and how to fix it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A workflow's readiness.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// True when every credential is usable.
    pub ready: bool,
    /// Each credential the newest version's nodes name.
    pub credentials: Vec<CredentialNeed>,
}

/// Checks every credential the document's nodes name, for a run of `workflow_id` started by
/// `actor` (the roles scope looks at that API key).
pub async fn needs(
    st: &AppState,
    doc: &Workflow,
    workflow_id: &str,
    actor: &str,
) -> ApiResult<Vec<CredentialNeed>> {
    let mut out = Vec::new();
    for n in &doc.nodes {
        for (slot, name) in n.credentials.iter() {
            let (status, detail) = match st.store.credential_by_name(name).await? {
                None => (
                    "missing",
                    format!("no credential is named `{name}`: create it or fix the name"),
                ),
                Some(rec) => {
                    let owner = RunOwner {
                        run_id: String::new(),
                        workflow_id: workflow_id.to_string(),
                        created_by: actor.to_string(),
                    };
                    match refusal(&st.store, &rec, &owner).await {
                        Some(why) if why.starts_with("it expired") => ("expired", why),
                        Some(why) => ("out_of_scope", why),
                        None if rec.kind == "oauth2"
                            && rec.data["grant_type"] == "authorization_code"
                            && rec.data.get("refresh_token").is_none()
                            && rec.data.get("access_token").is_none() =>
                        {
                            (
                                "not_connected",
                                format!(
                                    "start its authorization: POST /api/credentials/{}/oauth/start",
                                    rec.id
                                ),
                            )
                        }
                        None => ("ok", String::new()),
                    }
                }
            };
            out.push(CredentialNeed {
                node: n.id.clone(),
                slot: slot.clone(),
                name: name.clone(),
                status: status.into(),
                detail,
            });
        }
    }
    Ok(out)
}

/// The unusable credentials as validation warnings (a run would fail at that node).
pub fn as_warnings(doc: &Workflow, needs: &[CredentialNeed]) -> Vec<DocProblem> {
    needs
        .iter()
        .filter(|n| n.status != "ok")
        .map(|n| {
            let i = doc.nodes.iter().position(|d| d.id == n.node).unwrap_or(0);
            DocProblem {
                path: format!("/nodes/{i}/credentials/{}", n.slot),
                code: format!("credential.{}", n.status),
                message: format!(
                    "node `{}` uses credential `{}`, which is {}",
                    n.node,
                    n.name,
                    n.status.replace('_', " ")
                ),
                fix: n.detail.clone(),
                severity: Severity::Warning,
            }
        })
        .collect()
}

/// Whether the newest version's credentials are usable by runs the caller starts.
#[utoipa::path(get, path = "/api/workflows/{id}/readiness", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    security(("api_key" = ["workflows:read"])),
    responses((status = 200, body = Readiness), (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn readiness(
    Need(p, _): Need<WorkflowsRead>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Readiness>> {
    let wf = st.store.get_workflow(&id).await?;
    let v = st.store.get_version(&id, Some(wf.latest_version)).await?;
    let doc = Workflow::from_value(v.document)
        .map_err(|e| crate::error::ApiError::internal(format!("stored document: {e}")))?;
    let credentials = needs(&st, &doc, &id, &p.actor()).await?;
    Ok(Json(Readiness {
        ready: credentials.iter().all(|c| c.status == "ok"),
        credentials,
    }))
}
