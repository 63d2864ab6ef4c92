//! OAuth2 for `oauth2` credentials: the authorization-code flow (a start URL with state and
//! PKCE, and the callback the provider redirects to), and fresh tokens on use (client
//! credentials fetched, refresh tokens redeemed a minute before expiry). Tokens are stored as a
//! new sealed version of the credential, by compare-and-set on the version, under a lock per
//! credential, so concurrent runs refresh once.

use super::api::open_error;
use super::Vault;
use crate::auth::{CredentialsManage, Need};
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use orcheo_store::{CredentialRecord, Store, StoreError};
use orcheo_vault::{Aad, Pkce};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// How long a started authorization may take.
const PENDING_MINUTES: i64 = 10;
/// Refresh this long before the access token expires.
const REFRESH_MARGIN_SECS: i64 = 60;

/// What starting an authorization gives the user.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OAuthStart {
    /// Open this URL in a browser and approve; the provider then redirects to `redirect_uri`.
    pub authorize_url: String,
    /// The callback the provider must allow (register it with the OAuth client).
    pub redirect_uri: String,
    /// When the started authorization lapses.
    pub expires_at: DateTime<Utc>,
}

/// A started authorization, sealed in `vault_meta` under `oauth:<state>`.
#[derive(Serialize, Deserialize)]
struct Pending {
    credential_id: String,
    verifier: Option<String>,
    redirect_uri: String,
    expires_at: DateTime<Utc>,
}

fn redirect_uri(st: &AppState) -> String {
    format!("{}/api/oauth/callback", st.base_url.trim_end_matches('/'))
}

/// Starts the authorization-code flow of an `oauth2` credential: returns the provider URL to
/// open (with state and, unless disabled, a PKCE challenge).
#[utoipa::path(post, path = "/api/credentials/{id}/oauth/start", tag = "credentials",
    params(("id" = String, Path, description = "Credential id")),
    security(("api_key" = ["credentials:manage"])),
    responses((status = 200, body = OAuthStart), (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn start(
    Need(p, _): Need<CredentialsManage>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<OAuthStart>> {
    let rec = st.store.get_credential(&id).await?;
    if rec.kind != "oauth2" {
        return Err(ApiError::invalid(
            format!(
                "credential `{}` is a {}, not an oauth2 credential",
                rec.name, rec.kind
            ),
            None,
        ));
    }
    let data = st.vault.open(&id, rec.version).await.map_err(open_error)?;
    if data["grant_type"] != "authorization_code" {
        return Err(ApiError::invalid(
            "only grant_type authorization_code has an authorization flow; client credentials and refresh tokens are exchanged on use",
            None,
        ));
    }
    let auth_url = data["authorization_url"].as_str().unwrap_or_default();
    let mut url = reqwest::Url::parse(auth_url)
        .map_err(|e| ApiError::invalid(format!("authorization_url is not a URL: {e}"), None))?;
    let state = orcheo_vault::pkce::random_state().map_err(ApiError::internal)?;
    let pkce = if data["use_pkce"] != json!(false) {
        Some(Pkce::new().map_err(ApiError::internal)?)
    } else {
        None
    };
    let redirect = redirect_uri(&st);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code");
        q.append_pair("client_id", data["client_id"].as_str().unwrap_or_default());
        q.append_pair("redirect_uri", &redirect);
        q.append_pair("state", &state);
        let scopes: Vec<&str> = data["scopes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !scopes.is_empty() {
            q.append_pair("scope", &scopes.join(" "));
        }
        if let Some(a) = data["audience"].as_str() {
            q.append_pair("audience", a);
        }
        if let Some(p) = &pkce {
            q.append_pair("code_challenge", p.challenge());
            q.append_pair("code_challenge_method", "S256");
        }
    }
    let expires_at = Utc::now() + chrono::Duration::minutes(PENDING_MINUTES);
    let pending = Pending {
        credential_id: id.clone(),
        verifier: pkce.as_ref().map(|p| p.verifier().to_string()),
        redirect_uri: redirect.clone(),
        expires_at,
    };
    let sealed = st
        .vault
        .seal_other(
            &Aad::new("oauth-pending", &[&state]),
            &serde_json::to_value(&pending).map_err(ApiError::internal)?,
        )
        .map_err(ApiError::internal)?;
    st.store
        .put_vault_meta(&format!("oauth:{state}"), &sealed, false)
        .await?;
    st.store
        .audit(
            &p.actor(),
            "credential.oauth_start",
            &id,
            json!({"name": rec.name}),
        )
        .await?;
    Ok(Json(OAuthStart {
        authorize_url: url.to_string(),
        redirect_uri: redirect,
        expires_at,
    }))
}

/// The provider's redirect back.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct Callback {
    /// The authorization code.
    code: Option<String>,
    /// The state from the start.
    state: Option<String>,
    /// An error the provider reports instead.
    error: Option<String>,
    /// Its description.
    error_description: Option<String>,
}

/// Where the provider sends the browser back: exchanges the code for tokens and stores them
/// in the credential. Public (the provider cannot send an API key); the one-time state from
/// the start is what authorizes it.
#[utoipa::path(get, path = "/api/oauth/callback", tag = "credentials", security(()),
    params(Callback),
    responses((status = 200, description = "Connected (an HTML page)"), (status = 400, description = "Refused (an HTML page)")))]
pub async fn callback(State(st): State<AppState>, Query(q): Query<Callback>) -> Response {
    match finish(&st, q).await {
        Ok(name) => page(
            StatusCode::OK,
            "Connected",
            &format!("The credential “{name}” is connected. You can close this window."),
        ),
        Err(msg) => page(StatusCode::BAD_REQUEST, "Not connected", &msg),
    }
}

fn page(status: StatusCode, title: &str, msg: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Orcheo</title></head><body style=\"font-family:system-ui;margin:3rem\"><h1>{t}</h1><p>{m}</p></body></html>",
        t = esc(title),
        m = esc(msg)
    );
    (status, Html(body)).into_response()
}

async fn finish(st: &AppState, q: Callback) -> Result<String, String> {
    let state = q.state.ok_or("the provider's answer has no state")?;
    let key = format!("oauth:{state}");
    let sealed = st
        .store
        .vault_meta(&key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("this authorization is unknown or was already used; start it again")?;
    // One use only.
    st.store
        .delete_vault_meta(&key)
        .await
        .map_err(|e| e.to_string())?;
    let pending: Pending = st
        .vault
        .open_other(&Aad::new("oauth-pending", &[&state]), &sealed)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or("this authorization's record does not open; start it again")?;
    if pending.expires_at < Utc::now() {
        return Err("this authorization took longer than 10 minutes; start it again".into());
    }
    if let Some(e) = q.error {
        return Err(format!(
            "the provider refused: {e}{}",
            q.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    let code = q.code.ok_or("the provider's answer has no code")?;
    let rec = st
        .store
        .get_credential(&pending.credential_id)
        .await
        .map_err(|e| e.to_string())?;
    let data = st
        .vault
        .open(&rec.id, rec.version)
        .await
        .map_err(|e| e.to_string())?;
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code),
        ("redirect_uri", pending.redirect_uri.clone()),
    ];
    if let Some(v) = pending.verifier {
        form.push(("code_verifier", v));
    }
    let tokens = token_request(&st.vault, &data, form).await?;
    let new = with_tokens(&data, &tokens);
    store_version(&st.store, &st.vault, &rec, &new)
        .await
        .map_err(|e| e.to_string())?;
    let _ = st
        .store
        .audit(
            "oauth callback",
            "credential.oauth_connect",
            &rec.id,
            json!({"name": rec.name}),
        )
        .await;
    Ok(rec.name)
}

/// Posts to the token endpoint with the client's authentication (HTTP Basic with the
/// form-encoded id and secret, RFC 6749 §2.3.1; the id in the form for public clients). The
/// error names what the provider said, never a token.
async fn token_request(
    vault: &Vault,
    data: &Value,
    mut form: Vec<(&str, String)>,
) -> Result<Map<String, Value>, String> {
    let token_url = data["token_url"].as_str().unwrap_or_default();
    let url = reqwest::Url::parse(token_url).map_err(|e| format!("token_url: {e}"))?;
    let client_id = data["client_id"].as_str().unwrap_or_default();
    let secret = data["client_secret"].as_str().filter(|s| !s.is_empty());
    if secret.is_none() {
        form.push(("client_id", client_id.to_string()));
    }
    let enc = form_encode;
    let mut req = vault
        .http()
        .request(reqwest::Method::POST, url)
        .map_err(|e| e.to_string())?
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(std::time::Duration::from_secs(30))
        .form(&form);
    if let Some(s) = secret {
        req = req.basic_auth(enc(client_id), Some(enc(s)));
    }
    let res = req.send().await.map_err(|e| {
        format!(
            "the token endpoint cannot be reached: {}",
            orcheo_nodes::net::describe(&e)
        )
    })?;
    let status = res.status();
    let body: Value = res
        .json()
        .await
        .map_err(|_| format!("the token endpoint answered {status} without JSON"))?;
    if !status.is_success() || body.get("access_token").is_none() {
        let err = body["error"].as_str().unwrap_or("no access_token");
        let desc = body["error_description"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return Err(format!("the token endpoint answered {status}: {err}{desc}"));
    }
    match body {
        Value::Object(m) => Ok(m),
        _ => Err("the token endpoint's answer is not an object".into()),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The credential's data with new tokens (a refresh token is kept when none comes back).
fn with_tokens(data: &Value, tokens: &Map<String, Value>) -> Value {
    let mut d = data.clone();
    if let Some(o) = d.as_object_mut() {
        if let Some(t) = tokens.get("access_token") {
            o.insert("access_token".into(), t.clone());
        }
        if let Some(t) = tokens.get("refresh_token").filter(|t| t.is_string()) {
            o.insert("refresh_token".into(), t.clone());
        }
        match tokens.get("expires_in").and_then(Value::as_i64) {
            Some(s) => {
                let at = Utc::now() + chrono::Duration::seconds(s);
                o.insert("expires_at".into(), Value::String(at.to_rfc3339()));
            }
            None => {
                o.remove("expires_at");
            }
        }
    }
    d
}

async fn store_version(
    store: &Store,
    vault: &Vault,
    rec: &CredentialRecord,
    data: &Value,
) -> Result<CredentialRecord, StoreError> {
    let next = rec.version + 1;
    let sealed = vault
        .seal(&rec.id, next, data)
        .map_err(|e| StoreError::Invalid(e.detail))?;
    store
        .rotate_credential(
            &rec.id,
            rec.version,
            &orcheo_vault::types::public_view(&rec.kind, data),
            &sealed.to_string(),
            &sealed.key_id,
        )
        .await
}

/// Whether an oauth2 credential's access token needs fetching or refreshing now.
fn stale(data: &Value) -> bool {
    if data["access_token"].as_str().is_none_or(str::is_empty) {
        return true;
    }
    match data["expires_at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        Some(at) => {
            at.with_timezone(&Utc) - Utc::now() < chrono::Duration::seconds(REFRESH_MARGIN_SECS)
        }
        None => false,
    }
}

/// Locks per credential, so concurrent runs in this process refresh once.
#[derive(Default)]
pub struct RefreshLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl RefreshLocks {
    fn get(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }
}

/// An oauth2 credential's data with a usable access token: fetched (client credentials) or
/// refreshed when missing or about to expire, and stored as a new version. Other servers that
/// refreshed meanwhile win the compare-and-set; their version is used.
pub async fn fresh(
    store: &Store,
    vault: &Vault,
    rec: CredentialRecord,
    data: Value,
) -> Result<(CredentialRecord, Value), String> {
    if !stale(&data) {
        return Ok((rec, data));
    }
    let lock = vault.refresh_locks.get(&rec.id);
    let _held = lock.lock().await;
    // Someone may have refreshed while this waited.
    let mut rec = store
        .get_credential(&rec.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut data = vault
        .open(&rec.id, rec.version)
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..3 {
        if !stale(&data) {
            return Ok((rec, data));
        }
        let grant = data["grant_type"].as_str().unwrap_or_default();
        let refresh = data["refresh_token"].as_str().filter(|t| !t.is_empty());
        let mut form = match (grant, refresh) {
            (_, Some(r)) => vec![("grant_type", "refresh_token".to_string()), ("refresh_token", r.to_string())],
            ("client_credentials", None) => vec![("grant_type", "client_credentials".to_string())],
            _ => {
                return Err(format!(
                    "OAuth2 credential `{}` is not connected: start its authorization (POST /api/credentials/{}/oauth/start) and approve it",
                    rec.name, rec.id
                ))
            }
        };
        if grant == "client_credentials" && refresh.is_none() {
            let scopes: Vec<&str> = data["scopes"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !scopes.is_empty() {
                form.push(("scope", scopes.join(" ")));
            }
            if let Some(a) = data["audience"].as_str() {
                form.push(("audience", a.to_string()));
            }
        }
        let tokens = token_request(vault, &data, form).await.map_err(|e| {
            format!(
                "refreshing OAuth2 credential `{}` failed: {e}; reconnect it (POST /api/credentials/{}/oauth/start) or fix its client settings",
                rec.name, rec.id
            )
        })?;
        let new = with_tokens(&data, &tokens);
        match store_version(store, vault, &rec, &new).await {
            Ok(r) => {
                let _ = store
                    .audit(
                        "vault",
                        "credential.refresh",
                        &r.id,
                        json!({"name": r.name, "version": r.version}),
                    )
                    .await;
                return Ok((r, new));
            }
            Err(StoreError::Conflict(_)) => {
                // Another server stored a version first: use it.
                rec = store
                    .get_credential(&rec.id)
                    .await
                    .map_err(|e| e.to_string())?;
                data = vault
                    .open(&rec.id, rec.version)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "OAuth2 credential `{}` keeps changing; try again",
        rec.name
    ))
}
