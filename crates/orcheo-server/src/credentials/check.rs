//! Credential tests: `POST /api/credentials/{id}/test` calls the service a credential is for (or
//! connects to its database or mail server) and says what failed.
//!
//! Every connection honours the server's SSRF policy: HTTP goes through the guarded client (which
//! checks resolved addresses itself) after [`NetPolicy::check_url`]; PostgreSQL, SMTP and MongoDB
//! hosts are resolved here, every address is checked with [`NetPolicy::check_ip`], and the
//! connection is made to the checked address, so a name that resolves differently a moment later
//! cannot slip through.
//!
//! The report is safe to store and return: every message and step passes through a [`Masker`] for
//! the credential's secrets (plus secrets found on the way: passwords inside connection URLs,
//! tokens a token endpoint returns), so a service that echoes what it was sent leaks nothing.
//! Nothing is persisted here: a refreshed OAuth2 token is reported, never stored.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use orcheo_nodes::net::{NetError, NetPolicy};
use orcheo_vault::{CredentialType, Expect, HttpTest, Masker, TestKind};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// What a credential test found; safe to store and return (secrets masked).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TestReport {
    /// Whether the credential works as far as the test can tell.
    pub ok: bool,
    /// One sentence on the outcome: what worked, or what failed and why.
    pub message: String,
    /// What was tried, in order, each with its own outcome.
    pub steps: Vec<TestStep>,
    /// How long the test took, in milliseconds.
    pub duration_ms: u64,
    /// When the test ran.
    pub tested_at: chrono::DateTime<chrono::Utc>,
}

/// One thing a credential test tried (resolve, connect, authenticate, query…) and how it went.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TestStep {
    /// What was tried.
    pub name: String,
    /// Whether it worked.
    pub ok: bool,
    /// What happened (status codes, server answers, versions), secrets masked.
    pub detail: String,
}

/// The most of a response body read (for the excerpt and JSON checks).
const MAX_BODY: usize = 64 * 1024;
/// The most of a response body shown in a report.
const EXCERPT_CHARS: usize = 200;
/// The largest MongoDB reply accepted (a `hello` reply is a few hundred bytes).
const MAX_MONGO_REPLY: usize = 1024 * 1024;
/// The most MongoDB hosts contacted in one test.
const MAX_MONGO_HOSTS: usize = 10;

/// Sent as the EHLO name; an address literal, as RFC 5321 §4.1.4 allows for clients without a
/// stable host name.
fn smtp_hello() -> lettre::transport::smtp::extension::ClientId {
    lettre::transport::smtp::extension::ClientId::default()
}

/// Runs the type's test against the real service. `http` is the server's SSRF-guarded client;
/// `policy` is the same allowlist for non-HTTP connections (PostgreSQL, SMTP, MongoDB hosts are
/// checked after DNS resolution with `policy.check_ip`). `timeout` bounds the whole test.
///
/// Never fails: whatever goes wrong (bad data, refused by the policy, unreachable, rejected) is
/// the report's `message` and the failed step, with every secret masked.
pub async fn test_credential(
    ty: &CredentialType,
    data: &Value,
    http: &reqwest::Client,
    policy: &NetPolicy,
    timeout: Duration,
) -> TestReport {
    let started = Instant::now();
    let tested_at = chrono::Utc::now();
    let mut run = Run {
        steps: Vec::new(),
        masker: ty.masker(data),
        // A year stands in for "no limit" when the timeout is too large to add.
        deadline: started
            .checked_add(timeout)
            .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600)),
        timeout,
    };
    let outcome =
        match tokio::time::timeout(timeout, dispatch(&mut run, ty, data, http, policy)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::fail(format!("the test did not finish within {}", human(timeout))),
        };
    let masker = &run.masker;
    TestReport {
        ok: outcome.ok,
        message: masker.mask_str(&outcome.message).into_owned(),
        steps: run
            .steps
            .iter()
            .map(|s| TestStep {
                name: masker.mask_str(&s.name).into_owned(),
                ok: s.ok,
                detail: masker.mask_str(&s.detail).into_owned(),
            })
            .collect(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        tested_at,
    }
}

/// The state of one test: the steps so far, what to mask, and the time left.
struct Run {
    steps: Vec<TestStep>,
    masker: Masker,
    deadline: Instant,
    timeout: Duration,
}

impl Run {
    fn step(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.steps.push(TestStep {
            name: name.to_string(),
            ok,
            detail: detail.into(),
        });
    }

    /// Records a failed step and returns the failure, for `return Err(run.failed(..))`.
    fn failed(&mut self, name: &str, message: impl Into<String>) -> Outcome {
        let message = message.into();
        self.step(name, false, message.clone());
        Outcome::fail(message)
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Adds a secret met during the test (a password parsed from a URL, a token received).
    fn secret(&mut self, secret: &str) {
        if !secret.is_empty() {
            self.masker.extend([secret]);
        }
    }

    /// At most [`EXCERPT_CHARS`] of a body, on one line, masked before it is cut so that no
    /// fragment of a secret survives the cut. Masked both before whitespace is folded (secrets
    /// with line breaks or runs of spaces) and after.
    fn excerpt(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let raw_masked = self.masker.mask_str(&text);
        let one_line = raw_masked.split_whitespace().collect::<Vec<_>>().join(" ");
        let masked = self.masker.mask_str(&one_line);
        let mut out: String = masked.chars().take(EXCERPT_CHARS).collect();
        if masked.chars().count() > EXCERPT_CHARS {
            out.push('…');
        }
        if out.is_empty() {
            out.push_str("(empty)");
        }
        out
    }
}

/// How a test ended.
struct Outcome {
    ok: bool,
    message: String,
}

impl Outcome {
    fn pass(message: impl Into<String>) -> Outcome {
        Outcome {
            ok: true,
            message: message.into(),
        }
    }

    fn fail(message: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            message: message.into(),
        }
    }
}

/// Either way, the outcome.
fn settle(result: Result<Outcome, Outcome>) -> Outcome {
    match result {
        Ok(o) | Err(o) => o,
    }
}

async fn dispatch(
    run: &mut Run,
    ty: &CredentialType,
    data: &Value,
    http: &reqwest::Client,
    policy: &NetPolicy,
) -> Outcome {
    if ty.test == TestKind::None {
        return Outcome::fail("this type has no generic test; use it in a workflow to check it");
    }
    let data = match ty.validate(data) {
        Ok(data) => data,
        Err(e) => {
            return run.failed(
                "validate",
                format!(
                    "the credential was not tested because its data does not fit its type: {e}"
                ),
            )
        }
    };
    match &ty.test {
        TestKind::None => Outcome::fail("this type has no generic test"),
        TestKind::Http { requests } => {
            settle(http_check(run, ty, &data, requests, http, policy).await)
        }
        TestKind::OAuth2 => settle(oauth2_check(run, &data, http, policy).await),
        TestKind::Postgres => settle(postgres_check(run, &data, policy).await),
        TestKind::Smtp => settle(smtp_check(run, &data, policy).await),
        TestKind::Mongo => settle(mongo_check(run, &data, policy).await),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

async fn http_check(
    run: &mut Run,
    ty: &CredentialType,
    data: &Value,
    requests: &[HttpTest],
    http: &reqwest::Client,
    policy: &NetPolicy,
) -> Result<Outcome, Outcome> {
    let Some(req) = ty.test_request(data) else {
        return Err(run.failed(
            "prepare",
            format!(
                "this credential has no field the test needs: {}",
                missing_fields(requests, data)
            ),
        ));
    };
    let url = reqwest::Url::parse(&req.url)
        .map_err(|e| run.failed("prepare", format!("the test URL is not a valid URL: {e}")))?;
    let shown = format!("{} {}", req.method, orcheo_nodes::net::redact(&url));
    policy
        .check_url(&url)
        .map_err(|e| run.failed("policy", e.to_string()))?;
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| run.failed("prepare", format!("`{}` is not an HTTP method", req.method)))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &req.headers {
        let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| run.failed("prepare", format!("`{name}` is not a valid header name")))?;
        let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            run.failed(
                "prepare",
                format!("the value of header `{name}` cannot be sent in a header (line breaks or control characters)"),
            )
        })?;
        value.set_sensitive(true);
        headers.append(header, value);
    }
    let mut builder = http
        .request(method, url)
        .headers(headers)
        .timeout(run.remaining());
    if !req.query.is_empty() {
        let query: Vec<(&str, &str)> = req
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        builder = builder.query(&query);
    }
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) => {
            let message = request_error(&e, run.timeout);
            return Err(run.failed("request", format!("{shown}: {message}")));
        }
    };
    let status = response.status();
    let (body, read_error) = read_body(response).await;
    let excerpt = run.excerpt(&body);
    let mut detail = format!("{shown} answered HTTP {status}; body: {excerpt}");
    if let Some(e) = read_error {
        let _ = write!(detail, " (reading the body failed: {e})");
    }
    let code = status.as_u16();
    if code == 401 || code == 403 {
        run.step("request", false, detail);
        return Err(Outcome::fail(format!(
            "the service rejected the credential (HTTP {status})"
        )));
    }
    let verdict = match req.expect {
        Expect::Success if status.is_success() => Ok(format!(
            "the service accepted the credential (HTTP {status})"
        )),
        Expect::Success => Err(format!(
            "the service answered HTTP {status}, not a success status"
        )),
        Expect::NotUnauthorized => Ok(format!(
            "the service did not reject the credential (HTTP {status})"
        )),
        Expect::JsonTrue { pointer } => {
            let json: Option<Value> = serde_json::from_slice(&body).ok();
            let flag = json.as_ref().and_then(|j| j.pointer(pointer));
            if status.is_success() && flag == Some(&Value::Bool(true)) {
                Ok(format!(
                    "the service accepted the credential (HTTP {status}, `{pointer}` is true)"
                ))
            } else {
                let reason = json
                    .as_ref()
                    .and_then(|j| {
                        j.get("error")
                            .or_else(|| j.get("description"))
                            .and_then(Value::as_str)
                    })
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                Err(format!(
                    "the service answered HTTP {status} but `{pointer}` is not true{reason}"
                ))
            }
        }
    };
    match verdict {
        Ok(message) => {
            run.step("request", true, detail);
            Ok(Outcome::pass(message))
        }
        Err(message) => {
            run.step("request", false, detail);
            Err(Outcome::fail(message))
        }
    }
}

/// The fields (or, for types with several test requests, the alternatives) that are not set.
fn missing_fields(requests: &[HttpTest], data: &Value) -> String {
    let alternatives: Vec<String> = requests
        .iter()
        .map(|t| {
            let mut names: Vec<String> = t.requires.iter().map(|s| s.to_string()).collect();
            for p in placeholders(t.url) {
                if !names.contains(&p) {
                    names.push(p);
                }
            }
            names.retain(|n| !is_set(data, n));
            names.join(" and ")
        })
        .filter(|s| !s.is_empty())
        .collect();
    if alternatives.is_empty() {
        "(the type names no test request)".into()
    } else {
        alternatives.join(", or ")
    }
}

/// The `{{field}}` names in a template.
fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push(rest[start + 2..start + 2 + len].trim().to_string());
        rest = &rest[start + 2 + len + 2..];
    }
    out
}

/// Whether the dotted field is set (present, not null, not an empty string).
fn is_set(data: &Value, dotted: &str) -> bool {
    let found = dotted
        .split('.')
        .try_fold(data, |node, part| node.get(part));
    match found {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// Reads at most [`MAX_BODY`] bytes; a read error is returned beside what was read.
async fn read_body(mut response: reqwest::Response) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_BODY {
                    return (body, None);
                }
            }
            Ok(None) => return (body, None),
            Err(e) => return (body, Some(orcheo_nodes::net::describe(&e))),
        }
    }
}

/// A failed request in plain words: refused by the network policy, timed out, refused, TLS, DNS.
fn request_error(e: &reqwest::Error, timeout: Duration) -> String {
    if let Some(refusal) = find_source::<NetError>(e) {
        return refusal.to_string();
    }
    let text = orcheo_nodes::net::describe(e);
    if text.contains("ORCHEO_HTTP_ALLOW") {
        return text;
    }
    if e.is_timeout() {
        return format!("no answer within {}", human(timeout));
    }
    if e.is_redirect() {
        return format!("redirect refused: {text}");
    }
    if e.is_connect() {
        // The caller already names the URL; the innermost cause is the useful part.
        let cause = innermost(e);
        let lower = cause.to_lowercase();
        if has_io_kind(e, std::io::ErrorKind::ConnectionRefused) {
            return "unreachable: connection refused".into();
        }
        if [
            "lookup address",
            "dns error",
            "name or service",
            "no address",
        ]
        .iter()
        .any(|w| lower.contains(w))
        {
            return format!("cannot resolve the host: {cause}");
        }
        if is_tls_failure(e) {
            return format!("TLS handshake failed: {cause}");
        }
        return format!("could not connect: {cause}");
    }
    format!("the request failed: {text}")
}

/// The first error of type `T` in the source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// Whether the source chain holds an I/O error of this kind (also inside wrapped I/O errors).
fn has_io_kind(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == kind {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                if has_io_kind(inner as &(dyn std::error::Error + 'static), kind) {
                    return true;
                }
            }
        }
        current = err.source();
    }
    false
}

/// The innermost error's text: the cause, without the wrappers' prefixes.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Whether a connection failed in its TLS handshake: tokio-rustls reports handshake failures as
/// I/O errors of kind `InvalidData`; rustls's own wording is the fallback.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    if has_io_kind(e, std::io::ErrorKind::InvalidData) {
        return true;
    }
    // The causes only: the outermost text may quote a URL, whose host name could hold "tls".
    let mut text = String::new();
    let mut current = e.source();
    while let Some(err) = current {
        text.push_str(&err.to_string().to_lowercase());
        text.push(' ');
        current = err.source();
    }
    [
        "certificate",
        "corrupt message",
        "alert",
        "handshake",
        "tls",
        "peer is incompatible",
    ]
    .iter()
    .any(|w| text.contains(w))
}

// ---------------------------------------------------------------------------------------------
// OAuth2

async fn oauth2_check(
    run: &mut Run,
    data: &Value,
    http: &reqwest::Client,
    policy: &NetPolicy,
) -> Result<Outcome, Outcome> {
    let grant = text(data, "grant_type").unwrap_or_default();
    let scope = data
        .get("scopes")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.is_empty());
    match grant {
        "client_credentials" => {
            let mut form = vec![("grant_type", "client_credentials".to_string())];
            if let Some(scope) = scope {
                form.push(("scope", scope));
            }
            if let Some(audience) = text(data, "audience") {
                form.push(("audience", audience.to_string()));
            }
            token_request(run, data, http, policy, form, false).await
        }
        "refresh_token" => {
            let Some(refresh) = text(data, "refresh_token") else {
                return Err(run.failed(
                    "prepare",
                    "no refresh token is stored: set refresh_token or start the authorization flow",
                ));
            };
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", refresh.to_string()),
            ];
            if let Some(scope) = scope {
                form.push(("scope", scope));
            }
            token_request(run, data, http, policy, form, true).await
        }
        "authorization_code" => Ok(authorization_code_state(run, data)?),
        other => Err(run.failed(
            "prepare",
            format!("unknown grant type `{other}`; expected authorization_code, client_credentials or refresh_token"),
        )),
    }
}

/// The authorization code flow cannot be replayed without a person, so the test reports the
/// stored state: not connected, expired, or connected.
fn authorization_code_state(run: &mut Run, data: &Value) -> Result<Outcome, Outcome> {
    let access = text(data, "access_token");
    let refresh = text(data, "refresh_token");
    if access.is_none() && refresh.is_none() {
        return Err(run.failed("tokens", "not connected yet: start the authorization flow"));
    }
    let expires_at = text(data, "expires_at")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let now = chrono::Utc::now();
    match (access, expires_at) {
        (Some(_), Some(at)) if at <= now => {
            let when = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            if refresh.is_some() {
                let message = format!(
                    "the access token expired at {when}; the stored refresh token renews it on the next use (the test does not refresh it, so nothing stored changes)"
                );
                run.step("tokens", true, message.clone());
                Ok(Outcome::pass(message))
            } else {
                Err(run.failed(
                    "tokens",
                    format!("the access token expired at {when} and there is no refresh token: start the authorization flow again"),
                ))
            }
        }
        (Some(_), at) => {
            let until = at
                .map(|t| {
                    format!(
                        "valid until {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                })
                .unwrap_or_else(|| "no expiry recorded".into());
            let message = format!(
                "connected: an access token is stored ({until}); the service checks it when a workflow uses it"
            );
            run.step("tokens", true, message.clone());
            Ok(Outcome::pass(message))
        }
        (None, _) => {
            let message =
                "connected: a refresh token is stored; an access token is obtained on the next use";
            run.step("tokens", true, message);
            Ok(Outcome::pass(message))
        }
    }
}

/// POSTs a token request (RFC 6749 §4.4 / §6) and reports whether an access token came back.
/// Confidential clients authenticate with HTTP Basic (§2.3.1: id and secret form-encoded first);
/// public clients send `client_id` in the body (§3.2.1).
async fn token_request(
    run: &mut Run,
    data: &Value,
    http: &reqwest::Client,
    policy: &NetPolicy,
    mut form: Vec<(&'static str, String)>,
    refreshing: bool,
) -> Result<Outcome, Outcome> {
    let token_url =
        text(data, "token_url").ok_or_else(|| run.failed("prepare", "token_url is not set"))?;
    let client_id = text(data, "client_id").unwrap_or_default();
    let url = reqwest::Url::parse(token_url)
        .map_err(|e| run.failed("prepare", format!("token_url is not a valid URL: {e}")))?;
    let shown = format!("POST {}", orcheo_nodes::net::redact(&url));
    policy
        .check_url(&url)
        .map_err(|e| run.failed("policy", e.to_string()))?;
    let mut req = http
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(run.remaining());
    match text(data, "client_secret") {
        Some(secret) => {
            let encoded = form_encode(secret);
            run.secret(&encoded);
            let pair = format!("{}:{}", form_encode(client_id), encoded);
            let basic = base64::engine::general_purpose::STANDARD.encode(pair);
            run.secret(&basic);
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {basic}"))
                .map_err(|_| run.failed("prepare", "the client credentials cannot be sent"))?;
            value.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        None => form.push(("client_id", client_id.to_string())),
    }
    for (_, value) in &form {
        // The refresh token travels in the body; mask its form encoding too.
        if refreshing {
            run.secret(&form_encode(value));
        }
    }
    let response = match req.form(&form).send().await {
        Ok(r) => r,
        Err(e) => {
            let message = request_error(&e, run.timeout);
            return Err(run.failed("token request", format!("{shown}: {message}")));
        }
    };
    let status = response.status();
    let (body, _) = read_body(response).await;
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    // Whatever came back is secret from here on, before anything about it is written down.
    if let Some(j) = &json {
        for key in ["access_token", "refresh_token", "id_token"] {
            if let Some(t) = j.get(key).and_then(Value::as_str) {
                run.secret(t);
            }
        }
    }
    let got = |key: &str| json.as_ref().and_then(|j| j.get(key));
    let access = got("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    if status.is_success() && access.is_some() {
        let mut about = vec![];
        if let Some(t) = got("token_type").and_then(Value::as_str) {
            about.push(format!("token type {t}"));
        }
        if let Some(n) = got("expires_in").and_then(Value::as_u64) {
            about.push(format!("expires in {n} s"));
        }
        if let Some(s) = got("scope").and_then(Value::as_str) {
            about.push(format!("scope `{s}`"));
        }
        let about = if about.is_empty() {
            String::new()
        } else {
            format!(" ({})", about.join(", "))
        };
        run.step(
            "token request",
            true,
            format!("{shown} answered HTTP {status} with an access token{about}"),
        );
        let mut message = if refreshing {
            format!("the refresh token works: the token endpoint issued a new access token{about}; the new tokens were not stored")
        } else {
            format!("the token endpoint issued an access token{about}")
        };
        if refreshing && got("refresh_token").and_then(Value::as_str).is_some() {
            message.push_str(
                "; it also issued a new refresh token: if this provider rotates refresh tokens, the stored one may no longer work and the credential needs a new refresh token",
            );
        }
        return Ok(Outcome::pass(message));
    }
    let excerpt = run.excerpt(&body);
    run.step(
        "token request",
        false,
        format!("{shown} answered HTTP {status}; body: {excerpt}"),
    );
    let error = got("error").and_then(Value::as_str);
    let reason = match (error, got("error_description").and_then(Value::as_str)) {
        (Some(e), Some(d)) => format!(": {e} ({d})"),
        (Some(e), None) => format!(": {e}"),
        _ => String::new(),
    };
    let rejected = matches!(status.as_u16(), 401 | 403)
        || matches!(
            error,
            Some("invalid_client" | "invalid_grant" | "unauthorized_client")
        );
    Err(Outcome::fail(if rejected {
        format!("the service rejected the credential (HTTP {status}){reason}")
    } else if status.is_success() {
        format!("the token endpoint answered HTTP {status} without an access token")
    } else {
        format!("the token endpoint answered HTTP {status}{reason}")
    }))
}

/// `application/x-www-form-urlencoded` (RFC 6749 Appendix B).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Shared by the database and mail tests

/// A non-empty string field.
fn text<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A port field, or the default.
fn port_field(data: &Value, default: u16) -> u16 {
    data.get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(default)
}

/// Resolves `host` and checks every address with the policy (as the HTTP client's resolver
/// does); the caller connects only to the addresses returned.
async fn resolve(
    run: &mut Run,
    host: &str,
    port: u16,
    policy: &NetPolicy,
) -> Result<Vec<SocketAddr>, Outcome> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(run.remaining(), tokio::net::lookup_host((bare, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => {
                return Err(run.failed("resolve", format!("cannot resolve host `{host}`: {e}")))
            }
            Err(_) => {
                return Err(run.failed(
                    "resolve",
                    format!("resolving host `{host}` took longer than the test may"),
                ))
            }
        };
    if addrs.is_empty() {
        return Err(run.failed(
            "resolve",
            NetError::Unresolved(host.to_string()).to_string(),
        ));
    }
    for a in &addrs {
        if let Err(e) = policy.check_ip(host, a.ip()) {
            return Err(run.failed("policy", e.to_string()));
        }
    }
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    let detail = if list.len() == 1 && list[0] == bare {
        format!("{host} is allowed by the network policy")
    } else {
        format!(
            "{host} is {}; allowed by the network policy",
            list.join(", ")
        )
    };
    run.step("resolve", true, detail);
    Ok(addrs)
}

/// Decodes `%XX` escapes; `None` when an escape is broken or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// Where and as whom to connect, from the `url` or the separate fields.
struct PgTarget {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: String,
    sslmode: String,
}

fn pg_target(data: &Value) -> Result<PgTarget, String> {
    let Some(raw) = text(data, "url") else {
        let field = |k: &str| {
            text(data, k)
                .map(str::to_string)
                .ok_or_else(|| format!("{k} is not set (set url, or host, database and user)"))
        };
        return Ok(PgTarget {
            host: field("host")?,
            port: port_field(data, 5432),
            user: field("user")?,
            password: text(data, "password").map(str::to_string),
            database: field("database")?,
            sslmode: text(data, "sslmode").unwrap_or("prefer").to_string(),
        });
    };
    // Parsed here rather than by sqlx: sqlx would fill what the URL leaves out from the server's
    // own environment (PGPASSWORD, PGHOST…) and ~/.pgpass, and would follow `host=/socket/dir`
    // to a Unix socket the network policy cannot see.
    let url = reqwest::Url::parse(raw).map_err(|e| format!("url is not a valid URL: {e}"))?;
    let decode = |s: &str, what: &str| {
        percent_decode(s).ok_or_else(|| format!("the {what} in url has a broken %-escape"))
    };
    let mut t = PgTarget {
        host: url.host_str().unwrap_or_default().to_string(),
        port: url.port().unwrap_or(5432),
        user: decode(url.username(), "user name")?,
        password: url.password().map(|p| decode(p, "password")).transpose()?,
        database: decode(url.path().trim_start_matches('/'), "database name")?,
        sslmode: text(data, "sslmode").unwrap_or("prefer").to_string(),
    };
    for (key, value) in url.query_pairs() {
        match &*key {
            "sslmode" | "ssl-mode" => t.sslmode = value.into_owned(),
            "host" | "hostaddr" => t.host = value.into_owned(),
            "port" => {
                t.port = value
                    .parse()
                    .map_err(|_| "the port in url is not a number".to_string())?
            }
            "dbname" => t.database = value.into_owned(),
            "user" => t.user = value.into_owned(),
            "password" => t.password = Some(value.into_owned()),
            // Certificates, application name and other options do not change whether the
            // credential works; files named here are not read.
            _ => {}
        }
    }
    if t.host.is_empty() {
        return Err("url names no host".into());
    }
    if t.host.starts_with('/') {
        return Err(
            "url points to a Unix socket; a credential test connects over TCP only, so give a host name"
                .into(),
        );
    }
    if t.user.is_empty() {
        return Err("url names no user (postgres://USER:password@host/database)".into());
    }
    if t.database.is_empty() {
        // libpq's default: the database named after the user.
        t.database = t.user.clone();
    }
    Ok(t)
}

async fn postgres_check(
    run: &mut Run,
    data: &Value,
    policy: &NetPolicy,
) -> Result<Outcome, Outcome> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    use sqlx::Connection as _;

    let t = pg_target(data).map_err(|e| run.failed("prepare", e))?;
    if let Some(p) = &t.password {
        run.secret(p);
    }
    let ssl = match t.sslmode.as_str() {
        "disable" => PgSslMode::Disable,
        "allow" => PgSslMode::Allow,
        "prefer" => PgSslMode::Prefer,
        "require" => PgSslMode::Require,
        "verify-ca" => PgSslMode::VerifyCa,
        "verify-full" => PgSslMode::VerifyFull,
        other => {
            return Err(run.failed(
                "prepare",
                format!("sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"),
            ))
        }
    };
    let addrs = resolve(run, &t.host, t.port, policy).await?;
    let target = format!("{}:{}", t.host, t.port);
    let mut last: Option<Outcome> = None;
    for addr in addrs {
        // The address that was checked, not the name: the name could resolve elsewhere now.
        // Every field is set explicitly so nothing comes from the server's PG* environment; an
        // unset password is sent as empty rather than taken from PGPASSWORD.
        let options = PgConnectOptions::new_without_pgpass()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username(&t.user)
            .password(t.password.as_deref().unwrap_or_default())
            .database(&t.database)
            .ssl_mode(ssl)
            .application_name("orcheo-credential-test");
        let connected =
            tokio::time::timeout(run.remaining(), sqlx::PgConnection::connect_with(&options)).await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                let (unreachable, message) = pg_error(&e, &t, &target);
                let outcome = run.failed("connect", message);
                if unreachable {
                    last = Some(outcome);
                    continue;
                }
                return Err(outcome);
            }
            Err(_) => {
                last = Some(run.failed(
                    "connect",
                    format!(
                        "unreachable: {target} did not answer within {}",
                        human(run.timeout)
                    ),
                ));
                continue;
            }
        };
        run.step(
            "connect",
            true,
            format!(
                "connected to {target} ({}) as user `{}` to database `{}`",
                addr.ip(),
                t.user,
                t.database
            ),
        );
        let one: Result<i32, sqlx::Error> =
            sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await;
        match one {
            Ok(1) => run.step("SELECT 1", true, "returned 1"),
            Ok(n) => {
                return Err(run.failed("SELECT 1", format!("SELECT 1 returned {n}")));
            }
            Err(e) => {
                return Err(run.failed("SELECT 1", format!("SELECT 1 failed: {e}")));
            }
        }
        let version: Result<String, sqlx::Error> = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut conn)
            .await;
        let version = match version {
            Ok(v) => v,
            Err(e) => return Err(run.failed("SELECT version()", format!("failed: {e}"))),
        };
        run.step("SELECT version()", true, version.clone());
        let encrypted: Option<bool> =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten();
        let _ = conn.close().await;
        let tls = match encrypted {
            Some(true) => ", over TLS",
            Some(false) => ", without TLS",
            None => "",
        };
        let short = version.split(" on ").next().unwrap_or(&version).to_string();
        return Ok(Outcome::pass(format!(
            "connected to {target} as `{}` to database `{}` ({short}{tls})",
            t.user, t.database
        )));
    }
    Err(last.unwrap_or_else(|| Outcome::fail(format!("unreachable: {target}"))))
}

/// A connection error in plain words; `true` when the server could not be reached at all (so
/// another address may be tried).
fn pg_error(e: &sqlx::Error, t: &PgTarget, target: &str) -> (bool, String) {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let msg = db.message();
            let message = match code.as_str() {
                "28P01" | "28000" => {
                    let hint = if t.password.is_none() {
                        " (no password is set)"
                    } else {
                        ""
                    };
                    format!("authentication failed for user `{}`{hint}: {msg}", t.user)
                }
                "3D000" => format!("the server is reachable, but {msg}"),
                "53300" => format!("the server is reachable but has no free connection: {msg}"),
                _ => format!("the server refused the connection: {msg} (SQLSTATE {code})"),
            };
            (false, message)
        }
        sqlx::Error::Io(io) => {
            let why = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
                _ => io.to_string(),
            };
            (true, format!("unreachable: {target}: {why}"))
        }
        sqlx::Error::Tls(inner) => {
            let text = inner.to_string();
            if text.contains("without TLS support") {
                (
                    false,
                    format!("sslmode={} needs TLS, and this Orcheo server is built without TLS for PostgreSQL", t.sslmode),
                )
            } else {
                (false, format!("TLS with {target} failed: {text}"))
            }
        }
        other => (false, format!("could not connect to {target}: {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP

async fn smtp_check(run: &mut Run, data: &Value, policy: &NetPolicy) -> Result<Outcome, Outcome> {
    use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
    use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};

    let host = text(data, "host")
        .ok_or_else(|| run.failed("prepare", "host is not set"))?
        .to_string();
    let port = port_field(data, 587);
    let security = text(data, "security").unwrap_or("starttls").to_string();
    let user = text(data, "username").map(str::to_string);
    let password = data
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let target = format!("{host}:{port}");
    let tls_name = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let wrapper = match security.as_str() {
        "tls" => Some(
            TlsParameters::new(tls_name.clone())
                .map_err(|e| run.failed("prepare", format!("TLS setup failed: {e}")))?,
        ),
        "starttls" | "none" => None,
        other => {
            return Err(run.failed(
                "prepare",
                format!("security `{other}` is not one of starttls, tls, none"),
            ))
        }
    };
    let addrs = resolve(run, &host, port, policy).await?;
    let hello = smtp_hello();
    let connect = AsyncSmtpConnection::connect_tokio1(
        addrs.as_slice(),
        Some(run.remaining()),
        &hello,
        wrapper,
        None,
    );
    let mut conn = match tokio::time::timeout(run.remaining(), connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            let message = smtp_error(&e, &target, run.timeout);
            return Err(run.failed("connect", message));
        }
        Err(_) => {
            return Err(run.failed(
                "connect",
                format!(
                    "unreachable: {target} did not answer within {}",
                    human(run.timeout)
                ),
            ))
        }
    };
    let name = conn.server_info().name().to_string();
    let how = if security == "tls" { " over TLS" } else { "" };
    run.step(
        "connect",
        true,
        format!("{target} ({name}) greeted and answered EHLO{how}"),
    );
    if security == "starttls" {
        if !conn.can_starttls() {
            conn.abort().await;
            return Err(run.failed(
                "STARTTLS",
                format!("{target} does not offer STARTTLS; set security to tls (implicit TLS, usually port 465) or, on a trusted network, none"),
            ));
        }
        let params = TlsParameters::new(tls_name)
            .map_err(|e| run.failed("STARTTLS", format!("TLS setup failed: {e}")))?;
        if let Err(e) = conn.starttls(params, &hello).await {
            let message = smtp_error(&e, &target, run.timeout);
            return Err(run.failed("STARTTLS", format!("STARTTLS failed: {message}")));
        }
        run.step("STARTTLS", true, "the connection is encrypted");
    }
    let authenticated = match &user {
        Some(user) => {
            let credentials = Credentials::new(user.clone(), password);
            match conn.auth(DEFAULT_MECHANISMS, &credentials).await {
                Ok(response) => {
                    run.step(
                        "AUTH",
                        true,
                        format!("authenticated as `{user}` ({})", response.code()),
                    );
                    true
                }
                Err(e) => {
                    let message = if e.status().is_some() {
                        format!("authentication failed: {target} rejected the user name or password ({e})")
                    } else if e.is_client() {
                        let hint = if conn.is_encrypted() {
                            ""
                        } else {
                            "; many servers offer AUTH only after STARTTLS or over TLS"
                        };
                        format!("{target} offers no authentication method Orcheo supports (PLAIN, LOGIN){hint}")
                    } else {
                        format!(
                            "authentication failed: {}",
                            smtp_error(&e, &target, run.timeout)
                        )
                    };
                    conn.abort().await;
                    return Err(run.failed("AUTH", message));
                }
            }
        }
        None => {
            run.step(
                "AUTH",
                true,
                "no user name set: only the connection was checked",
            );
            false
        }
    };
    if !conn.test_connected().await {
        return Err(run.failed(
            "NOOP",
            format!("{target} stopped answering after the login"),
        ));
    }
    run.step("NOOP", true, "the session is usable");
    let _ = conn.quit().await;
    run.step("QUIT", true, "closed");
    let mode = match security.as_str() {
        "tls" => "TLS",
        "starttls" => "STARTTLS",
        _ => "plain text",
    };
    Ok(Outcome::pass(match (&user, authenticated) {
        (Some(user), true) => {
            format!("connected to {target} ({mode}) and authenticated as `{user}`")
        }
        _ => format!("connected to {target} ({mode}); no user name is set, so no login was tried"),
    }))
}

/// An SMTP client error in plain words.
fn smtp_error(e: &lettre::transport::smtp::Error, target: &str, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!(
            "unreachable: {target} did not answer within {}",
            human(timeout)
        );
    }
    if let Some(code) = e.status() {
        return format!("{target} answered with an error ({code}): {e}");
    }
    if has_io_kind(e, std::io::ErrorKind::ConnectionRefused) {
        return format!("unreachable: {target}: connection refused");
    }
    if e.is_tls() || is_tls_failure(e) {
        return format!("TLS with {target} failed: {}", innermost(e));
    }
    if find_source::<std::io::Error>(e).is_some() {
        return format!("unreachable: {target}: {}", innermost(e));
    }
    format!("{target}: {e}")
}

// ---------------------------------------------------------------------------------------------
// MongoDB

/// What the test needs from a `mongodb://` connection string.
#[derive(Debug)]
struct MongoUri {
    hosts: Vec<(String, u16)>,
    password: Option<String>,
    user: Option<String>,
    auth_source: Option<String>,
    tls: bool,
}

/// Parses a `mongodb://` connection string. Messages never quote it: it holds the password.
fn parse_mongo_uri(uri: &str) -> Result<MongoUri, String> {
    let rest = uri
        .strip_prefix("mongodb://")
        .ok_or("the connection string must start with mongodb://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (mut user, mut password) = (None, None);
    if let Some(info) = userinfo {
        let (u, p) = match info.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (info, None),
        };
        user = Some(
            percent_decode(u)
                .ok_or("the user name in the connection string has a broken %-escape")?,
        );
        password = p
            .map(|p| {
                percent_decode(p)
                    .ok_or("the password in the connection string has a broken %-escape")
            })
            .transpose()?;
    }
    let mut hosts = Vec::new();
    for h in hostlist.split(',') {
        let (name, port) = if let Some(v6) = h.strip_prefix('[') {
            let (name, after) = v6
                .split_once(']')
                .ok_or("an IPv6 host in the connection string lacks its closing ]")?;
            (name, after.strip_prefix(':'))
        } else {
            match h.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (h, None),
            }
        };
        if name.is_empty() {
            return Err("the connection string names an empty host".into());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| "a port in the connection string is not a number from 1 to 65535")?,
            None => 27017,
        };
        hosts.push((name.to_string(), port));
    }
    let mut auth_source = None;
    let mut tls = false;
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, q),
        None => (tail, ""),
    };
    let database = path.trim_start_matches('/');
    if !database.is_empty() {
        auth_source = Some(database.to_string());
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k.to_ascii_lowercase().as_str() {
            "authsource" => auth_source = percent_decode(v),
            "tls" | "ssl" => tls = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    Ok(MongoUri {
        hosts,
        password,
        user,
        auth_source,
        tls,
    })
}

async fn mongo_check(run: &mut Run, data: &Value, policy: &NetPolicy) -> Result<Outcome, Outcome> {
    let uri = text(data, "uri").ok_or_else(|| run.failed("prepare", "uri is not set"))?;
    if uri.starts_with("mongodb+srv://") {
        return Err(run.failed(
            "prepare",
            "mongodb+srv:// connection strings need a DNS SRV lookup, which the test does not support; test with a mongodb:// string listing the hosts",
        ));
    }
    let parsed = parse_mongo_uri(uri).map_err(|e| run.failed("prepare", e))?;
    if let Some(p) = &parsed.password {
        run.secret(p);
    }
    let mut reached: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut refused: Option<Outcome> = None;
    let mut wire = None;
    let hosts = parsed.hosts.iter().take(MAX_MONGO_HOSTS);
    for (host, port) in hosts {
        let target = format!("{host}:{port}");
        let addrs = match resolve(run, host, *port, policy).await {
            Ok(a) => a,
            Err(o) => {
                // A host the policy refuses fails the whole test (a workflow could not use
                // it either); a host that does not resolve is only "not reached".
                if run.steps.last().is_some_and(|s| s.name == "policy") {
                    refused.get_or_insert(o);
                }
                failed.push(target);
                continue;
            }
        };
        match mongo_hello(run, &addrs, parsed.tls).await {
            Ok(info) => {
                run.step("hello", true, format!("{target}: {info}"));
                wire = wire.or(info.wire);
                reached.push(target);
            }
            Err(why) => {
                run.step("hello", false, format!("{target}: {why}"));
                failed.push(target);
            }
        }
    }
    if let Some(o) = refused {
        return Err(o);
    }
    if reached.is_empty() {
        let last = run
            .steps
            .last()
            .map(|s| s.detail.clone())
            .unwrap_or_default();
        return Err(Outcome::fail(format!("unreachable: {last}")));
    }
    let auth = match (&parsed.user, &parsed.auth_source) {
        (Some(u), Some(src)) => format!(" (user `{u}`, authSource `{src}`)"),
        (Some(u), None) => format!(" (user `{u}`)"),
        _ => String::new(),
    };
    let mut message = match wire {
        Some(n) => format!(
            "reachable (MongoDB wire version {n}); authentication is checked when a workflow first uses it{auth}"
        ),
        None => format!(
            "reachable over TCP; with tls=true the test does not speak TLS to MongoDB, so neither the server nor the login was checked further{auth}"
        ),
    };
    if !failed.is_empty() {
        let _ = write!(message, "; not reached: {}", failed.join(", "));
    }
    Ok(Outcome::pass(message))
}

/// What a `hello` reply said.
struct MongoInfo {
    wire: Option<i64>,
    about: String,
}

impl std::fmt::Display for MongoInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.about)
    }
}

/// Connects to the first address that answers, sends `hello` (or, for TLS deployments, only
/// connects) and reads the reply.
async fn mongo_hello(run: &Run, addrs: &[SocketAddr], tls: bool) -> Result<MongoInfo, String> {
    let mut last = String::from("no address");
    let mut stream = None;
    for addr in addrs {
        match tokio::time::timeout(run.remaining(), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = "connection refused".into()
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {}", human(run.timeout)),
        }
    }
    let Some(mut stream) = stream else {
        return Err(last);
    };
    if tls {
        return Ok(MongoInfo {
            wire: None,
            about: "TCP connection accepted (tls=true: hello not sent)".into(),
        });
    }
    let mut reply = mongo_command(run, &mut stream, 1, "hello").await?;
    if mongo_ok(&reply) != Some(true)
        && mongo_str(&reply, "errmsg").is_some_and(|m| m.contains("no such"))
    {
        // Servers older than 4.4.2 / 4.2.10 / 4.0.21 / 3.6.21 know only isMaster.
        reply = mongo_command(run, &mut stream, 2, "isMaster").await?;
    }
    if mongo_ok(&reply) != Some(true) {
        let why = mongo_str(&reply, "errmsg").unwrap_or("no reason given");
        return Err(format!("the server answered hello with ok: 0 ({why})"));
    }
    let wire = reply.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("maxWireVersion", Bson::Int(n)) => Some(*n),
        _ => None,
    });
    let mut about = match wire {
        Some(n) => format!("MongoDB wire version {n}"),
        None => "MongoDB (no maxWireVersion in the reply)".into(),
    };
    if let Some(set) = mongo_str(&reply, "setName") {
        let _ = write!(about, ", replica set `{set}`");
    }
    if mongo_str(&reply, "msg") == Some("isdbgrid") {
        about.push_str(", mongos");
    }
    Ok(MongoInfo { wire, about })
}

/// A BSON value, as far as the test cares.
#[derive(Debug, PartialEq)]
enum Bson {
    Double(f64),
    Str(String),
    Int(i64),
    Bool(bool),
    Other,
}

fn mongo_ok(doc: &[(String, Bson)]) -> Option<bool> {
    doc.iter().find(|(k, _)| k == "ok").map(|(_, v)| match v {
        Bson::Double(d) => *d == 1.0,
        Bson::Int(n) => *n == 1,
        Bson::Bool(b) => *b,
        _ => false,
    })
}

fn mongo_str<'a>(doc: &'a [(String, Bson)], key: &str) -> Option<&'a str> {
    doc.iter().find_map(|(k, v)| match v {
        Bson::Str(s) if k == key => Some(s.as_str()),
        _ => None,
    })
}

/// The OP_MSG message `{<command>: 1, $db: "admin"}` (wire protocol opcode 2013).
fn op_msg(request_id: i32, command: &str) -> Vec<u8> {
    let mut doc = Vec::new();
    doc.extend_from_slice(&[0; 4]);
    doc.push(0x10); // int32
    doc.extend_from_slice(command.as_bytes());
    doc.push(0);
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0x02); // string
    doc.extend_from_slice(b"$db\0");
    doc.extend_from_slice(&6i32.to_le_bytes());
    doc.extend_from_slice(b"admin\0");
    doc.push(0);
    let len = i32::try_from(doc.len()).unwrap_or(i32::MAX);
    doc[..4].copy_from_slice(&len.to_le_bytes());

    let mut msg = Vec::with_capacity(21 + doc.len());
    let total = i32::try_from(16 + 4 + 1 + doc.len()).unwrap_or(i32::MAX);
    msg.extend_from_slice(&total.to_le_bytes());
    msg.extend_from_slice(&request_id.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
    msg.extend_from_slice(&2013i32.to_le_bytes()); // OP_MSG
    msg.extend_from_slice(&0u32.to_le_bytes()); // flagBits
    msg.push(0); // section kind 0: body
    msg.extend_from_slice(&doc);
    msg
}

/// Sends one command and returns the top-level fields of the reply's body document.
async fn mongo_command(
    run: &Run,
    stream: &mut tokio::net::TcpStream,
    request_id: i32,
    command: &str,
) -> Result<Vec<(String, Bson)>, String> {
    let exchange = async {
        stream
            .write_all(&op_msg(request_id, command))
            .await
            .map_err(|e| format!("sending {command} failed: {e}"))?;
        let mut header = [0u8; 16];
        stream.read_exact(&mut header).await.map_err(|e| {
            format!("the server closed the connection instead of answering {command} ({e}); is it MongoDB 3.6 or later?")
        })?;
        let field =
            |i: usize| i32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (len, response_to, opcode) = (field(0), field(8), field(12));
        let len = usize::try_from(len).unwrap_or(0);
        if !(16 + 5..=MAX_MONGO_REPLY).contains(&len) {
            return Err(format!(
                "the reply to {command} has an impossible length ({len} bytes)"
            ));
        }
        if opcode != 2013 || response_to != request_id {
            return Err(format!(
                "the reply to {command} is not an OP_MSG answer (opcode {opcode}); is this a MongoDB server?"
            ));
        }
        let mut body = vec![0u8; len - 16];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| format!("reading the reply to {command} failed: {e}"))?;
        parse_op_msg_body(&body).ok_or_else(|| format!("the reply to {command} is not valid BSON"))
    };
    match tokio::time::timeout(run.remaining(), exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer to {command} within {}",
            human(run.timeout)
        )),
    }
}

/// The body document of an OP_MSG after its header: flag bits, then sections (kind 0 is the body).
fn parse_op_msg_body(body: &[u8]) -> Option<Vec<(String, Bson)>> {
    let mut rest = body.get(4..)?;
    while let Some((&kind, after)) = rest.split_first() {
        let len = usize::try_from(read_i32(after)?).ok()?;
        match kind {
            0 => return parse_bson(after.get(..len)?),
            1 => rest = after.get(len..)?,
            _ => return None,
        }
    }
    None
}

fn read_i32(b: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

fn read_cstring(b: &[u8]) -> Option<(&str, &[u8])> {
    let nul = b.iter().position(|c| *c == 0)?;
    Some((std::str::from_utf8(&b[..nul]).ok()?, &b[nul + 1..]))
}

/// The top-level fields of a BSON document; nested documents and rarer types are skipped.
fn parse_bson(doc: &[u8]) -> Option<Vec<(String, Bson)>> {
    let len = usize::try_from(read_i32(doc)?).ok()?;
    let mut rest = doc.get(4..len.checked_sub(1)?)?;
    let mut out = Vec::new();
    while let Some((&ty, after)) = rest.split_first() {
        let (key, after) = read_cstring(after)?;
        let fixed = |n: usize| after.get(n..).map(|r| (Bson::Other, r));
        let string_len = || -> Option<usize> { usize::try_from(read_i32(after)?).ok() };
        let (value, next) = match ty {
            0x01 => {
                let v = f64::from_le_bytes(after.get(..8)?.try_into().ok()?);
                (Bson::Double(v), after.get(8..)?)
            }
            0x02 => {
                let n = string_len()?;
                let s = after.get(4..4 + n.checked_sub(1)?)?;
                (
                    Bson::Str(String::from_utf8_lossy(s).into_owned()),
                    after.get(4 + n..)?,
                )
            }
            0x0D | 0x0E => fixed(4 + string_len()?)?,
            0x03 | 0x04 | 0x0F => fixed(string_len()?)?,
            0x05 => fixed(5 + string_len()?)?,
            0x06 | 0x0A | 0x7F | 0xFF => (Bson::Other, after),
            0x07 => fixed(12)?,
            0x08 => (Bson::Bool(*after.first()? != 0), after.get(1..)?),
            0x09 | 0x11 => fixed(8)?,
            0x0B => {
                let (_, r) = read_cstring(after)?;
                let (_, r) = read_cstring(r)?;
                (Bson::Other, r)
            }
            0x0C => fixed(4 + string_len()? + 12)?,
            0x10 => (Bson::Int(i64::from(read_i32(after)?)), after.get(4..)?),
            0x12 => {
                let v = i64::from_le_bytes(after.get(..8)?.try_into().ok()?);
                (Bson::Int(v), after.get(8..)?)
            }
            0x13 => fixed(16)?,
            _ => return None,
        };
        out.push((key.to_string(), value));
        rest = next;
    }
    Some(out)
}

/// A duration for people: `500 ms`, `10 s`, `2.5 s`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongo_uris_parse_without_quoting_secrets() {
        let u = parse_mongo_uri(
            "mongodb://al%40ice:p%3Ass@db1.example:27018,[::1],db3/app?authSource=admin&tls=true",
        )
        .unwrap();
        assert_eq!(
            u.hosts,
            vec![
                ("db1.example".to_string(), 27018),
                ("::1".to_string(), 27017),
                ("db3".to_string(), 27017)
            ]
        );
        assert_eq!(u.user.as_deref(), Some("al@ice"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert_eq!(u.auth_source.as_deref(), Some("admin"));
        assert!(u.tls);
        let e = parse_mongo_uri("mongodb://u:hunter2@h:99999/").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn op_msg_round_trips_through_the_bson_reader() {
        let msg = op_msg(7, "hello");
        assert_eq!(read_i32(&msg).unwrap() as usize, msg.len());
        let doc = parse_op_msg_body(&msg[16..]).unwrap();
        assert_eq!(doc[0], ("hello".to_string(), Bson::Int(1)));
        assert_eq!(doc[1], ("$db".to_string(), Bson::Str("admin".into())));
    }

    #[test]
    fn form_encoding_follows_rfc_6749_appendix_b() {
        assert_eq!(form_encode("a b:c/é*-._"), "a+b%3Ac%2F%C3%A9*-._");
    }

    #[test]
    fn postgres_urls_never_fall_back_to_the_environment_or_sockets() {
        let t = pg_target(&serde_json::json!({
            "url": "postgres://bob:p%40ss@db.example:6543/?sslmode=disable"
        }))
        .unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.user.as_str(),
                t.database.as_str()
            ),
            ("db.example", 6543, "bob", "bob")
        );
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.sslmode, "disable");
        assert!(pg_target(
            &serde_json::json!({"url": "postgres://bob@h/db?host=/var/run/postgresql"})
        )
        .is_err());
        assert!(pg_target(&serde_json::json!({"url": "postgres://h/db"})).is_err());
    }
}
