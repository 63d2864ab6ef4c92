//! `orcheo credential …`: the credential vault of a running server from the command line.
//!
//! Secrets are never taken from the command line (other users see arguments in `ps`, and shells
//! keep them in their history): they come from standard input, or from a prompt that does not
//! echo when standard input is a terminal. `--set` takes non-secret fields only.

use crate::client::{enc, pretty, ApiFailure, Client, Remote};
use crate::exit;
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use std::io::{IsTerminal as _, Read as _};

/// The most read from standard input (a secret, or a JSON object of secrets).
const MAX_STDIN: u64 = 1024 * 1024;

/// `orcheo credential …`.
#[derive(Subcommand)]
pub enum CredentialCommand {
    /// List the credential types: id, name and secret fields.
    Types,
    /// Store a credential. Secret fields come from standard input (a single secret as text, or a
    /// JSON object) or a hidden prompt; `--set` takes non-secret fields only.
    Create(Box<CreateCredential>),
    /// List credentials (metadata only, never secrets).
    List,
    /// Show a credential's metadata and non-secret fields.
    Show {
        /// Credential name or id.
        name: String,
    },
    /// Check a credential against its service; exit code 1 when it does not work.
    Test {
        /// Credential name or id.
        name: String,
    },
    /// Replace a credential's data with a new version; new secrets from standard input or a
    /// hidden prompt, as for `create`.
    Rotate {
        /// Credential name or id.
        name: String,
        /// Keep the fields of the current version that are not given (secrets included).
        #[arg(long)]
        merge: bool,
        /// A non-secret field, `FIELD=VALUE` (repeatable; dotted paths like `auth.type`).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
    },
    /// Delete a credential at once (no confirmation); its stored versions are erased.
    Delete {
        /// Credential name or id.
        name: String,
    },
}

/// What `orcheo credential create` takes.
#[derive(clap::Args)]
pub struct CreateCredential {
    /// The name workflows refer to (letters, digits, `-`, `_`, `.`).
    name: String,
    /// The credential type (`orcheo credential types` lists them).
    #[arg(long = "type", value_name = "TYPE")]
    kind: String,
    /// A non-secret field, `FIELD=VALUE` (repeatable; dotted paths like `auth.type`). The value is
    /// JSON when it parses as JSON (numbers, booleans), else text.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// What it is for.
    #[arg(long)]
    description: Option<String>,
    /// Only these workflows may use it (comma-separated ids).
    #[arg(long, value_delimiter = ',', conflicts_with = "roles")]
    workflows: Vec<String>,
    /// Only runs started by API keys with one of these scopes may use it (comma-separated).
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// When it stops working (RFC 3339, e.g. 2026-12-31T00:00:00Z).
    #[arg(long)]
    expires_at: Option<String>,
    /// Remind to rotate it this many days after each rotation.
    #[arg(long)]
    rotate_every_days: Option<i64>,
}

/// A credential type: its id, schema and secret fields.
struct TypeInfo {
    id: String,
    schema: Value,
    secret_fields: Vec<String>,
}

impl TypeInfo {
    fn from_json(v: &Value) -> TypeInfo {
        TypeInfo {
            id: v["id"].as_str().unwrap_or("").to_string(),
            schema: v["schema"].clone(),
            secret_fields: v["secret_fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        }
    }
}

/// Runs an `orcheo credential` command.
pub async fn credential(cmd: CredentialCommand, r: Remote) -> Result<u8> {
    let c = Client::new(&r)?;
    match cmd {
        CredentialCommand::Types => {
            let types = types(&c).await?;
            if r.json {
                crate::out(&pretty(&Value::Array(types)));
            } else {
                for t in &types {
                    let secrets = TypeInfo::from_json(t).secret_fields.join(", ");
                    crate::out(&format!(
                        "{:<16} {:<20} secret: {}{}",
                        t["id"].as_str().unwrap_or(""),
                        t["name"].as_str().unwrap_or(""),
                        if secrets.is_empty() { "-" } else { &secrets },
                        if t["testable"] == json!(true) {
                            "  (testable)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            Ok(exit::OK)
        }
        CredentialCommand::Create(create) => {
            let CreateCredential {
                name,
                kind,
                set,
                description,
                workflows,
                roles,
                expires_at,
                rotate_every_days,
            } = *create;
            let ty = type_info(&c, &kind).await?;
            let mut data = parse_sets(&set, &ty, "create")?;
            let expires_at = expires_at
                .map(|e| {
                    chrono::DateTime::parse_from_rfc3339(&e)
                        .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339())
                        .map_err(|_| {
                            anyhow!(
                                "--expires-at `{e}` is not an RFC 3339 time (2026-12-31T00:00:00Z)"
                            )
                        })
                })
                .transpose()?;
            let hint = format!("orcheo credential create {name} --type {kind} …");
            let secrets = read_secrets(&ty, true, &hint)?;
            merge(&mut data, secrets);
            require_secrets(&ty, &data, &hint)?;
            let mut body = json!({"name": name, "type": kind, "data": data});
            if let Some(d) = description {
                body["description"] = Value::String(d);
            }
            if !workflows.is_empty() {
                body["scope"] = json!({"kind": "workflows", "ids": workflows});
            } else if !roles.is_empty() {
                body["scope"] = json!({"kind": "roles", "scopes": roles});
            }
            if let Some(e) = expires_at {
                body["expires_at"] = Value::String(e);
            }
            if let Some(d) = rotate_every_days {
                body["rotate_every_days"] = json!(d);
            }
            let (_, v) = c
                .send(c.req(reqwest::Method::POST, "/api/credentials").json(&body))
                .await?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                crate::out(&format!(
                    "credential {} created (type {}, version {}, id {})",
                    v["name"].as_str().unwrap_or(""),
                    v["type"].as_str().unwrap_or(""),
                    v["version"],
                    v["id"].as_str().unwrap_or("")
                ));
            }
            Ok(exit::OK)
        }
        CredentialCommand::List => {
            let v = c.get("/api/credentials").await?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                for cr in v.as_array().into_iter().flatten() {
                    crate::out(&list_line(cr));
                }
            }
            Ok(exit::OK)
        }
        CredentialCommand::Show { name } => {
            let id = resolve(&c, &name).await?;
            let v = c.get(&format!("/api/credentials/{}", enc(&id))).await?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                crate::out(&show_text(&v));
            }
            Ok(exit::OK)
        }
        CredentialCommand::Test { name } => {
            let id = resolve(&c, &name).await?;
            let (_, v) = c
                .send(c.req(
                    reqwest::Method::POST,
                    &format!("/api/credentials/{}/test", enc(&id)),
                ))
                .await?;
            let ok = v["ok"] == json!(true);
            if r.json {
                crate::out(&pretty(&v));
            } else {
                for s in v["steps"].as_array().into_iter().flatten() {
                    crate::out(&format!(
                        "  {} {}: {}",
                        mark(s["ok"] == json!(true)),
                        s["name"].as_str().unwrap_or(""),
                        s["detail"].as_str().unwrap_or("")
                    ));
                }
                crate::out(&format!(
                    "{} {} ({} ms)",
                    mark(ok),
                    v["message"].as_str().unwrap_or(""),
                    v["duration_ms"]
                ));
            }
            Ok(if ok { exit::OK } else { exit::FAILED })
        }
        CredentialCommand::Rotate {
            name,
            merge: keep,
            set,
        } => {
            let id = resolve(&c, &name).await?;
            let cur = c.get(&format!("/api/credentials/{}", enc(&id))).await?;
            let kind = cur["type"].as_str().unwrap_or("").to_string();
            let ty = type_info(&c, &kind).await?;
            let mut data = parse_sets(&set, &ty, "rotate")?;
            let hint = format!(
                "orcheo credential rotate {name}{}",
                if keep { " --merge" } else { "" }
            );
            let secrets = read_secrets(&ty, !keep, &hint)?;
            merge(&mut data, secrets);
            if keep {
                if data.as_object().is_none_or(Map::is_empty) {
                    bail!(
                        "nothing to change: pipe the new secret on standard input \
                         (`printf %s \"$SECRET\" | {hint}`) or give --set FIELD=VALUE"
                    );
                }
            } else {
                require_secrets(&ty, &data, &hint)?;
            }
            let (_, v) = c
                .send(
                    c.req(
                        reqwest::Method::POST,
                        &format!("/api/credentials/{}/rotate", enc(&id)),
                    )
                    .json(&json!({"data": data, "merge": keep})),
                )
                .await
                .map_err(|e| {
                    let invalid = e
                        .downcast_ref::<ApiFailure>()
                        .is_some_and(|f| f.status == 422);
                    if invalid && !keep {
                        e.context(
                            "without --merge the new data replaces all of the old (non-secret \
                             fields too); give every field, or add --merge to keep the others",
                        )
                    } else {
                        e
                    }
                })?;
            if r.json {
                crate::out(&pretty(&v));
            } else {
                crate::out(&format!(
                    "credential {} rotated to version {}",
                    v["name"].as_str().unwrap_or(""),
                    v["version"]
                ));
            }
            Ok(exit::OK)
        }
        CredentialCommand::Delete { name } => {
            let id = resolve(&c, &name).await?;
            c.send(c.req(
                reqwest::Method::DELETE,
                &format!("/api/credentials/{}", enc(&id)),
            ))
            .await?;
            if r.json {
                crate::out(&pretty(&json!({"deleted": true, "id": id})));
            } else {
                crate::out(&format!("credential {name} deleted"));
            }
            Ok(exit::OK)
        }
    }
}

/// The credential types: the server's list, or this binary's own when the key may not read it
/// (`GET /api/credential-types` needs `workflows:read`, which a `credentials:manage` key may lack).
async fn types(c: &Client) -> Result<Vec<Value>> {
    match c.get("/api/credential-types").await {
        Ok(Value::Array(types)) => Ok(types),
        Ok(_) => bail!("the server's list of credential types is not a JSON array"),
        Err(e)
            if e.downcast_ref::<ApiFailure>()
                .is_some_and(|f| f.status == 403) =>
        {
            eprintln!(
                "note: this API key cannot read the server's credential types; using the list \
                 built into this orcheo"
            );
            Ok(orcheo_vault::catalog()
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "name": t.name,
                        "description": t.description,
                        "category": serde_json::to_value(t.category).unwrap_or(Value::Null),
                        "schema": t.schema,
                        "secret_fields": t.secret_fields,
                        "testable": !matches!(t.test, orcheo_vault::TestKind::None),
                    })
                })
                .collect())
        }
        Err(e) => Err(e),
    }
}

async fn type_info(c: &Client, kind: &str) -> Result<TypeInfo> {
    let types = types(c).await?;
    match types.iter().find(|t| t["id"] == json!(kind)) {
        Some(t) => Ok(TypeInfo::from_json(t)),
        None => bail!(
            "no credential type `{kind}`; these exist: {} (`orcheo credential types` describes them)",
            types
                .iter()
                .filter_map(|t| t["id"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The id of the credential with this name or id.
async fn resolve(c: &Client, name_or_id: &str) -> Result<String> {
    let list = c.get("/api/credentials").await?;
    let all = list.as_array().map(Vec::as_slice).unwrap_or_default();
    all.iter()
        .find(|cr| cr["name"] == json!(name_or_id))
        .or_else(|| all.iter().find(|cr| cr["id"] == json!(name_or_id)))
        .and_then(|cr| cr["id"].as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!("no credential named `{name_or_id}` (`orcheo credential list` lists them)")
        })
}

/// Whether setting `path` could set a secret: it is a secret field, lies inside one, or holds one.
fn touches_secret(path: &str, secrets: &[String]) -> bool {
    secrets.iter().any(|s| {
        s == path
            || s.strip_prefix(path).is_some_and(|r| r.starts_with('.'))
            || path
                .strip_prefix(s.as_str())
                .is_some_and(|r| r.starts_with('.'))
    })
}

/// The data given with `--set FIELD=VALUE`, refusing secret fields. Error messages never quote a
/// value: a secret passed by mistake must not be printed again.
fn parse_sets(sets: &[String], ty: &TypeInfo, verb: &str) -> Result<Value> {
    let mut data = Value::Object(Map::new());
    for s in sets {
        let Some((field, value)) = s.split_once('=') else {
            bail!("--set takes FIELD=VALUE, e.g. --set base_url=https://api.example.com");
        };
        let field = field.trim();
        if field.is_empty() {
            bail!("--set takes FIELD=VALUE: the field name is missing");
        }
        if touches_secret(field, &ty.secret_fields) {
            bail!(
                "`{field}` is a secret field of type `{}`, and secrets are never taken from the \
                 command line (`ps` and shell history would show them). Pass it on standard \
                 input instead: `printf %s \"$SECRET\" | orcheo credential {verb} …`, or a JSON \
                 object such as {} for several fields",
                ty.id,
                example_object(&ty.secret_fields)
            );
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        set_path(&mut data, field, value)
            .map_err(|_| anyhow!("--set {field}: a parent of this field is set to a non-object"))?;
    }
    Ok(data)
}

/// `{"a": "…", "b": {"c": "…"}}` for the secret fields `a`, `b.c`.
fn example_object(secrets: &[String]) -> String {
    let mut v = Value::Object(Map::new());
    for s in secrets {
        let _ = set_path(&mut v, s, Value::String("…".into()));
    }
    v.to_string()
}

/// Sets `value` at the dotted `path` inside the object `data`, making objects on the way.
fn set_path(data: &mut Value, path: &str, value: Value) -> Result<()> {
    let mut cur = data;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let obj = cur
            .as_object_mut()
            .ok_or_else(|| anyhow!("not an object"))?;
        if parts.peek().is_none() {
            obj.insert(p.to_string(), value);
            return Ok(());
        }
        cur = obj
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// The value at the dotted `path`, if any.
fn get_path<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(data, |v, p| v.get(p))
}

/// Merges `from` into `into`: objects field by field (recursively), anything else replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The schema of the field at the dotted `path`.
fn field_schema<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(schema, |s, p| s.get("properties").and_then(|ps| ps.get(p)))
}

/// Whether the type's schema always requires the field at `path` (conditional requirements,
/// such as `auth.token` when `auth.type` is `bearer`, are left to the server).
fn is_required(schema: &Value, path: &str) -> bool {
    let mut s = schema;
    for p in path.split('.') {
        let listed = s["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == p));
        if !listed {
            return false;
        }
        match s.get("properties").and_then(|ps| ps.get(p)) {
            Some(next) => s = next,
            None => return false,
        }
    }
    true
}

/// Secret data from standard input, or from hidden prompts when it is a terminal.
fn read_secrets(ty: &TypeInfo, required: bool, hint: &str) -> Result<Value> {
    if std::io::stdin().is_terminal() {
        return prompt_secrets(ty, required);
    }
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_STDIN)
        .read_to_string(&mut text)
        .context("cannot read standard input (it must be UTF-8 text)")?;
    parse_secret_input(&text, ty, hint)
}

/// What was piped in: a JSON object is data to merge; other text is the one secret field's value.
/// Errors never quote the input.
fn parse_secret_input(text: &str, ty: &TypeInfo, hint: &str) -> Result<Value> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
        return Ok(v);
    }
    match ty.secret_fields.as_slice() {
        [one] if field_schema(&ty.schema, one).is_none_or(|s| s["type"] == json!("string")) => {
            let mut v = Value::Object(Map::new());
            set_path(&mut v, one, Value::String(text.to_string()))?;
            Ok(v)
        }
        [] => bail!(
            "type `{}` has no secret fields; standard input may only hold a JSON object of fields",
            ty.id
        ),
        secrets => bail!(
            "standard input is not a JSON object, and type `{}` needs one for its secret fields \
             ({}): pipe e.g. `{}` into `{hint}`",
            ty.id,
            secrets.join(", "),
            example_object(secrets)
        ),
    }
}

/// Asks for each secret field on the terminal without echo. Empty answers skip optional fields.
fn prompt_secrets(ty: &TypeInfo, required: bool) -> Result<Value> {
    let mut data = Value::Object(Map::new());
    if ty.secret_fields.is_empty() {
        return Ok(data);
    }
    eprintln!(
        "secret fields of `{}` (typing is not shown; Enter skips an optional one):",
        ty.id
    );
    for f in &ty.secret_fields {
        let must = required && is_required(&ty.schema, f);
        let schema = field_schema(&ty.schema, f);
        let is_text = schema.is_none_or(|s| s["type"] == json!("string"));
        let prompt = format!(
            "  {f}{}{}: ",
            if is_text { "" } else { " (JSON)" },
            if must { "" } else { " (optional)" }
        );
        let answer = rpassword::prompt_password(prompt).context("cannot read from the terminal")?;
        if answer.is_empty() {
            if must {
                bail!("`{f}` is required");
            }
            continue;
        }
        let value = if is_text {
            Value::String(answer)
        } else {
            serde_json::from_str(&answer)
                .map_err(|_| anyhow!("`{f}` takes JSON (e.g. {{\"X-Api-Key\": \"…\"}})"))?
        };
        set_path(&mut data, f, value)?;
    }
    Ok(data)
}

/// Refuses data missing a secret field the type always requires, before the server is asked.
fn require_secrets(ty: &TypeInfo, data: &Value, hint: &str) -> Result<()> {
    let missing: Vec<&str> = ty
        .secret_fields
        .iter()
        .filter(|f| is_required(&ty.schema, f) && get_path(data, f).is_none())
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let how = match ty.secret_fields.as_slice() {
        [_] => format!("printf %s \"$SECRET\" | {hint}"),
        s => format!("printf %s '{}' | {hint}", example_object(s)),
    };
    bail!(
        "no {} on standard input: secrets are read from there (or a prompt), e.g. `{how}`",
        missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

/// One line of `orcheo credential list`.
fn list_line(cr: &Value) -> String {
    let mut flags = Vec::new();
    if cr["expired"] == json!(true) {
        flags.push("expired");
    }
    if cr["rotation_due"] == json!(true) {
        flags.push("rotation-due");
    }
    format!(
        "{:<28} {:<16} v{:<4} {:<10} {:<21} {}",
        cr["name"].as_str().unwrap_or(""),
        cr["type"].as_str().unwrap_or(""),
        cr["version"],
        cr["scope"]["kind"].as_str().unwrap_or("shared"),
        if flags.is_empty() {
            "-".to_string()
        } else {
            flags.join(",")
        },
        match cr["last_used_at"].as_str() {
            Some(t) => format!("used {t}"),
            None => "never used".into(),
        }
    )
}

fn scope_text(scope: &Value) -> String {
    let list = |k: &str| {
        scope[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match scope["kind"].as_str() {
        Some("workflows") => format!("workflows: {}", list("ids")),
        Some("roles") => format!("roles: {}", list("scopes")),
        Some(k) => k.to_string(),
        None => "shared".into(),
    }
}

/// The human view of `orcheo credential show`.
fn show_text(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut lines = vec![
        format!("name:        {}", s("name")),
        format!("id:          {}", s("id")),
        format!("type:        {}", s("type")),
        format!("version:     {}", v["version"]),
    ];
    if !s("description").is_empty() {
        lines.push(format!("description: {}", s("description")));
    }
    lines.push(format!("scope:       {}", scope_text(&v["scope"])));
    if let Some(e) = v["expires_at"].as_str() {
        let state = if v["expired"] == json!(true) {
            " (expired)"
        } else {
            ""
        };
        lines.push(format!("expires:     {e}{state}"));
    }
    lines.push(format!("rotated:     {}", s("rotated_at")));
    if let Some(d) = v["rotate_every_days"].as_i64() {
        lines.push(format!(
            "rotation:    every {d} days, next due {}{}",
            v["rotation_due_at"].as_str().unwrap_or(""),
            if v["rotation_due"] == json!(true) {
                " (due now)"
            } else {
                ""
            }
        ));
    }
    lines.push(format!(
        "last used:   {}",
        v["last_used_at"].as_str().unwrap_or("never")
    ));
    if let Some(t) = v.get("last_test").filter(|t| t.is_object()) {
        lines.push(format!(
            "last test:   {} {} ({})",
            mark(t["ok"] == json!(true)),
            t["message"].as_str().unwrap_or(""),
            t["tested_at"].as_str().unwrap_or("")
        ));
    }
    lines.push(format!(
        "created:     {} by {}",
        s("created_at"),
        s("created_by")
    ));
    lines.push(format!(
        "data:        {}",
        pretty(&v["data"]).replace('\n', "\n             ")
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_type() -> TypeInfo {
        TypeInfo {
            id: "http".into(),
            schema: json!({"required": ["base_url"], "properties": {
                "base_url": {"type": "string"},
                "auth": {"type": "object", "required": ["type"], "properties": {
                    "type": {"type": "string"}, "token": {"type": "string"}}}}}),
            secret_fields: vec!["auth.token".into(), "auth.password".into()],
        }
    }

    fn bearer() -> TypeInfo {
        TypeInfo {
            id: "bearer".into(),
            schema: json!({"required": ["token"], "properties": {"token": {"type": "string"}}}),
            secret_fields: vec!["token".into()],
        }
    }

    #[test]
    fn set_refuses_secrets_without_quoting_them() {
        let t = http_type();
        for s in ["auth.token=hunter2", "auth={\"token\":\"hunter2\"}"] {
            let e = parse_sets(&[s.to_string()], &t, "create")
                .expect_err("refused")
                .to_string();
            assert!(
                e.contains("standard input") && !e.contains("hunter2"),
                "{e}"
            );
        }
        let d = parse_sets(
            &[
                "base_url=http://x".into(),
                "auth.type=bearer".into(),
                "n=3".into(),
            ],
            &t,
            "create",
        )
        .expect("sets");
        assert_eq!(
            d,
            json!({"base_url": "http://x", "auth": {"type": "bearer"}, "n": 3})
        );
        let e = parse_sets(&["hunter2".into()], &t, "create")
            .expect_err("no =")
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn stdin_text_or_json_object() {
        let b = bearer();
        assert_eq!(
            parse_secret_input("tok\n", &b, "h").expect("text"),
            json!({"token": "tok"})
        );
        let h = http_type();
        let e = parse_secret_input("s3cr3t-xyz", &h, "h")
            .expect_err("ambiguous")
            .to_string();
        assert!(e.contains("JSON object") && !e.contains("s3cr3t"), "{e}");
        let mut data = json!({"base_url": "u", "auth": {"type": "bearer"}});
        merge(
            &mut data,
            parse_secret_input(r#"{"auth": {"token": "t"}}"#, &h, "h").expect("json"),
        );
        assert_eq!(
            data,
            json!({"base_url": "u", "auth": {"type": "bearer", "token": "t"}})
        );
        assert!(require_secrets(&b, &json!({}), "h").is_err());
        assert!(require_secrets(&h, &json!({}), "h").is_ok());
    }
}
