//! Credential types: a JSON Schema per type, which fields are secret, how a node applies the
//! credential to an HTTP request, and how the credential can be tested. The catalog covers the
//! generic kinds (API key, bearer, basic, custom headers, OAuth2) and service templates.
//!
//! Templates (`{{field}}`, dotted paths reach nested objects) are filled from the credential's
//! validated data; a header, query parameter or test whose placeholders are not all set is skipped.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::encode;
use crate::mask::{secret_strings, Masker};

/// JSON Schema dialect of every credential schema.
pub const SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Which group a type belongs to, for listing in the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Category {
    /// Works with any HTTP API (API key, bearer, basic, custom headers).
    #[serde(rename = "generic")]
    Generic,
    /// OAuth 2.0 flows whose tokens the server obtains and refreshes.
    #[serde(rename = "oauth2")]
    OAuth2,
    /// A template for one service, with its test built in.
    #[serde(rename = "service")]
    Service,
}

impl Category {
    /// The wire name: `generic`, `oauth2` or `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Generic => "generic",
            Category::OAuth2 => "oauth2",
            Category::Service => "service",
        }
    }
}

/// Applies a rule only when a field has a given value (e.g. `placement` is `query`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct When {
    /// Dotted path of the field to look at.
    pub field: &'static str,
    /// The value it must have.
    pub equals: &'static str,
}

/// Where a credential goes on an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A header; both name and value are templates.
    Header {
        /// Header name template.
        name: &'static str,
        /// Header value template.
        value: &'static str,
    },
    /// A query parameter; both name and value are templates.
    Query {
        /// Parameter name template.
        name: &'static str,
        /// Parameter value template.
        value: &'static str,
    },
    /// `Authorization: Basic base64(username:password)`; the password may be unset (empty).
    Basic {
        /// Username template.
        username: &'static str,
        /// Password template.
        password: &'static str,
    },
    /// Every entry of an object field becomes a header.
    HeaderMap {
        /// Dotted path of the object field.
        field: &'static str,
    },
}

/// One way the credential is applied to an HTTP request, optionally conditional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ApplyRule {
    /// Only when this field has this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// What to set.
    pub target: Target,
}

/// What a test request's response must show for the credential to count as working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expect {
    /// Any 2xx status.
    Success,
    /// Anything but 401 or 403 (for generic endpoints that may 404 with valid credentials).
    NotUnauthorized,
    /// A 2xx status and a JSON body whose value at `pointer` is `true` (Slack, Telegram).
    JsonTrue {
        /// JSON pointer into the response body.
        pointer: &'static str,
    },
}

/// One HTTP request that checks a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HttpTest {
    /// HTTP method.
    pub method: &'static str,
    /// URL template, e.g. `{{base_url}}/models`.
    pub url: &'static str,
    /// Extra headers (templates) besides the credential's own [`ApplyRule`]s.
    pub headers: &'static [(&'static str, &'static str)],
    /// Fields that must be set for this request to be the one used.
    pub requires: &'static [&'static str],
    /// What counts as success.
    pub expect: Expect,
}

/// How a credential can be tested before it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TestKind {
    /// No generic test is possible (the target service is unknown).
    None,
    /// The first request whose `requires` fields are all set.
    Http {
        /// Candidate requests, in order of preference.
        requests: Vec<HttpTest>,
    },
    /// Obtain a token from `token_url` for the grant type.
    OAuth2,
    /// Connect to PostgreSQL and run `SELECT 1`.
    Postgres,
    /// Connect to the SMTP server and authenticate.
    Smtp,
    /// Connect to MongoDB and run `ping`.
    Mongo,
}

/// One credential type: its schema, its secret fields, and how it is applied and tested.
#[derive(Clone, Serialize)]
pub struct CredentialType {
    /// Stable id stored with each credential (`openai`, `basic`, ...).
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// One sentence on what it is for.
    pub description: &'static str,
    /// `generic`, `oauth2` or `service`.
    pub category: Category,
    /// JSON Schema (draft 2020-12) of the credential's data; secret fields carry
    /// `"format": "password"`, `"writeOnly": true` and `"x-secret": true`.
    pub schema: Value,
    /// Dotted paths of the fields whose values are secret (never shown, always masked).
    pub secret_fields: &'static [&'static str],
    /// How to test it.
    pub test: TestKind,
    /// How a node applies it to an HTTP request.
    pub apply: Vec<ApplyRule>,
    #[serde(skip)]
    validator: Option<Arc<jsonschema::Validator>>,
}

impl fmt::Debug for CredentialType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialType")
            .field("id", &self.id)
            .field("category", &self.category)
            .field("secret_fields", &self.secret_fields)
            .finish_non_exhaustive()
    }
}

/// One thing wrong with a credential's data: where (JSON pointer) and what, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// JSON pointer to the field (`""` is the whole object).
    pub path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Why credential data was refused; messages name fields and rules, never secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No credential type has this id.
    #[error("unknown credential type `{type_id}`; known types: {known}")]
    UnknownType {
        /// The id asked for.
        type_id: String,
        /// Every known id, comma-separated.
        known: String,
    },
    /// The data does not match the type's schema.
    #[error("invalid {type_id} credential: {}", join_problems(.problems))]
    Invalid {
        /// The credential type.
        type_id: String,
        /// Every problem found, in document order.
        problems: Vec<Problem>,
    },
    /// The type's own schema does not compile (a bug in this crate).
    #[error("credential type `{type_id}` has a broken schema; this is a bug in Orcheo")]
    BrokenSchema {
        /// The credential type.
        type_id: String,
    },
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Headers and query parameters a node adds to an HTTP request; `Debug` hides the values.
#[derive(Default, Clone)]
pub struct HttpAuth {
    /// Header name and value.
    pub headers: Vec<(String, Zeroizing<String>)>,
    /// Query parameter name and value.
    pub query: Vec<(String, Zeroizing<String>)>,
}

impl fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[(String, Zeroizing<String>)]| -> Vec<String> {
            v.iter().map(|(n, _)| format!("{n}: ***")).collect()
        };
        f.debug_struct("HttpAuth")
            .field("headers", &names(&self.headers))
            .field("query", &names(&self.query))
            .finish()
    }
}

/// A concrete test request built from a credential's data; the URL may hold a secret (Telegram).
#[derive(Clone)]
pub struct TestRequest {
    /// HTTP method.
    pub method: &'static str,
    /// Full URL.
    pub url: Zeroizing<String>,
    /// Credential headers followed by the test's extra headers.
    pub headers: Vec<(String, Zeroizing<String>)>,
    /// Query parameters.
    pub query: Vec<(String, Zeroizing<String>)>,
    /// What counts as success.
    pub expect: Expect,
}

impl fmt::Debug for TestRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRequest")
            .field("method", &self.method)
            .field("url", &"<may hold a secret>")
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl CredentialType {
    /// Checks `data` against the schema after filling in defaults; returns the completed data.
    pub fn validate(&self, data: &Value) -> Result<Value, ValidationError> {
        let Some(validator) = &self.validator else {
            return Err(ValidationError::BrokenSchema {
                type_id: self.id.to_string(),
            });
        };
        let mut data = data.clone();
        apply_defaults(&self.schema, &mut data);
        let mut problems: Vec<Problem> = Vec::new();
        for err in validator.iter_errors(&data) {
            for p in describe(&err, &self.schema) {
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
        }
        if problems.is_empty() {
            Ok(data)
        } else {
            Err(ValidationError::Invalid {
                type_id: self.id.to_string(),
                problems,
            })
        }
    }

    /// The data with every secret field replaced by `{"set": true}` (or `false` when empty); objects
    /// under a secret field keep their keys (header names) with each value replaced.
    pub fn public_view(&self, data: &Value) -> Value {
        let mut out = data.clone();
        for field in self.secret_fields {
            let mut node = Some(&mut out);
            for part in field.split('.') {
                node = node.and_then(|n| n.get_mut(part));
            }
            if let Some(node) = node {
                redact(node);
            }
        }
        out
    }

    /// The secret strings in `data`, for a [`Masker`].
    pub fn secret_strings(&self, data: &Value) -> Vec<Zeroizing<String>> {
        secret_strings(data, self.secret_fields)
    }

    /// A masker for this credential's secrets.
    pub fn masker(&self, data: &Value) -> Masker {
        Masker::new(self.secret_strings(data))
    }

    /// The headers and query parameters to add to an HTTP request (after [`Self::validate`]).
    pub fn http_auth(&self, data: &Value) -> HttpAuth {
        let mut auth = HttpAuth::default();
        for rule in &self.apply {
            if let Some(when) = rule.when {
                if lookup(data, when.field).and_then(Value::as_str) != Some(when.equals) {
                    continue;
                }
            }
            match rule.target {
                Target::Header { name, value } => {
                    if let (Some(n), Some(v)) = (render(name, data), render(value, data)) {
                        auth.headers.push((n.to_string(), v));
                    }
                }
                Target::Query { name, value } => {
                    if let (Some(n), Some(v)) = (render(name, data), render(value, data)) {
                        auth.query.push((n.to_string(), v));
                    }
                }
                Target::Basic { username, password } => {
                    if let Some(user) = render(username, data) {
                        let pass = render(password, data).unwrap_or_default();
                        let pair = Zeroizing::new(format!("{}:{}", user.as_str(), pass.as_str()));
                        auth.headers.push((
                            "Authorization".into(),
                            Zeroizing::new(format!("Basic {}", encode::b64(pair.as_bytes()))),
                        ));
                    }
                }
                Target::HeaderMap { field } => {
                    if let Some(Value::Object(map)) = lookup(data, field) {
                        for (name, value) in map {
                            if let Some(v) = scalar_text(value) {
                                auth.headers.push((name.clone(), v));
                            }
                        }
                    }
                }
            }
        }
        auth
    }

    /// The request that tests this credential, when the type has an HTTP test whose fields are set.
    pub fn test_request(&self, data: &Value) -> Option<TestRequest> {
        let TestKind::Http { requests } = &self.test else {
            return None;
        };
        let test = requests.iter().find(|t| {
            t.requires
                .iter()
                .all(|f| lookup(data, f).is_some_and(is_set))
        })?;
        let url = render(test.url, data)?;
        let auth = self.http_auth(data);
        let mut headers = auth.headers;
        for (name, value) in test.headers {
            if let (Some(n), Some(v)) = (render(name, data), render(value, data)) {
                headers.push((n.to_string(), v));
            }
        }
        Some(TestRequest {
            method: test.method,
            url,
            headers,
            query: auth.query,
            expect: test.expect,
        })
    }
}

/// Every credential type, built once.
pub fn catalog() -> &'static [CredentialType] {
    static CATALOG: OnceLock<Vec<CredentialType>> = OnceLock::new();
    CATALOG.get_or_init(build_catalog)
}

/// The credential type with this id.
pub fn get(type_id: &str) -> Option<&'static CredentialType> {
    catalog().iter().find(|t| t.id == type_id)
}

/// Validates `data` as a credential of type `type_id`; returns it with defaults filled in.
pub fn validate(type_id: &str, data: &Value) -> Result<Value, ValidationError> {
    match get(type_id) {
        Some(t) => t.validate(data),
        None => Err(ValidationError::UnknownType {
            type_id: type_id.to_string(),
            known: catalog()
                .iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The data with secret fields replaced by markers (see [`CredentialType::public_view`]); data of
/// an unknown type is hidden entirely.
pub fn public_view(type_id: &str, data: &Value) -> Value {
    match get(type_id) {
        Some(t) => t.public_view(data),
        None => json!({}),
    }
}

fn redact(node: &mut Value) {
    match node {
        Value::Object(map) => map.values_mut().for_each(redact),
        Value::Array(items) => items.iter_mut().for_each(redact),
        other => {
            let set = is_set(other);
            *other = json!({ "set": set });
        }
    }
}

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(data, |node, part| node.get(part))
}

fn scalar_text(v: &Value) -> Option<Zeroizing<String>> {
    match v {
        Value::String(s) if !s.is_empty() => Some(Zeroizing::new(s.clone())),
        Value::Number(n) => Some(Zeroizing::new(n.to_string())),
        Value::Bool(b) => Some(Zeroizing::new(b.to_string())),
        _ => None,
    }
}

/// Fills `{{path}}` placeholders from `data`; `None` when any is unset. A value ending in `/`
/// followed by `/` in the template loses its own slash, so `base_url` may end with one.
fn render(template: &str, data: &Value) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(template.len()));
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let path = rest[start + 2..start + 2 + len].trim();
        let value = scalar_text(lookup(data, path)?)?;
        rest = &rest[start + 2 + len + 2..];
        let value = if rest.starts_with('/') {
            value.trim_end_matches('/')
        } else {
            value.as_str()
        };
        out.push_str(value);
    }
    out.push_str(rest);
    Some(out)
}

/// Inserts each missing property's `default`, recursing into objects that are present.
fn apply_defaults(schema: &Value, data: &mut Value) {
    let (Some(props), Value::Object(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        &mut *data,
    ) else {
        return;
    };
    for (name, prop) in props {
        if !obj.contains_key(name) {
            if let Some(default) = prop.get("default") {
                obj.insert(name.clone(), default.clone());
            }
        }
        if let Some(child) = obj.get_mut(name) {
            apply_defaults(prop, child);
        }
    }
}

/// Plain-language problems for one schema error, without the offending value.
fn describe(err: &jsonschema::ValidationError<'_>, schema: &Value) -> Vec<Problem> {
    use jsonschema::error::ValidationErrorKind as K;
    let path = err.instance_path().as_str().to_string();
    let prop = schema_at(schema, &path);
    let one = |message: String| {
        vec![Problem {
            path: path.clone(),
            message,
        }]
    };
    match err.kind() {
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let field_schema = prop
                .and_then(|p| p.get("properties"))
                .and_then(|p| p.get(name));
            let what = field_schema
                .and_then(|f| f.get("description"))
                .and_then(Value::as_str)
                .map(|d| format!(" — {}", d.trim_end_matches('.')))
                .unwrap_or_default();
            vec![Problem {
                path: format!("{path}/{name}"),
                message: format!("is required{what}"),
            }]
        }
        K::AdditionalProperties { unexpected } => {
            let allowed: Vec<String> = prop
                .and_then(|p| p.get("properties"))
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            unexpected
                .iter()
                .map(|name| Problem {
                    path: format!("{path}/{name}"),
                    message: format!(
                        "is not a field of this credential type; allowed fields: {}",
                        allowed.join(", ")
                    ),
                })
                .collect()
        }
        K::Type { kind } => one(format!("must be {}", type_text(kind))),
        K::Enum { options } => one(format!("must be one of {options}")),
        K::Constant { expected_value } => one(format!("must be {expected_value}")),
        K::Pattern { pattern } => {
            let hint = prop
                .and_then(|p| p.get("x-hint"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("it must match {pattern}"));
            one(format!("does not have the expected form: {hint}"))
        }
        K::Format { format } => one(match format.as_str() {
            "uri" => "must be an absolute URL such as https://api.example.com".into(),
            "date-time" => "must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z".into(),
            other => format!("is not a valid {other}"),
        }),
        K::MinLength { limit: 1 } => one("must not be empty".into()),
        K::MinLength { limit } => one(format!("must be at least {limit} characters")),
        K::MaxLength { limit } => one(format!("must be at most {limit} characters")),
        K::Minimum { limit } => one(format!("must be at least {limit}")),
        K::Maximum { limit } => one(format!("must be at most {limit}")),
        K::MinProperties { limit: 1 } => one("must not be empty".into()),
        K::MinProperties { limit } => one(format!("must have at least {limit} entries")),
        K::MinItems { limit } => one(format!("must have at least {limit} items")),
        K::PropertyNames { error } => {
            let hint = prop
                .and_then(|p| p.get("propertyNames"))
                .and_then(|p| p.get("x-hint"))
                .and_then(Value::as_str)
                .map(|h| format!("each key must be {h}"))
                .unwrap_or_else(|| format!("its keys break the `{}` rule", error.kind().keyword()));
            one(format!("has a key that is not allowed: {hint}"))
        }
        K::AnyOf { context } | K::OneOfNotValid { context } => {
            let alternatives: Vec<String> = context
                .iter()
                .map(|alt| {
                    let parts: Vec<String> = alt
                        .iter()
                        .flat_map(|e| describe(e, schema))
                        .map(|p| p.to_string())
                        .collect();
                    format!("({})", parts.join("; "))
                })
                .collect();
            let hint = prop
                .and_then(|p| p.get("x-hint"))
                .and_then(Value::as_str)
                .map(|h| format!("{h}: "))
                .unwrap_or_default();
            one(format!(
                "{hint}fix one of these alternatives: {}",
                alternatives.join(" or ")
            ))
        }
        other => one(format!(
            "does not satisfy the schema's `{}` rule",
            other.keyword()
        )),
    }
}

fn type_text(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    match kind {
        TypeKind::Single(t) => article(&t.to_string()),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| article(&t.to_string()))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn article(t: &str) -> String {
    match t {
        "integer" | "object" | "array" => format!("an {t}"),
        "null" => "null".into(),
        other => format!("a {other}"),
    }
}

/// The subschema for the value at a JSON pointer, following `properties` and
/// `additionalProperties` (enough for this catalog's schemas).
fn schema_at<'a>(schema: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut node = schema;
    for raw in pointer.split('/').skip(1) {
        let part = raw.replace("~1", "/").replace("~0", "~");
        node = node
            .get("properties")
            .and_then(|p| p.get(&part))
            .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?;
    }
    Some(node)
}

// ---------------------------------------------------------------------------------------------
// Catalog

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn secret(description: &str) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "description": description,
        "format": "password",
        "writeOnly": true,
        "x-secret": true,
    })
}

fn secret_patterned(description: &str, pattern: &str, hint: &str) -> Value {
    let mut s = secret(description);
    s["pattern"] = json!(pattern);
    s["x-hint"] = json!(hint);
    s
}

fn url(description: &str, default: Option<&str>) -> Value {
    let mut s = json!({
        "type": "string",
        "format": "uri",
        "pattern": "^https?://",
        "x-hint": "an http:// or https:// URL",
        "description": description,
    });
    if let Some(d) = default {
        s["default"] = json!(d);
    }
    s
}

fn base_url(default: &str) -> Value {
    url(
        "API base URL; change it to reach a proxy, a compatible service or a local test server",
        Some(default),
    )
}

fn port(default: u16) -> Value {
    json!({
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
        "default": default,
        "description": "TCP port",
    })
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn header(name: &'static str, value: &'static str) -> ApplyRule {
    ApplyRule {
        when: None,
        target: Target::Header { name, value },
    }
}

fn http_test(method: &'static str, url: &'static str, expect: Expect) -> HttpTest {
    HttpTest {
        method,
        url,
        headers: &[],
        requires: &[],
        expect,
    }
}

fn build_catalog() -> Vec<CredentialType> {
    let mut types = vec![
        CredentialType {
            id: "api_key",
            name: "API key",
            description: "A key sent in a header or query parameter of every request.",
            category: Category::Generic,
            schema: object(
                json!({
                    "key": secret("The API key"),
                    "placement": {
                        "type": "string",
                        "enum": ["header", "query"],
                        "default": "header",
                        "description": "Send the key as a header or as a query parameter",
                    },
                    "name": {
                        "type": "string",
                        "minLength": 1,
                        "default": "X-API-Key",
                        "description": "Header or query parameter name",
                    },
                }),
                &["key"],
            ),
            secret_fields: &["key"],
            test: TestKind::None,
            apply: vec![
                ApplyRule {
                    when: Some(When {
                        field: "placement",
                        equals: "header",
                    }),
                    target: Target::Header {
                        name: "{{name}}",
                        value: "{{key}}",
                    },
                },
                ApplyRule {
                    when: Some(When {
                        field: "placement",
                        equals: "query",
                    }),
                    target: Target::Query {
                        name: "{{name}}",
                        value: "{{key}}",
                    },
                },
            ],
            validator: None,
        },
        CredentialType {
            id: "bearer",
            name: "Bearer token",
            description: "A token sent as `Authorization: Bearer <token>`.",
            category: Category::Generic,
            schema: object(json!({ "token": secret("The bearer token") }), &["token"]),
            secret_fields: &["token"],
            test: TestKind::None,
            apply: vec![header("Authorization", "Bearer {{token}}")],
            validator: None,
        },
        CredentialType {
            id: "basic",
            name: "Basic auth",
            description: "A username and password sent as HTTP Basic authentication.",
            category: Category::Generic,
            schema: object(
                json!({
                    "username": { "type": "string", "minLength": 1, "description": "User name" },
                    "password": secret("Password (leave unset when the service expects none)"),
                }),
                &["username"],
            ),
            secret_fields: &["password"],
            test: TestKind::None,
            apply: vec![ApplyRule {
                when: None,
                target: Target::Basic {
                    username: "{{username}}",
                    password: "{{password}}",
                },
            }],
            validator: None,
        },
        CredentialType {
            id: "custom_headers",
            name: "Custom headers",
            description: "Arbitrary headers added to every request; every value is secret.",
            category: Category::Generic,
            schema: object(
                json!({
                    "headers": {
                        "type": "object",
                        "description": "Header name to value",
                        "minProperties": 1,
                        "propertyNames": {
                            "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
                            "x-hint": "a header name (letters, digits and !#$%&'*+.^_`|~-)",
                        },
                        "additionalProperties": {
                            "type": "string",
                            "format": "password",
                            "writeOnly": true,
                            "x-secret": true,
                        },
                        "writeOnly": true,
                        "x-secret": true,
                    },
                }),
                &["headers"],
            ),
            secret_fields: &["headers"],
            test: TestKind::None,
            apply: vec![ApplyRule {
                when: None,
                target: Target::HeaderMap { field: "headers" },
            }],
            validator: None,
        },
        CredentialType {
            id: "oauth2",
            name: "OAuth2",
            description:
                "OAuth 2.0: authorization code (with PKCE), client credentials or refresh \
                          token; the server obtains and refreshes the tokens.",
            category: Category::OAuth2,
            schema: {
                let mut s = object(
                    json!({
                        "grant_type": {
                            "type": "string",
                            "enum": ["authorization_code", "client_credentials", "refresh_token"],
                            "description": "How tokens are obtained",
                        },
                        "authorization_url": url("Authorization endpoint (authorization code flow)", None),
                        "token_url": url("Token endpoint", None),
                        "client_id": { "type": "string", "minLength": 1, "description": "OAuth client id" },
                        "client_secret": secret("OAuth client secret (public PKCE clients have none)"),
                        "scopes": {
                            "type": "array",
                            "items": { "type": "string", "minLength": 1 },
                            "default": [],
                            "description": "Scopes to request",
                        },
                        "use_pkce": {
                            "type": "boolean",
                            "default": true,
                            "description": "Use PKCE (S256) in the authorization code flow",
                        },
                        "audience": text("Audience parameter some providers require"),
                        "access_token": secret("Current access token; usually filled by the flow"),
                        "refresh_token": secret("Refresh token; usually filled by the flow"),
                        "expires_at": {
                            "type": "string",
                            "format": "date-time",
                            "description": "When the access token expires; filled by the flow",
                        },
                    }),
                    &["grant_type", "token_url", "client_id"],
                );
                s["allOf"] = json!([
                    {
                        "if": { "properties": { "grant_type": { "const": "authorization_code" } }, "required": ["grant_type"] },
                        "then": { "required": ["authorization_url"] },
                    },
                    {
                        "if": { "properties": { "grant_type": { "const": "client_credentials" } }, "required": ["grant_type"] },
                        "then": { "required": ["client_secret"] },
                    },
                    {
                        "if": { "properties": { "grant_type": { "const": "refresh_token" } }, "required": ["grant_type"] },
                        "then": { "required": ["refresh_token"] },
                    },
                ]);
                s
            },
            secret_fields: &["client_secret", "access_token", "refresh_token"],
            test: TestKind::OAuth2,
            apply: vec![header("Authorization", "Bearer {{access_token}}")],
            validator: None,
        },
        CredentialType {
            id: "openai",
            name: "OpenAI",
            description: "OpenAI API (or any OpenAI-compatible endpoint via base_url).",
            category: Category::Service,
            schema: object(
                json!({
                    "api_key": secret("API key (sk-...)"),
                    "organization": text("Organization id, sent as OpenAI-Organization"),
                    "project": text("Project id, sent as OpenAI-Project"),
                    "base_url": base_url("https://api.openai.com/v1"),
                }),
                &["api_key"],
            ),
            secret_fields: &["api_key"],
            test: TestKind::Http {
                requests: vec![http_test("GET", "{{base_url}}/models", Expect::Success)],
            },
            apply: vec![
                header("Authorization", "Bearer {{api_key}}"),
                header("OpenAI-Organization", "{{organization}}"),
                header("OpenAI-Project", "{{project}}"),
            ],
            validator: None,
        },
        CredentialType {
            id: "anthropic",
            name: "Anthropic",
            description: "Anthropic API (Claude).",
            category: Category::Service,
            schema: object(
                json!({
                    "api_key": secret("API key (sk-ant-...)"),
                    "anthropic_version": {
                        "type": "string",
                        "default": "2023-06-01",
                        "description": "Value of the anthropic-version header",
                    },
                    "base_url": base_url("https://api.anthropic.com"),
                }),
                &["api_key"],
            ),
            secret_fields: &["api_key"],
            test: TestKind::Http {
                requests: vec![http_test("GET", "{{base_url}}/v1/models", Expect::Success)],
            },
            apply: vec![
                header("x-api-key", "{{api_key}}"),
                header("anthropic-version", "{{anthropic_version}}"),
            ],
            validator: None,
        },
        CredentialType {
            id: "slack",
            name: "Slack",
            description:
                "A Slack app's bot token, and its signing secret to verify Slack's requests.",
            category: Category::Service,
            schema: object(
                json!({
                    "bot_token": secret_patterned(
                        "Bot (xoxb-) or user (xoxp-) OAuth token",
                        "^xox[bp]-",
                        "a Slack token starting with xoxb- or xoxp-",
                    ),
                    "signing_secret": secret("Signing secret, to verify requests from Slack"),
                    "base_url": base_url("https://slack.com/api"),
                }),
                &["bot_token"],
            ),
            secret_fields: &["bot_token", "signing_secret"],
            test: TestKind::Http {
                requests: vec![http_test(
                    "POST",
                    "{{base_url}}/auth.test",
                    Expect::JsonTrue { pointer: "/ok" },
                )],
            },
            apply: vec![header("Authorization", "Bearer {{bot_token}}")],
            validator: None,
        },
        CredentialType {
            id: "telegram",
            name: "Telegram",
            description: "A Telegram bot token from @BotFather.",
            category: Category::Service,
            schema: object(
                json!({
                    "bot_token": secret_patterned(
                        "Bot token (123456:ABC...)",
                        "^[0-9]+:[A-Za-z0-9_-]+$",
                        "a bot token of the form 123456789:AA... from @BotFather",
                    ),
                    "base_url": base_url("https://api.telegram.org"),
                }),
                &["bot_token"],
            ),
            secret_fields: &["bot_token"],
            test: TestKind::Http {
                requests: vec![http_test(
                    "GET",
                    "{{base_url}}/bot{{bot_token}}/getMe",
                    Expect::JsonTrue { pointer: "/ok" },
                )],
            },
            // The token travels in the URL path, which nodes build themselves.
            apply: vec![],
            validator: None,
        },
        CredentialType {
            id: "discord",
            name: "Discord",
            description: "A Discord bot token or an incoming webhook URL.",
            category: Category::Service,
            schema: {
                let mut s = object(
                    json!({
                        "bot_token": secret("Bot token (sent as `Authorization: Bot <token>`)"),
                        "webhook_url": {
                            "type": "string",
                            "format": "uri",
                            "pattern": "^https?://",
                            "x-hint": "an http:// or https:// URL",
                            "description": "Incoming webhook URL (it contains its own token)",
                            "writeOnly": true,
                            "x-secret": true,
                        },
                        "base_url": base_url("https://discord.com/api/v10"),
                    }),
                    &[],
                );
                s["anyOf"] =
                    json!([{ "required": ["bot_token"] }, { "required": ["webhook_url"] }]);
                s["x-hint"] = json!("set bot_token, webhook_url, or both");
                s
            },
            secret_fields: &["bot_token", "webhook_url"],
            test: TestKind::Http {
                requests: vec![
                    HttpTest {
                        requires: &["bot_token"],
                        ..http_test("GET", "{{base_url}}/users/@me", Expect::Success)
                    },
                    HttpTest {
                        requires: &["webhook_url"],
                        ..http_test("GET", "{{webhook_url}}", Expect::Success)
                    },
                ],
            },
            apply: vec![header("Authorization", "Bot {{bot_token}}")],
            validator: None,
        },
        CredentialType {
            id: "smtp",
            name: "SMTP",
            description: "An SMTP server for sending email.",
            category: Category::Service,
            schema: object(
                json!({
                    "host": { "type": "string", "minLength": 1, "description": "Server host name" },
                    "port": port(587),
                    "username": text("Login user name"),
                    "password": secret("Login password"),
                    "security": {
                        "type": "string",
                        "enum": ["starttls", "tls", "none"],
                        "default": "starttls",
                        "description": "STARTTLS upgrade, implicit TLS (port 465), or plain text",
                    },
                    "from": text("Default sender, e.g. `Orcheo <bot@example.com>`"),
                }),
                &["host"],
            ),
            secret_fields: &["password"],
            test: TestKind::Smtp,
            apply: vec![],
            validator: None,
        },
        CredentialType {
            id: "postgresql",
            name: "PostgreSQL",
            description: "A PostgreSQL database, by connection URL or by host, database and user.",
            category: Category::Service,
            schema: {
                let mut s = object(
                    json!({
                        "url": secret_patterned(
                            "Connection URL; when set it wins over the separate fields",
                            "^postgres(ql)?://",
                            "a URL starting with postgres:// or postgresql://",
                        ),
                        "host": { "type": "string", "minLength": 1, "description": "Server host name" },
                        "port": port(5432),
                        "database": { "type": "string", "minLength": 1, "description": "Database name" },
                        "user": { "type": "string", "minLength": 1, "description": "User name" },
                        "password": secret("Password"),
                        "sslmode": {
                            "type": "string",
                            "enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
                            "default": "prefer",
                            "description": "TLS mode, as in libpq",
                        },
                    }),
                    &[],
                );
                s["anyOf"] = json!([
                    { "required": ["url"] },
                    { "required": ["host", "database", "user"] },
                ]);
                s["x-hint"] = json!("set url, or host, database and user");
                s
            },
            secret_fields: &["password", "url"],
            test: TestKind::Postgres,
            apply: vec![],
            validator: None,
        },
        CredentialType {
            id: "mongodb",
            name: "MongoDB",
            description: "A MongoDB deployment by connection string.",
            category: Category::Service,
            schema: object(
                json!({
                    "uri": secret_patterned(
                        "Connection string (it usually holds the password)",
                        "^mongodb(\\+srv)?://",
                        "a connection string starting with mongodb:// or mongodb+srv://",
                    ),
                    "database": text("Default database"),
                }),
                &["uri"],
            ),
            secret_fields: &["uri"],
            test: TestKind::Mongo,
            apply: vec![],
            validator: None,
        },
        CredentialType {
            id: "github",
            name: "GitHub",
            description: "A GitHub personal access token or app installation token.",
            category: Category::Service,
            schema: object(
                json!({
                    "token": secret("Personal access token (ghp_ / github_pat_) or installation token"),
                    "base_url": base_url("https://api.github.com"),
                }),
                &["token"],
            ),
            secret_fields: &["token"],
            test: TestKind::Http {
                requests: vec![HttpTest {
                    headers: &[
                        ("Accept", "application/vnd.github+json"),
                        ("User-Agent", "orcheo"),
                        ("X-GitHub-Api-Version", "2022-11-28"),
                    ],
                    ..http_test("GET", "{{base_url}}/user", Expect::Success)
                }],
            },
            apply: vec![header("Authorization", "Bearer {{token}}")],
            validator: None,
        },
        CredentialType {
            id: "http",
            name: "HTTP",
            description: "Any HTTP service: a base URL and one way to authenticate.",
            category: Category::Service,
            schema: object(
                json!({
                    "base_url": url("Base URL of the service", None),
                    "auth": {
                        "type": "object",
                        "description": "How requests authenticate",
                        "default": { "type": "none" },
                        "properties": {
                            "type": {
                                "type": "string",
                                "enum": ["none", "bearer", "basic", "header"],
                                "default": "none",
                                "description": "Authentication scheme",
                            },
                            "token": secret("Bearer token (type bearer)"),
                            "username": text("User name (type basic)"),
                            "password": secret("Password (type basic)"),
                            "header_name": {
                                "type": "string",
                                "minLength": 1,
                                "description": "Header name (type header)",
                            },
                            "header_value": secret("Header value (type header)"),
                        },
                        "required": ["type"],
                        "additionalProperties": false,
                        "allOf": [
                            { "if": { "properties": { "type": { "const": "bearer" } } }, "then": { "required": ["token"] } },
                            { "if": { "properties": { "type": { "const": "basic" } } }, "then": { "required": ["username"] } },
                            { "if": { "properties": { "type": { "const": "header" } } }, "then": { "required": ["header_name", "header_value"] } },
                        ],
                    },
                }),
                &["base_url"],
            ),
            secret_fields: &["auth.token", "auth.password", "auth.header_value"],
            test: TestKind::Http {
                requests: vec![http_test("GET", "{{base_url}}", Expect::NotUnauthorized)],
            },
            apply: vec![
                ApplyRule {
                    when: Some(When {
                        field: "auth.type",
                        equals: "bearer",
                    }),
                    target: Target::Header {
                        name: "Authorization",
                        value: "Bearer {{auth.token}}",
                    },
                },
                ApplyRule {
                    when: Some(When {
                        field: "auth.type",
                        equals: "basic",
                    }),
                    target: Target::Basic {
                        username: "{{auth.username}}",
                        password: "{{auth.password}}",
                    },
                },
                ApplyRule {
                    when: Some(When {
                        field: "auth.type",
                        equals: "header",
                    }),
                    target: Target::Header {
                        name: "{{auth.header_name}}",
                        value: "{{auth.header_value}}",
                    },
                },
            ],
            validator: None,
        },
    ];
    let options = jsonschema::options().should_validate_formats(true);
    for t in &mut types {
        t.validator = options.build(&t.schema).ok().map(Arc::new);
    }
    types
}
