//! Credential tests against real services on 127.0.0.1: HTTP APIs (GitHub-, OpenAI- and
//! Anthropic-like, basic auth, a server that echoes the secret), an RFC 6749 token endpoint, the
//! local PostgreSQL, a small RFC 5321 SMTP server and a small MongoDB wire-protocol server — and
//! the SSRF policy refusing them all when it is the default.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use orcheo_nodes::net::NetPolicy;
use orcheo_server::credentials::check::{test_credential, TestReport};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const GH_TOKEN: &str = "ghp_goodTokenForTheTest0123456789";
const OPENAI_KEY: &str = "sk-openai-good-key-0123456789";
const ANTHROPIC_KEY: &str = "sk-ant-good-key-0123456789";
const BASIC_USER: &str = "alice";
const BASIC_PASS: &str = "wonder/land:pass";
const CLIENT_ID: &str = "orcheo-client";
const CLIENT_SECRET: &str = "s3cret/with:odd chars&more+plus%2F";
const SLACK_TOKEN: &str = "xoxb-good-slack-token-0123";
const TELEGRAM_TOKEN: &str = "123456:AAGoodTelegramToken_0123";
const SMTP_USER: &str = "mailer@example.test";
const SMTP_PASS: &str = "smtp-pass-0123456789";

// ---------------------------------------------------------------------------------------------
// Harness

/// The allowlist the tests use: the loopback address their servers listen on.
fn local_policy() -> NetPolicy {
    NetPolicy::new(&["127.0.0.1"]).unwrap()
}

/// A client guarded by `policy`, as the server builds it.
fn client(policy: &NetPolicy) -> reqwest::Client {
    policy
        .apply(reqwest::Client::builder(), 10)
        .build()
        .unwrap()
}

async fn check(type_id: &str, data: Value) -> TestReport {
    check_with(type_id, data, &local_policy(), Duration::from_secs(10)).await
}

async fn check_with(
    type_id: &str,
    data: Value,
    policy: &NetPolicy,
    timeout: Duration,
) -> TestReport {
    let ty = orcheo_vault::types::get(type_id).unwrap();
    test_credential(ty, &data, &client(policy), policy, timeout).await
}

/// The whole report as JSON, for leak checks.
fn text(r: &TestReport) -> String {
    serde_json::to_string(r).unwrap()
}

fn assert_ok(r: &TestReport) {
    assert!(
        r.ok,
        "expected ok: {}",
        serde_json::to_string_pretty(r).unwrap()
    );
}

fn assert_failed(r: &TestReport, needle: &str) {
    assert!(
        !r.ok,
        "expected a failure: {}",
        serde_json::to_string_pretty(r).unwrap()
    );
    assert!(
        r.message.contains(needle),
        "message should mention {needle:?}: {}",
        serde_json::to_string_pretty(r).unwrap()
    );
}

/// Serves `app` on 127.0.0.1:0 and returns its base URL.
async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A port on 127.0.0.1 that nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// A fake API: checks each template's headers like the real services do

#[derive(Default)]
struct Api {
    hits: AtomicUsize,
}

fn api() -> (Router, Arc<Api>) {
    let state = Arc::new(Api::default());
    let app = Router::new()
        .route("/user", get(github_user))
        .route("/echo/user", get(echo))
        .route("/openai/v1/models", get(openai_models))
        .route("/anthropic/v1/models", get(anthropic_models))
        .route("/basic", get(basic))
        .route("/basic-echo", get(echo_401))
        .route("/slow", get(slow))
        .route("/slack/auth.test", post(slack_auth_test))
        .route("/telegram/{path}/getMe", get(telegram_get_me))
        .with_state(state.clone());
    (app, state)
}

async fn github_user(State(api): State<Arc<Api>>, h: HeaderMap) -> Response {
    api.hits.fetch_add(1, Ordering::SeqCst);
    let headers_ok = header(&h, "accept") == "application/vnd.github+json"
        && header(&h, "user-agent") == "orcheo"
        && header(&h, "x-github-api-version") == "2022-11-28";
    if !headers_ok {
        return (StatusCode::BAD_REQUEST, "missing GitHub headers").into_response();
    }
    if header(&h, "authorization") != format!("Bearer {GH_TOKEN}") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})),
        )
            .into_response();
    }
    Json(json!({"login": "octocat", "id": 1})).into_response()
}

/// A broken upstream that puts the request's Authorization header in its error page.
async fn echo(State(api): State<Arc<Api>>, h: HeaderMap) -> Response {
    api.hits.fetch_add(1, Ordering::SeqCst);
    let auth = header(&h, "authorization");
    let body = format!(
        "internal error; request had Authorization: {auth}; base64: {}",
        B64.encode(auth)
    );
    (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
}

async fn echo_401(State(api): State<Arc<Api>>, h: HeaderMap) -> Response {
    api.hits.fetch_add(1, Ordering::SeqCst);
    let body = format!("denied: {}", header(&h, "authorization"));
    (StatusCode::UNAUTHORIZED, body).into_response()
}

async fn openai_models(h: HeaderMap) -> Response {
    if header(&h, "authorization") != format!("Bearer {OPENAI_KEY}") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})),
        )
            .into_response();
    }
    if header(&h, "openai-organization") != "org-test" {
        return (StatusCode::BAD_REQUEST, "OpenAI-Organization missing").into_response();
    }
    Json(json!({"object": "list", "data": [{"id": "gpt-test"}]})).into_response()
}

async fn anthropic_models(h: HeaderMap) -> Response {
    if header(&h, "anthropic-version") != "2023-06-01" {
        return (
            StatusCode::BAD_REQUEST,
            "anthropic-version header is required",
        )
            .into_response();
    }
    if header(&h, "x-api-key") != ANTHROPIC_KEY {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})),
        )
            .into_response();
    }
    Json(json!({"data": [{"id": "claude-test"}], "has_more": false})).into_response()
}

async fn basic(h: HeaderMap) -> Response {
    let expected = format!("Basic {}", B64.encode(format!("{BASIC_USER}:{BASIC_PASS}")));
    if header(&h, "authorization") == expected {
        "hello alice".into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"test\"")],
        )
            .into_response()
    }
}

/// Slack answers 200 with `ok: false` for a bad token.
async fn slack_auth_test(h: HeaderMap) -> Response {
    if header(&h, "authorization") == format!("Bearer {SLACK_TOKEN}") {
        Json(json!({"ok": true, "team": "Test", "user": "orcheo-bot"})).into_response()
    } else {
        Json(json!({"ok": false, "error": "invalid_auth"})).into_response()
    }
}

/// Telegram puts the token in the path: `/bot<token>/getMe`.
async fn telegram_get_me(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    if path == format!("bot{TELEGRAM_TOKEN}") {
        Json(json!({"ok": true, "result": {"id": 123456, "is_bot": true}})).into_response()
    } else {
        // Echoes the path, as a careless proxy might.
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"ok": false, "error_code": 401, "description": format!("Unauthorized: {path}")})),
        )
            .into_response()
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

// ---------------------------------------------------------------------------------------------
// HTTP templates

#[tokio::test]
async fn github_token_is_accepted() {
    let (app, _) = api();
    let base = serve(app).await;
    let r = check("github", json!({"token": GH_TOKEN, "base_url": base})).await;
    assert_ok(&r);
    assert!(r.message.contains("accepted"), "{}", r.message);
    assert!(
        r.steps.iter().any(|s| s.detail.contains("200")),
        "{:?}",
        r.steps
    );
    assert!(!text(&r).contains(GH_TOKEN));
}

#[tokio::test]
async fn a_wrong_github_token_is_reported_as_rejected() {
    let (app, _) = api();
    let base = serve(app).await;
    let r = check(
        "github",
        json!({"token": "ghp_wrongWrongWrong", "base_url": base}),
    )
    .await;
    assert_failed(&r, "rejected");
    assert!(r.message.contains("401"), "{}", r.message);
    let detail = &r.steps.last().unwrap().detail;
    assert!(
        detail.contains("Bad credentials"),
        "body excerpt in the detail: {detail}"
    );
}

#[tokio::test]
async fn a_server_echoing_the_token_leaks_nothing_into_the_report() {
    let (app, _) = api();
    let base = serve(app).await;
    let r = check(
        "github",
        json!({"token": GH_TOKEN, "base_url": format!("{base}/echo")}),
    )
    .await;
    assert!(!r.ok);
    assert!(r.message.contains("500"), "{}", r.message);
    let all = text(&r);
    // The echo is in the excerpt, masked: the test fails if masking is skipped.
    assert!(all.contains("Authorization: Bearer ***"), "{all}");
    assert!(!all.contains(GH_TOKEN), "raw token leaked: {all}");
    assert!(
        !all.contains(&B64.encode(GH_TOKEN)),
        "base64 token leaked: {all}"
    );
    assert!(
        !all.contains(&B64.encode(format!("Bearer {GH_TOKEN}"))),
        "base64 header leaked: {all}"
    );
}

#[tokio::test]
async fn openai_template_sends_its_headers() {
    let (app, _) = api();
    let base = serve(app).await;
    let good = json!({"api_key": OPENAI_KEY, "organization": "org-test", "base_url": format!("{base}/openai/v1")});
    assert_ok(&check("openai", good).await);
    let bad = json!({"api_key": "sk-nope-nope-nope", "organization": "org-test", "base_url": format!("{base}/openai/v1")});
    let r = check("openai", bad).await;
    assert_failed(&r, "rejected");
}

#[tokio::test]
async fn anthropic_template_sends_its_headers() {
    let (app, _) = api();
    let base = serve(app).await;
    let url = format!("{base}/anthropic");
    assert_ok(
        &check(
            "anthropic",
            json!({"api_key": ANTHROPIC_KEY, "base_url": url}),
        )
        .await,
    );
    let r = check(
        "anthropic",
        json!({"api_key": "sk-ant-wrong-key", "base_url": url}),
    )
    .await;
    assert_failed(&r, "rejected");
    // Without the version header the fake answers 400: the template must send it.
    let r = check(
        "anthropic",
        json!({"api_key": ANTHROPIC_KEY, "base_url": url, "anthropic_version": ""}),
    )
    .await;
    assert_failed(&r, "400");
}

#[tokio::test]
async fn basic_auth_is_checked_and_its_base64_never_shown() {
    let (app, _) = api();
    let base = serve(app).await;
    let auth = json!({"type": "basic", "username": BASIC_USER, "password": BASIC_PASS});
    let r = check(
        "http",
        json!({"base_url": format!("{base}/basic"), "auth": auth}),
    )
    .await;
    assert_ok(&r);
    let wrong = json!({"type": "basic", "username": BASIC_USER, "password": "not-the-password"});
    let r = check(
        "http",
        json!({"base_url": format!("{base}/basic"), "auth": wrong}),
    )
    .await;
    assert_failed(&r, "rejected");

    let r = check(
        "http",
        json!({"base_url": format!("{base}/basic-echo"), "auth": auth}),
    )
    .await;
    assert_failed(&r, "rejected");
    let all = text(&r);
    assert!(
        all.contains("denied: Basic "),
        "the echo is shown, masked: {all}"
    );
    let encoded = B64.encode(format!("{BASIC_USER}:{BASIC_PASS}"));
    assert!(
        !all.contains(&encoded),
        "base64 user:password leaked: {all}"
    );
    assert!(!all.contains(BASIC_PASS), "{all}");
}

#[tokio::test]
async fn json_ok_templates_need_ok_true_and_hide_tokens_in_the_url() {
    let (app, _) = api();
    let base = serve(app).await;
    let slack = |token: &str| json!({"bot_token": token, "base_url": format!("{base}/slack")});
    assert_ok(&check("slack", slack(SLACK_TOKEN)).await);
    let r = check("slack", slack("xoxb-revoked-token-999")).await;
    assert_failed(&r, "`/ok` is not true: invalid_auth");

    let telegram =
        |token: &str| json!({"bot_token": token, "base_url": format!("{base}/telegram")});
    let r = check("telegram", telegram(TELEGRAM_TOKEN)).await;
    assert_ok(&r);
    assert!(
        !text(&r).contains(TELEGRAM_TOKEN),
        "the token is in the URL: {}",
        text(&r)
    );
    let wrong = "999999:AAWrongTelegramToken_42";
    let r = check("telegram", telegram(wrong)).await;
    assert_failed(&r, "rejected");
    let all = text(&r);
    assert!(
        all.contains("Unauthorized: bot***"),
        "the echo is shown, masked: {all}"
    );
    assert!(!all.contains(wrong), "{all}");
}

#[tokio::test]
async fn the_default_policy_refuses_loopback_and_sends_nothing() {
    let (app, state) = api();
    let base = serve(app).await;
    let strict = NetPolicy::default();
    let r = check_with(
        "github",
        json!({"token": GH_TOKEN, "base_url": base}),
        &strict,
        Duration::from_secs(5),
    )
    .await;
    assert_failed(&r, "ORCHEO_HTTP_ALLOW");
    // A name that resolves to loopback is refused by the client's resolver.
    let port = base.rsplit(':').next().unwrap();
    let r = check_with(
        "github",
        json!({"token": GH_TOKEN, "base_url": format!("http://localhost:{port}")}),
        &strict,
        Duration::from_secs(5),
    )
    .await;
    assert_failed(&r, "ORCHEO_HTTP_ALLOW");
    assert_eq!(
        state.hits.load(Ordering::SeqCst),
        0,
        "no request may reach the server"
    );
}

#[tokio::test]
async fn unreachable_and_slow_services_are_told_apart() {
    let port = closed_port().await;
    let r = check(
        "github",
        json!({"token": GH_TOKEN, "base_url": format!("http://127.0.0.1:{port}")}),
    )
    .await;
    assert_failed(&r, "unreachable");
    assert!(r.message.contains("refused"), "{}", r.message);

    let (app, _) = api();
    let base = serve(app).await;
    // https:// to a plain HTTP server: the TLS handshake fails.
    let r = check(
        "github",
        json!({"token": GH_TOKEN, "base_url": base.replace("http://", "https://")}),
    )
    .await;
    assert_failed(&r, "TLS");

    let started = std::time::Instant::now();
    let r = check_with(
        "http",
        json!({"base_url": format!("{base}/slow")}),
        &local_policy(),
        Duration::from_millis(500),
    )
    .await;
    assert_failed(&r, "no answer within 500 ms");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout bounds the test"
    );
}

#[tokio::test]
async fn types_without_a_test_or_without_the_needed_fields_say_so() {
    let r = check("bearer", json!({"token": "abcdef123456"})).await;
    assert_failed(
        &r,
        "this type has no generic test; use it in a workflow to check it",
    );

    // Data that does not fit the type is not sent anywhere.
    let r = check("discord", json!({})).await;
    assert!(!r.ok);
    assert!(r.message.contains("bot_token"), "{}", r.message);

    // Valid data, but the test request needs a field that is optional in the schema.
    let mut ty = orcheo_vault::types::get("openai").unwrap().clone();
    ty.test = orcheo_vault::TestKind::Http {
        requests: vec![orcheo_vault::HttpTest {
            method: "GET",
            url: "{{base_url}}/organizations/{{organization}}",
            headers: &[],
            requires: &["project"],
            expect: orcheo_vault::Expect::Success,
        }],
    };
    let policy = local_policy();
    let r = test_credential(
        &ty,
        &json!({"api_key": OPENAI_KEY, "base_url": "http://127.0.0.1:9"}),
        &client(&policy),
        &policy,
        Duration::from_secs(5),
    )
    .await;
    assert_failed(
        &r,
        "this credential has no field the test needs: project and organization",
    );
}

// ---------------------------------------------------------------------------------------------
// OAuth2: a token endpoint per RFC 6749

#[derive(Default)]
struct TokenEndpoint {
    issued: std::sync::Mutex<Vec<String>>,
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap(),
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn token(
    State(ep): State<Arc<TokenEndpoint>>,
    h: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let invalid_client = || {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"token\"")],
            Json(json!({"error": "invalid_client", "error_description": "client authentication failed"})),
        )
            .into_response()
    };
    // RFC 6749 §2.3.1: Basic with the form-encoded id and secret.
    let Some(b64) = header(&h, "authorization").strip_prefix("Basic ") else {
        return invalid_client();
    };
    let Ok(pair) = B64.decode(b64) else {
        return invalid_client();
    };
    let pair = String::from_utf8(pair).unwrap();
    let Some((id, secret)) = pair.split_once(':') else {
        return invalid_client();
    };
    if form_decode(id) != CLIENT_ID || form_decode(secret) != CLIENT_SECRET {
        return invalid_client();
    }
    let access = format!("AT-{}", uuid::Uuid::new_v4().simple());
    let mut reply = json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600});
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            if form.get("scope").map(String::as_str) != Some("read write")
                || form.get("audience").map(String::as_str) != Some("https://api.example.test")
            {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_scope"})),
                )
                    .into_response();
            }
            reply["scope"] = json!("read write");
        }
        Some("refresh_token") => {
            if form.get("refresh_token").map(String::as_str) != Some("RT-stored-refresh-token") {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant", "error_description": "refresh token revoked"})),
                )
                    .into_response();
            }
            let refresh = format!("RT-new-{}", uuid::Uuid::new_v4().simple());
            ep.issued.lock().unwrap().push(refresh.clone());
            reply["refresh_token"] = json!(refresh);
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response()
        }
    }
    ep.issued.lock().unwrap().push(access);
    Json(reply).into_response()
}

async fn token_server() -> (String, Arc<TokenEndpoint>) {
    let ep = Arc::new(TokenEndpoint::default());
    let app = Router::new()
        .route("/token", post(token))
        .with_state(ep.clone());
    (format!("{}/token", serve(app).await), ep)
}

fn oauth(token_url: &str, grant: &str, secret: &str) -> Value {
    json!({
        "grant_type": grant,
        "token_url": token_url,
        "authorization_url": "https://auth.example.test/authorize",
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "scopes": ["read", "write"],
        "audience": "https://api.example.test",
    })
}

#[tokio::test]
async fn oauth2_client_credentials_with_the_right_and_the_wrong_secret() {
    let (url, ep) = token_server().await;
    let r = check("oauth2", oauth(&url, "client_credentials", CLIENT_SECRET)).await;
    assert_ok(&r);
    assert!(
        r.message.contains("issued an access token"),
        "{}",
        r.message
    );
    assert!(r.message.contains("expires in 3600 s"), "{}", r.message);
    let issued = ep.issued.lock().unwrap().clone();
    assert_eq!(issued.len(), 1);
    assert!(
        !text(&r).contains(&issued[0]),
        "the access token must not be reported"
    );

    let r = check(
        "oauth2",
        oauth(&url, "client_credentials", "wrong-secret-value"),
    )
    .await;
    assert_failed(&r, "rejected");
    assert!(r.message.contains("invalid_client"), "{}", r.message);
}

#[tokio::test]
async fn oauth2_refresh_is_tried_and_nothing_is_stored() {
    let (url, ep) = token_server().await;
    let mut data = oauth(&url, "refresh_token", CLIENT_SECRET);
    data["refresh_token"] = json!("RT-stored-refresh-token");
    data["scopes"] = json!([]);
    let r = check("oauth2", data.clone()).await;
    assert_ok(&r);
    assert!(r.message.contains("not stored"), "{}", r.message);
    let all = text(&r);
    for t in ep.issued.lock().unwrap().iter() {
        assert!(!all.contains(t.as_str()), "new token {t} leaked: {all}");
    }
    assert!(!all.contains("RT-stored-refresh-token"));

    data["refresh_token"] = json!("RT-revoked-one");
    let r = check("oauth2", data).await;
    assert_failed(&r, "invalid_grant");
}

#[tokio::test]
async fn oauth2_authorization_code_reports_its_state() {
    let mut data = oauth(
        "https://auth.example.test/token",
        "authorization_code",
        CLIENT_SECRET,
    );
    let r = check("oauth2", data.clone()).await;
    assert_failed(&r, "not connected yet: start the authorization flow");

    data["access_token"] = json!("AT-old-access-token");
    data["expires_at"] = json!("2020-01-01T00:00:00Z");
    let r = check("oauth2", data.clone()).await;
    assert_failed(&r, "expired");
    assert!(!text(&r).contains("AT-old-access-token"));

    data["expires_at"] = json!("2999-01-01T00:00:00Z");
    assert_ok(&check("oauth2", data).await);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: the local server

/// (host, port, user) of the test PostgreSQL server (`ORCHEO_TEST_POSTGRES`).
fn pg() -> (String, u16, String) {
    let url = reqwest::Url::parse(&orcheo_store::testing::postgres_server()).unwrap();
    let user = if url.username().is_empty() {
        "postgres"
    } else {
        url.username()
    };
    (
        url.host_str().unwrap().to_string(),
        url.port().unwrap_or(5432),
        user.to_string(),
    )
}

#[tokio::test]
async fn postgres_connects_and_runs_queries() {
    let (host, port, user) = pg();
    let r = check(
        "postgresql",
        json!({"host": host, "port": port, "user": user, "database": "test", "sslmode": "disable"}),
    )
    .await;
    assert_ok(&r);
    assert!(r.message.contains("PostgreSQL"), "{}", r.message);
    let names: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["resolve", "connect", "SELECT 1", "SELECT version()"]
    );

    // The same by URL; the password (ignored by trust auth) never shows.
    let url = format!("postgres://{user}:pg-secret-pass-123@{host}:{port}/test?sslmode=prefer");
    let r = check("postgresql", json!({"url": url})).await;
    assert_ok(&r);
    assert!(!text(&r).contains("pg-secret-pass-123"));
}

#[tokio::test]
async fn postgres_missing_database_and_closed_port_are_told_apart() {
    let (host, port, user) = pg();
    let r = check(
        "postgresql",
        json!({"host": host, "port": port, "user": user, "database": "orcheo_no_such_db", "sslmode": "disable"}),
    )
    .await;
    assert_failed(&r, "database \"orcheo_no_such_db\" does not exist");

    let r = check(
        "postgresql",
        json!({"host": host, "port": port, "user": "orcheo_no_such_role", "password": "pw-0123", "database": "test", "sslmode": "disable"}),
    )
    .await;
    assert_failed(&r, "authentication failed for user `orcheo_no_such_role`");

    let closed = closed_port().await;
    let r = check(
        "postgresql",
        json!({"host": "127.0.0.1", "port": closed, "user": user, "database": "test"}),
    )
    .await;
    assert_failed(&r, "unreachable");
    assert!(r.message.contains("connection refused"), "{}", r.message);
}

#[tokio::test]
async fn postgres_respects_the_network_policy() {
    let (_, port, user) = pg();
    let r = check_with(
        "postgresql",
        json!({"host": "127.0.0.1", "port": port, "user": user, "database": "test"}),
        &NetPolicy::default(),
        Duration::from_secs(5),
    )
    .await;
    assert_failed(&r, "ORCHEO_HTTP_ALLOW");
    assert!(
        !r.steps.iter().any(|s| s.name == "connect"),
        "{:?}",
        r.steps
    );
}

// ---------------------------------------------------------------------------------------------
// SMTP: a small RFC 5321 server with AUTH PLAIN and LOGIN

/// Serves SMTP on 127.0.0.1; returns the port and how many AUTH attempts it saw.
async fn smtp_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let auths = Arc::new(AtomicUsize::new(0));
    let seen = auths.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let _ = smtp_session(sock, seen).await;
            });
        }
    });
    (port, auths)
}

async fn smtp_session(sock: tokio::net::TcpStream, auths: Arc<AtomicUsize>) -> std::io::Result<()> {
    let (read, mut write) = sock.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 mail.test ESMTP ready\r\n").await?;
    let check = |user: &str, pass: &str| {
        if user == SMTP_USER && pass == SMTP_PASS {
            "235 2.7.0 Authentication successful\r\n".to_string()
        } else {
            // A careless server that echoes what it was sent: the report must still hide it.
            format!("535 5.7.8 Authentication credentials invalid for {user} / {pass}\r\n")
        }
    };
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO ") {
            "250-mail.test greets you\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n".to_string()
        } else if upper.starts_with("HELO ") {
            "250 mail.test\r\n".to_string()
        } else if upper.starts_with("AUTH PLAIN") {
            auths.fetch_add(1, Ordering::SeqCst);
            let arg = match line.split_whitespace().nth(2) {
                Some(a) => a.to_string(),
                None => {
                    write.write_all(b"334 \r\n").await?;
                    lines.next_line().await?.unwrap_or_default()
                }
            };
            let decoded = B64.decode(arg.trim()).unwrap_or_default();
            let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
            if parts.len() == 3 {
                check(
                    &String::from_utf8_lossy(parts[1]),
                    &String::from_utf8_lossy(parts[2]),
                )
            } else {
                "501 5.5.2 malformed AUTH PLAIN\r\n".to_string()
            }
        } else if upper.starts_with("AUTH LOGIN") {
            auths.fetch_add(1, Ordering::SeqCst);
            write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let user = lines.next_line().await?.unwrap_or_default();
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let pass = lines.next_line().await?.unwrap_or_default();
            let d = |s: &str| {
                String::from_utf8(B64.decode(s.trim()).unwrap_or_default()).unwrap_or_default()
            };
            check(&d(&user), &d(&pass))
        } else if upper == "NOOP" {
            "250 2.0.0 OK\r\n".to_string()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized\r\n".to_string()
        };
        write.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

fn smtp(port: u16, password: &str, security: &str) -> Value {
    json!({"host": "127.0.0.1", "port": port, "username": SMTP_USER, "password": password, "security": security})
}

#[tokio::test]
async fn smtp_login_with_the_right_and_the_wrong_password() {
    let (port, auths) = smtp_server().await;
    let r = check("smtp", smtp(port, SMTP_PASS, "none")).await;
    assert_ok(&r);
    assert!(r.message.contains("authenticated"), "{}", r.message);
    assert_eq!(
        auths.load(Ordering::SeqCst),
        1,
        "the login was really tried"
    );

    let r = check("smtp", smtp(port, "wrong-password-here", "none")).await;
    assert_failed(&r, "authentication failed");
    assert!(r.message.contains("535"), "{}", r.message);
    assert!(
        !text(&r).contains("wrong-password-here"),
        "the echoed password is masked: {}",
        text(&r)
    );
}

#[tokio::test]
async fn smtp_starttls_is_required_when_asked_for_and_closed_ports_are_unreachable() {
    let (port, auths) = smtp_server().await;
    let r = check("smtp", smtp(port, SMTP_PASS, "starttls")).await;
    assert_failed(&r, "STARTTLS");
    assert_eq!(
        auths.load(Ordering::SeqCst),
        0,
        "no password is sent unencrypted when STARTTLS was asked for"
    );

    // Implicit TLS against a plain-text server: the handshake fails, nothing is sent.
    let r = check("smtp", smtp(port, SMTP_PASS, "tls")).await;
    assert_failed(&r, "TLS");
    assert_eq!(auths.load(Ordering::SeqCst), 0);

    let closed = closed_port().await;
    let r = check("smtp", smtp(closed, SMTP_PASS, "none")).await;
    assert_failed(&r, "unreachable");

    let r = check_with(
        "smtp",
        smtp(port, SMTP_PASS, "none"),
        &NetPolicy::default(),
        Duration::from_secs(5),
    )
    .await;
    assert_failed(&r, "ORCHEO_HTTP_ALLOW");
    assert_eq!(auths.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// MongoDB: a small wire-protocol server answering OP_MSG hello

/// A BSON document from pre-encoded elements.
fn bson(elements: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = elements.concat();
    let len = (4 + body.len() + 1) as i32;
    [len.to_le_bytes().to_vec(), body, vec![0]].concat()
}

fn element(ty: u8, key: &str, value: &[u8]) -> Vec<u8> {
    [vec![ty], key.as_bytes().to_vec(), vec![0], value.to_vec()].concat()
}

/// {ok: 1.0, maxWireVersion: 17, …} with a nested document, a date and a string on the way.
fn hello_reply() -> Vec<u8> {
    let topology = bson(&[
        element(0x07, "processId", &[7; 12]),
        element(0x12, "counter", &0i64.to_le_bytes()),
    ]);
    let host = b"mongo.test:27017\0";
    let mut host_value = (host.len() as i32).to_le_bytes().to_vec();
    host_value.extend_from_slice(host);
    bson(&[
        element(0x08, "isWritablePrimary", &[1]),
        element(0x03, "topologyVersion", &topology),
        element(0x02, "me", &host_value),
        element(0x09, "localTime", &1_700_000_000_000i64.to_le_bytes()),
        element(0x10, "minWireVersion", &0i32.to_le_bytes()),
        element(0x10, "maxWireVersion", &17i32.to_le_bytes()),
        element(0x01, "ok", &1.0f64.to_le_bytes()),
    ])
}

/// Serves MongoDB's OP_MSG on 127.0.0.1; returns the port and the commands it received.
async fn mongo_server() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let commands = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = commands.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut header = [0u8; 16];
                if sock.read_exact(&mut header).await.is_err() {
                    return;
                }
                let len = i32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
                let request_id = i32::from_le_bytes(header[4..8].try_into().unwrap());
                let opcode = i32::from_le_bytes(header[12..16].try_into().unwrap());
                let mut body = vec![0u8; len - 16];
                sock.read_exact(&mut body).await.unwrap();
                assert_eq!(opcode, 2013, "OP_MSG");
                assert_eq!(body[4], 0, "section kind 0");
                // The first element's key is the command name.
                let doc = &body[5..];
                let end = doc[5..].iter().position(|b| *b == 0).unwrap();
                let command = String::from_utf8(doc[5..5 + end].to_vec()).unwrap();
                assert!(doc.windows(4).any(|w| w == b"$db\0"), "$db is set");
                seen.lock().unwrap().push(command);
                let reply = hello_reply();
                let total = (16 + 4 + 1 + reply.len()) as i32;
                let mut msg = Vec::new();
                msg.extend_from_slice(&total.to_le_bytes());
                msg.extend_from_slice(&99i32.to_le_bytes());
                msg.extend_from_slice(&request_id.to_le_bytes());
                msg.extend_from_slice(&2013i32.to_le_bytes());
                msg.extend_from_slice(&0u32.to_le_bytes());
                msg.push(0);
                msg.extend_from_slice(&reply);
                sock.write_all(&msg).await.unwrap();
            });
        }
    });
    (port, commands)
}

#[tokio::test]
async fn mongo_hello_reports_the_wire_version() {
    let (port, commands) = mongo_server().await;
    let r = check(
        "mongodb",
        json!({"uri": format!("mongodb://app:mongo-secret-pw@127.0.0.1:{port}/app?authSource=admin")}),
    )
    .await;
    assert_ok(&r);
    assert!(
        r.message.contains("reachable (MongoDB wire version 17)"),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains("authentication is checked when a workflow first uses it"),
        "{}",
        r.message
    );
    assert_eq!(commands.lock().unwrap().as_slice(), ["hello"]);
    assert!(!text(&r).contains("mongo-secret-pw"));
}

#[tokio::test]
async fn mongo_closed_port_srv_and_policy() {
    let closed = closed_port().await;
    let r = check(
        "mongodb",
        json!({"uri": format!("mongodb://127.0.0.1:{closed}")}),
    )
    .await;
    assert_failed(&r, "unreachable");
    assert!(r.message.contains("connection refused"), "{}", r.message);

    let (port, commands) = mongo_server().await;
    let r = check(
        "mongodb",
        json!({"uri": format!("mongodb://127.0.0.1:{port}/?tls=true")}),
    )
    .await;
    assert_ok(&r);
    assert!(r.message.contains("tls=true"), "{}", r.message);
    assert!(
        commands.lock().unwrap().is_empty(),
        "no plain-text hello to a TLS deployment"
    );

    let r = check(
        "mongodb",
        json!({"uri": "mongodb+srv://u:p@cluster0.example.net/db"}),
    )
    .await;
    assert_failed(&r, "SRV");

    let (port, commands) = mongo_server().await;
    let r = check_with(
        "mongodb",
        json!({"uri": format!("mongodb://127.0.0.1:{port}")}),
        &NetPolicy::default(),
        Duration::from_secs(5),
    )
    .await;
    assert_failed(&r, "ORCHEO_HTTP_ALLOW");
    assert!(commands.lock().unwrap().is_empty());
}
