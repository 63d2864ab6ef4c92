//! The HTTP Request node: requests through the SSRF-guarded client, with an optional
//! credential from the vault applied as its type says (bearer, basic, API key header or query,
//! custom headers, OAuth2, service templates). JSON, form, multipart and raw bodies; retries on
//! connection errors, 429 and 5xx honouring `Retry-After`; a redirect policy; JSON, text or
//! base64 responses with a size cap; pagination by next link, cursor or page number. Non-2xx
//! answers fail with an error kind that retry policies can name: `http_429`, `http_5xx`,
//! `http_4xx`.

use crate::net::{describe, GuardedClient};
use async_trait::async_trait;
use base64::Engine as _;
use futures::StreamExt;
use orcheo_core::node::{Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Sends HTTP requests.
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
        Self {
            client: GuardedClient::from_allowlist(&allow),
        }
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
    /// Bytes, as base64 text.
    Bytes,
}

/// One part of a multipart body.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// The field name.
    pub name: String,
    /// A text value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A file's content, base64 (with `filename`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// The file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The part's content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// How to fetch further pages.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// Follow the `Link: <…>; rel="next"` header, or the URL a jq program finds in the body.
    NextLink {
        /// jq program giving the next page's URL from the body (default: the Link header).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_url: Option<String>,
        /// jq program giving a page's items (default: the body when it is a list).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        items: Option<String>,
        /// Most pages (default 10).
        #[serde(default = "ten")]
        max_pages: u32,
    },
    /// Send the cursor a jq program finds in each body as a query parameter.
    Cursor {
        /// jq program giving the next cursor (null or empty ends).
        cursor: String,
        /// The query parameter carrying it.
        param: String,
        /// jq program giving a page's items.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        items: Option<String>,
        /// Most pages (default 10).
        #[serde(default = "ten")]
        max_pages: u32,
    },
    /// Count pages in a query parameter until one has no items.
    Page {
        /// The query parameter (e.g. `page`).
        param: String,
        /// The first page's number (default 1).
        #[serde(default = "one")]
        start: i64,
        /// jq program giving a page's items.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        items: Option<String>,
        /// Most pages (default 10).
        #[serde(default = "ten")]
        max_pages: u32,
    },
}

fn ten() -> u32 {
    10
}
fn one() -> i64 {
    1
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
    /// A form body (`application/x-www-form-urlencoded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<Map<String, Value>>,
    /// A multipart body (`multipart/form-data`): text fields and base64 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<Vec<Part>>,
    /// A raw text body (with `content_type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A raw binary body, base64 (with `content_type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The raw body's content type (default `text/plain`, or `application/octet-stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Milliseconds before one attempt fails (default 30000).
    #[serde(default = "thirty_seconds")]
    pub timeout_ms: u64,
    /// Extra attempts after a connection error, a timeout, `429` or `5xx` (default 2; 0 turns
    /// them off). `Retry-After` is honoured.
    #[serde(default = "two")]
    pub retries: u32,
    /// The longest wait between attempts, in milliseconds (default 30000); a longer
    /// `Retry-After` fails at once.
    #[serde(default = "thirty_seconds")]
    pub max_retry_wait_ms: u64,
    /// Follow redirects (default true, at most 10, each hop checked against the allowlist).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// `auto` (default), `json`, `text` or `bytes` (base64).
    #[serde(default)]
    pub response: ResponseFormat,
    /// Largest accepted response in bytes (default 10 MiB).
    #[serde(default = "ten_mib")]
    pub max_response_bytes: usize,
    /// Fail on a non-2xx status (default true); false returns it as output.
    #[serde(default = "yes")]
    pub fail_on_status: bool,
    /// Fetch further pages and collect their items into `items`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

fn get() -> String {
    "GET".into()
}
fn thirty_seconds() -> u64 {
    30_000
}
fn two() -> u32 {
    2
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
    /// The status code (of the last page).
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Map<String, Value>,
    /// The body: JSON, text, or base64 bytes.
    pub body: Value,
    /// With pagination: every page's items, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Value>>,
    /// With pagination: pages fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
}

/// One response, read.
struct Page {
    status: reqwest::StatusCode,
    headers: Map<String, Value>,
    body: Value,
}

#[async_trait]
impl Node for HttpRequest {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<HttpRequestConfig, HttpRequestOutput>(
            "http_request",
            "HTTP Request",
            "integrations",
            "Sends an HTTP request (JSON, form, multipart or raw body), retries connection errors, 429 and 5xx honouring Retry-After, and can follow pagination; a credential from the vault goes in the `auth` slot. Private and internal addresses need the operator's allowlist.",
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
        .example(
            "Collect every page of a cursor-paginated list",
            json!({ "url": "https://api.example.com/customers", "query": {"limit": 100},
                    "pagination": {"mode": "cursor", "cursor": ".next_cursor", "param": "cursor", "items": ".data", "max_pages": 50} }),
        )
    }

    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: HttpRequestConfig = ctx.config_as()?;
        let node = ctx.node_id.to_string();
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
        let bodies = [
            c.json.is_some(),
            c.form.is_some(),
            c.multipart.is_some(),
            c.body.is_some(),
            c.body_base64.is_some(),
        ];
        if bodies.iter().filter(|b| **b).count() > 1 {
            return Err(NodeError::config(format!(
                "node `{node}`: give one body: json, form, multipart, body or body_base64"
            )));
        }
        let mut url = reqwest::Url::parse(&c.url).map_err(|e| {
            NodeError::config(format!("node `{node}`: url `{}` is not valid: {e}", c.url))
        })?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &c.query {
                q.append_pair(k, &text(v));
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut auth = orcheo_vault::HttpAuth::default();
        if ctx.credential_slots.iter().any(|(s, _)| s == "auth") {
            let cred = ctx.credential("auth").await?;
            let ty = orcheo_vault::types::get(&cred.kind).ok_or_else(|| {
                NodeError::new(
                    "credential",
                    format!("credential `{}` has an unknown type", cred.name),
                )
            })?;
            auth = ty.http_auth(&cred.data);
        }
        let req = Request {
            client,
            c: &c,
            method,
            auth: &auth,
            node: &node,
        };
        let Some(p) = &c.pagination else {
            let page = req.send(url, ctx).await?;
            return Ok(NodeOutput::output(
                json!({"status": page.status.as_u16(), "headers": page.headers, "body": page.body}),
            )
            .into());
        };
        let (max, items_prog) = match p {
            Pagination::NextLink {
                max_pages, items, ..
            }
            | Pagination::Cursor {
                max_pages, items, ..
            }
            | Pagination::Page {
                max_pages, items, ..
            } => (*max_pages, items.clone()),
        };
        if !(1..=1000).contains(&max) {
            return Err(NodeError::config(format!(
                "node `{node}`: pagination.max_pages must be 1–1000"
            )));
        }
        let mut collected = Vec::new();
        let mut next = Some(match p {
            Pagination::Page { param, start, .. } => with_param(&url, param, &start.to_string()),
            _ => url.clone(),
        });
        let mut pages = 0;
        let mut last = None;
        while let Some(u) = next.take() {
            if pages >= max {
                break;
            }
            let page = req.send(u.clone(), ctx).await?;
            pages += 1;
            let items = page_items(&page.body, items_prog.as_deref()).map_err(|e| {
                NodeError::new(
                    "http_pagination",
                    format!("node `{node}`: page {pages}: {e}"),
                )
            })?;
            let empty = items.is_empty();
            collected.extend(items);
            next = match p {
                Pagination::NextLink { next_url, .. } => {
                    let link = match next_url {
                        Some(prog) => jq_text(prog, &page.body).map_err(|e| {
                            NodeError::new(
                                "http_pagination",
                                format!("node `{node}`: next_url: {e}"),
                            )
                        })?,
                        None => page
                            .headers
                            .get("link")
                            .and_then(Value::as_str)
                            .and_then(next_link),
                    };
                    match link {
                        Some(l) => Some(u.join(&l).map_err(|e| {
                            NodeError::new(
                                "http_pagination",
                                format!("node `{node}`: next link `{l}`: {e}"),
                            )
                        })?),
                        None => None,
                    }
                }
                Pagination::Cursor { cursor, param, .. } => jq_text(cursor, &page.body)
                    .map_err(|e| {
                        NodeError::new("http_pagination", format!("node `{node}`: cursor: {e}"))
                    })?
                    .map(|cur| with_param(&url, param, &cur)),
                Pagination::Page { param, start, .. } => (!empty)
                    .then(|| with_param(&url, param, &(start + i64::from(pages)).to_string())),
            };
            last = Some(page);
        }
        let last = last.ok_or_else(|| {
            NodeError::new("http_pagination", format!("node `{node}`: no page fetched"))
        })?;
        Ok(NodeOutput::output(json!({
            "status": last.status.as_u16(), "headers": last.headers, "body": last.body,
            "items": collected, "pages": pages
        }))
        .into())
    }
}

/// What one request needs, shared by every page.
struct Request<'a> {
    client: &'a GuardedClient,
    c: &'a HttpRequestConfig,
    method: reqwest::Method,
    auth: &'a orcheo_vault::HttpAuth,
    node: &'a str,
}

impl Request<'_> {
    /// Sends with retries; returns the read response or the node's error.
    async fn send(&self, url: reqwest::Url, ctx: &NodeContext) -> Result<Page, NodeError> {
        let node = self.node;
        let mut attempt = 0;
        loop {
            let outcome = self.attempt(url.clone()).await;
            let wait = match &outcome {
                Ok(p) if p.status.as_u16() == 429 || p.status.is_server_error() => {
                    Some(retry_after(&p.headers))
                }
                Ok(_) => None,
                Err(e) if e.retryable => Some(None),
                Err(_) => None,
            };
            let Some(hint) = wait.filter(|_| attempt < self.c.retries) else {
                return match outcome {
                    Ok(p) => self.finish(p),
                    Err(e) => Err(e),
                };
            };
            attempt += 1;
            let backoff = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(10)));
            let d = hint.unwrap_or(backoff);
            if d > Duration::from_millis(self.c.max_retry_wait_ms) {
                let why = format!(
                    " (Retry-After asks for {} s, more than max_retry_wait_ms)",
                    d.as_secs()
                );
                return match outcome.and_then(|p| self.finish(p)) {
                    Ok(p) => Ok(p),
                    Err(mut e) => {
                        e.message.push_str(&why);
                        Err(e)
                    }
                };
            }
            ctx.log(
                orcheo_core::event::LogLevel::Warn,
                format!(
                    "node `{node}`: retrying in {} ms (attempt {} of {})",
                    d.as_millis(),
                    attempt + 1,
                    self.c.retries + 1
                ),
            );
            ctx.sleep(d).await?;
        }
    }

    /// One attempt: send and read (statuses are judged by the caller).
    async fn attempt(&self, mut url: reqwest::Url) -> Result<Page, NodeError> {
        let (c, node) = (self.c, self.node);
        if !self.auth.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.auth.query {
                q.append_pair(k, v.as_str());
            }
        }
        let mut req = if c.follow_redirects {
            self.client.request(self.method.clone(), url)
        } else {
            self.client.request_no_redirect(self.method.clone(), url)
        }
        .map_err(|e| NodeError::new("http_refused", format!("node `{node}`: {e}")))?
        .timeout(Duration::from_millis(c.timeout_ms.max(1)));
        for (k, v) in &c.headers {
            req = req.header(k.as_str(), text(v));
        }
        for (k, v) in &self.auth.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(j) = &c.json {
            req = req.json(j);
        } else if let Some(f) = &c.form {
            let pairs: Vec<(String, String)> =
                f.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            req = req.form(&pairs);
        } else if let Some(parts) = &c.multipart {
            let mut form = reqwest::multipart::Form::new();
            for p in parts {
                let part = match (&p.value, &p.base64) {
                    (Some(v), None) => reqwest::multipart::Part::text(v.clone()),
                    (None, Some(b)) => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .map_err(|e| {
                                NodeError::config(format!(
                                    "node `{node}`: multipart part `{}`: base64: {e}",
                                    p.name
                                ))
                            })?;
                        let mut part = reqwest::multipart::Part::bytes(bytes);
                        if let Some(f) = &p.filename {
                            part = part.file_name(f.clone());
                        }
                        part
                    }
                    _ => {
                        return Err(NodeError::config(format!(
                            "node `{node}`: multipart part `{}` needs `value` or `base64`",
                            p.name
                        )))
                    }
                };
                let part = match &p.content_type {
                    Some(t) => part.mime_str(t).map_err(|e| {
                        NodeError::config(format!(
                            "node `{node}`: multipart part `{}`: {e}",
                            p.name
                        ))
                    })?,
                    None => part,
                };
                form = form.part(p.name.clone(), part);
            }
            req = req.multipart(form);
        } else if let Some(b) = &c.body {
            req = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    c.content_type.as_deref().unwrap_or("text/plain"),
                )
                .body(b.clone());
        } else if let Some(b) = &c.body_base64 {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| NodeError::config(format!("node `{node}`: body_base64: {e}")))?;
            req = req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    c.content_type
                        .as_deref()
                        .unwrap_or("application/octet-stream"),
                )
                .body(bytes);
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
            ResponseFormat::Bytes => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))
            }
            ResponseFormat::Json => serde_json::from_slice(&bytes).map_err(|e| {
                NodeError::new(
                    "http_body",
                    format!("node `{node}`: the response is not JSON: {e}"),
                )
            })?,
            ResponseFormat::Auto => serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        };
        Ok(Page {
            status,
            headers,
            body,
        })
    }

    /// A response after the last attempt: a non-2xx status fails unless told otherwise.
    fn finish(&self, page: Page) -> Result<Page, NodeError> {
        let status = page.status;
        if !self.c.fail_on_status || status.is_success() || status.is_redirection() {
            return Ok(page);
        }
        let (kind, retry) = match status.as_u16() {
            429 => ("http_429", true),
            500..=599 => ("http_5xx", true),
            _ => ("http_4xx", false),
        };
        let snippet: String = match &page.body {
            Value::String(s) => s.chars().take(300).collect(),
            other => other.to_string().chars().take(300).collect(),
        };
        let mut e = NodeError::new(
            kind,
            format!(
                "node `{}`: the server answered {status}: {snippet}",
                self.node
            ),
        );
        e.retryable = retry;
        e.details = Some(Box::new(
            json!({"status": status.as_u16(), "body": page.body}),
        ));
        Err(e)
    }
}

/// `Retry-After` as a wait: seconds, or an HTTP date.
fn retry_after(headers: &Map<String, Value>) -> Option<Duration> {
    let v = headers.get("retry-after")?.as_str()?.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let rel_next = params.split(';').any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("rel=\"next\"")
                || p.trim().eq_ignore_ascii_case("rel=next")
        });
        rel_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// A page's items: a jq program's outputs (a single list output is spread), or the body when
/// it is a list.
fn page_items(body: &Value, prog: Option<&str>) -> Result<Vec<Value>, String> {
    match prog {
        None => Ok(match body {
            Value::Array(a) => a.clone(),
            Value::Null => Vec::new(),
            other => vec![other.clone()],
        }),
        Some(p) => {
            let out = orcheo_core::jq::run(p, body).map_err(|e| format!("items: {e}"))?;
            Ok(match out.as_slice() {
                [Value::Array(a)] => a.clone(),
                [Value::Null] => Vec::new(),
                _ => out,
            })
        }
    }
}

/// A jq program's single output as text (`None` for null, empty or false).
fn jq_text(prog: &str, body: &Value) -> Result<Option<String>, String> {
    Ok(
        match orcheo_core::jq::run_one(prog, body).map_err(|e| e.to_string())? {
            Value::Null | Value::Bool(false) => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        },
    )
}

/// `url` with `param` set to `value` (replacing an earlier value).
fn with_param(url: &reqwest::Url, param: &str, value: &str) -> reqwest::Url {
    let mut u = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        q.append_pair(param, value);
    }
    u
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        let l = r#"<https://api.example.com/items?page=2>; rel="next", <https://api.example.com/items?page=9>; rel="last""#;
        assert_eq!(
            next_link(l).as_deref(),
            Some("https://api.example.com/items?page=2")
        );
        assert_eq!(next_link(r#"<https://x/1>; rel="prev""#), None);
        assert_eq!(
            next_link("<https://x/2>; rel=next").as_deref(),
            Some("https://x/2")
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = Map::new();
        h.insert("retry-after".into(), json!("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        h.insert("retry-after".into(), json!(past));
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after".into(), json!("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn params_replace_earlier_values() {
        let u = reqwest::Url::parse("https://x/items?limit=5&page=1").unwrap();
        assert_eq!(
            with_param(&u, "page", "2").as_str(),
            "https://x/items?limit=5&page=2"
        );
    }

    #[test]
    fn page_items_spread_lists() {
        let body = json!({"data": [1, 2], "next": null});
        assert_eq!(
            page_items(&body, Some(".data")).unwrap(),
            vec![json!(1), json!(2)]
        );
        assert_eq!(page_items(&json!([3]), None).unwrap(), vec![json!(3)]);
        assert!(page_items(&json!({"data": null}), Some(".data"))
            .unwrap()
            .is_empty());
    }
}
