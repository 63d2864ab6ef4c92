//! The HTTP Request node: one request through the SSRF-guarded client, with an optional
//! credential from the vault applied as its type says (bearer, basic, API key header or query,
//! custom headers, service templates). Non-2xx answers fail with an error kind that retry
//! policies can name: `http_429`, `http_5xx`, `http_4xx`.

use crate::net::{describe, GuardedClient};
use async_trait::async_trait;
use futures::StreamExt;
use orcheo_core::node::{Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Sends an HTTP request.
pub struct HttpRequest {
    client: Result<GuardedClient, String>,
}

impl HttpRequest {
    /// A node using `client` (the server passes its guarded client).
    pub fn new(client: GuardedClient) -> Self {
        Self { client: Ok(client) }
    }

    /// A node whose client follows `ORCHEO_HTTP_ALLOW` (local runs).
    pub fn from_env() -> Self {
        let allow: Vec<String> = std::env::var("ORCHEO_HTTP_ALLOW")
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        let client = GuardedClient::from_allowlist(&allow);
        Self { client }
    }
}

/// How the response body is read.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResponseFormat {
    /// JSON when it parses, else text (default).
    #[default]
    Auto,
    /// JSON (an error when it does not parse).
    Json,
    /// Text.
    Text,
}

/// Config of `http_request`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestConfig {
    /// `GET` (default), `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD` or `OPTIONS`.
    #[serde(default = "get")]
    pub method: String,
    /// The URL (http or https).
    pub url: String,
    /// Query parameters added to the URL.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub query: Map<String, Value>,
    /// Request headers (put secrets in a credential, not here).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    /// A JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// A text body (with `content_type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The text body's content type (default `text/plain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Milliseconds before the request fails (default 30000).
    #[serde(default = "thirty_seconds")]
    pub timeout_ms: u64,
    /// `auto` (default), `json` or `text`.
    #[serde(default)]
    pub response: ResponseFormat,
    /// Largest accepted response in bytes (default 10 MiB).
    #[serde(default = "ten_mib")]
    pub max_response_bytes: usize,
    /// Fail on a non-2xx status (default true); false returns it as output.
    #[serde(default = "yes")]
    pub fail_on_status: bool,
}

fn get() -> String {
    "GET".into()
}
fn thirty_seconds() -> u64 {
    30_000
}
fn ten_mib() -> usize {
    10 * 1024 * 1024
}
fn yes() -> bool {
    true
}

/// Output of `http_request`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HttpRequestOutput {
    /// The status code.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Map<String, Value>,
    /// The body: JSON, or text.
    pub body: Value,
}

#[async_trait]
impl Node for HttpRequest {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<HttpRequestConfig, HttpRequestOutput>(
            "http_request",
            "HTTP Request",
            "integrations",
            "Sends an HTTP request, with an optional credential from the vault in the `auth` slot; private and internal addresses need the operator's allowlist.",
        )
        .icon("globe")
        .credential(
            "auth",
            &[],
            false,
            "applied to the request as its type says: bearer, basic, API key header or query, custom headers, OAuth2 (refreshed), or a service template",
        )
        .example(
            "Fetch a JSON API with a bearer credential (\"credentials\": {\"auth\": \"shop-api\"})",
            json!({ "url": "https://api.example.com/orders/{{ state.order_id }}" }),
        )
        .example(
            "Post a message",
            json!({ "method": "POST", "url": "https://hooks.example.com/notify", "json": {"text": "{{ state.summary }}"} }),
        )
    }

    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: HttpRequestConfig = ctx.config_as()?;
        let node = &ctx.node_id;
        let client = self
            .client
            .as_ref()
            .map_err(|e| NodeError::config(format!("node `{node}`: {e}")))?;
        let method = reqwest::Method::from_bytes(c.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                NodeError::config(format!(
                    "node `{node}`: `{}` is not an HTTP method",
                    c.method
                ))
            })?;
        let mut url = reqwest::Url::parse(&c.url).map_err(|e| {
            NodeError::config(format!("node `{node}`: url `{}` is not valid: {e}", c.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NodeError::config(format!(
                "node `{node}`: only http and https URLs can be requested"
            )));
        }
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &c.query {
                q.append_pair(k, &text(v));
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut auth_headers = Vec::new();
        if ctx.credential_slots.iter().any(|(s, _)| s == "auth") {
            let cred = ctx.credential("auth").await?;
            let ty = orcheo_vault::types::get(&cred.kind).ok_or_else(|| {
                NodeError::new(
                    "credential",
                    format!("credential `{}` has an unknown type", cred.name),
                )
            })?;
            let auth = ty.http_auth(&cred.data);
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in &auth.query {
                    q.append_pair(k, v.as_str());
                }
            }
            auth_headers = auth
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().to_string()))
                .collect();
        }
        let mut req = client
            .request(method, url)
            .map_err(|e| NodeError::new("http_refused", format!("node `{node}`: {e}")))?
            .timeout(Duration::from_millis(c.timeout_ms.max(1)));
        for (k, v) in &c.headers {
            req = req.header(k.as_str(), text(v));
        }
        for (k, v) in auth_headers {
            req = req.header(k, v);
        }
        if let Some(j) = &c.json {
            req = req.json(j);
        } else if let Some(b) = c.body {
            req = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    c.content_type.as_deref().unwrap_or("text/plain"),
                )
                .body(b);
        }
        let res = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timeout"
            } else {
                "http_connection"
            };
            NodeError::transient(
                kind,
                format!("node `{node}`: request failed: {}", describe(&e)),
            )
        })?;
        let status = res.status();
        let mut headers = Map::new();
        for (k, v) in res.headers() {
            if let Ok(v) = v.to_str() {
                headers.insert(k.as_str().to_string(), Value::String(v.to_string()));
            }
        }
        let mut bytes = Vec::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                NodeError::transient(
                    "http_connection",
                    format!("node `{node}`: reading the response: {}", describe(&e)),
                )
            })?;
            if bytes.len() + chunk.len() > c.max_response_bytes {
                return Err(NodeError::new(
                    "http_too_large",
                    format!(
                        "node `{node}`: the response is larger than max_response_bytes ({})",
                        c.max_response_bytes
                    ),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = match c.response {
            ResponseFormat::Text => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            ResponseFormat::Json => serde_json::from_slice(&bytes).map_err(|e| {
                NodeError::new(
                    "http_body",
                    format!("node `{node}`: the response is not JSON: {e}"),
                )
            })?,
            ResponseFormat::Auto => serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        };
        if c.fail_on_status && !status.is_success() {
            let (kind, retry) = match status.as_u16() {
                429 => ("http_429", true),
                500..=599 => ("http_5xx", true),
                _ => ("http_4xx", false),
            };
            let snippet: String = match &body {
                Value::String(s) => s.chars().take(300).collect(),
                other => other.to_string().chars().take(300).collect(),
            };
            let mut e = NodeError::new(
                kind,
                format!("node `{node}`: the server answered {status}: {snippet}"),
            );
            e.retryable = retry;
            e.details = Some(Box::new(json!({"status": status.as_u16(), "body": body})));
            return Err(e);
        }
        Ok(
            NodeOutput::output(
                json!({"status": status.as_u16(), "headers": headers, "body": body}),
            )
            .into(),
        )
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
