//! API-key authentication and scopes. A key arrives as `Authorization: Bearer ok_…`,
//! `X-API-Key: ok_…`, or the browser session cookie set by the one-time login URL. Each
//! handler names the scope it needs with a [`Need`] extractor, so the check happens before
//! the body is read.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use orcheo_store::{ApiKeyRecord, Scope};
use std::marker::PhantomData;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "orcheo_session";

/// Who is calling: the key's record.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key.
    pub key: ApiKeyRecord,
}

impl Principal {
    /// How the audit log names the caller (never the secret).
    pub fn actor(&self) -> String {
        format!("{} (ok_{})", self.key.name, self.key.prefix)
    }
}

/// A scope as a type, so handlers can require it in their signature.
pub trait ScopeMarker: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

macro_rules! scopes {
    ($($name:ident => $scope:ident),* $(,)?) => {$(
        /// Requires the scope of the same name.
        pub struct $name;
        impl ScopeMarker for $name {
            const SCOPE: Scope = Scope::$scope;
        }
    )*};
}

scopes! {
    WorkflowsRead => WorkflowsRead,
    WorkflowsWrite => WorkflowsWrite,
    RunsRead => RunsRead,
    RunsExecute => RunsExecute,
    TriggersManage => TriggersManage,
    CredentialsManage => CredentialsManage,
    Admin => Admin,
}

/// An authenticated caller holding scope `S`; rejects with 401 or 403.
pub struct Need<S: ScopeMarker>(pub Principal, pub PhantomData<S>);

/// The key presented with a request, if any.
pub fn presented_key(parts: &Parts) -> Option<String> {
    let h = &parts.headers;
    if let Some(v) = h
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(rest) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(rest.trim().to_string());
        }
    }
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    for c in h.get_all(axum::http::header::COOKIE) {
        if let Ok(s) = c.to_str() {
            for part in s.split(';') {
                if let Some(v) = part.trim().strip_prefix(&format!("{SESSION_COOKIE}=")) {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// Authenticates a request: the principal, or 401.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let Some(key) = presented_key(parts) else {
        return Err(ApiError::unauthorized(
            "this route needs an API key: send `Authorization: Bearer ok_…` (create one with `orcheo api-key create`)",
        ));
    };
    match state.store.verify_api_key(&key).await? {
        Some(rec) => {
            if should_touch(&rec.id) {
                if let Err(e) = state.store.touch_api_key(&rec.id).await {
                    tracing::warn!(error = %e, "could not record API key use");
                }
            }
            Ok(Principal { key: rec })
        }
        None => Err(ApiError::unauthorized(
            "the API key is unknown or revoked; create a new one with `orcheo api-key create`",
        )),
    }
}

/// Whether to record a key's use now: at most once a minute per key and process, so reads
/// do not turn into database writes.
fn should_touch(id: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};
    static SEEN: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match seen.get(id) {
        Some(t) if now.duration_since(*t) < Duration::from_secs(60) => false,
        _ => {
            if seen.len() > 10_000 {
                seen.clear();
            }
            seen.insert(id.to_string(), now);
            true
        }
    }
}

impl<S: ScopeMarker> FromRequestParts<AppState> for Need<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = authenticate(parts, state).await?;
        if !p.key.allows(S::SCOPE) {
            return Err(ApiError::forbidden(format!(
                "API key `ok_{}` lacks the `{}` scope this route needs; its scopes are: {}",
                p.key.prefix,
                S::SCOPE.as_str(),
                p.key
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Need(p, PhantomData))
    }
}
