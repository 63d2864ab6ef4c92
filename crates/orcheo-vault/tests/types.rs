//! The credential type catalog: schemas, validation, public views, HTTP application and tests.

use orcheo_vault::types::{self, ValidationError};
use orcheo_vault::{catalog, Category, Expect, TestKind};
use serde_json::{json, Value};

fn problems(type_id: &str, data: Value) -> Vec<String> {
    match types::validate(type_id, &data) {
        Err(ValidationError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        other => panic!("expected Invalid for {type_id} {data}, got {other:?}"),
    }
}

#[test]
fn catalog_has_every_required_type() {
    let ids: Vec<&str> = catalog().iter().map(|t| t.id).collect();
    for id in [
        "api_key",
        "bearer",
        "basic",
        "custom_headers",
        "oauth2",
        "openai",
        "anthropic",
        "slack",
        "telegram",
        "discord",
        "smtp",
        "postgresql",
        "mongodb",
        "github",
        "http",
    ] {
        assert!(ids.contains(&id), "missing {id}");
    }
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids");
    assert_eq!(types::get("oauth2").unwrap().category, Category::OAuth2);
    assert_eq!(types::get("basic").unwrap().category, Category::Generic);
    assert_eq!(types::get("slack").unwrap().category, Category::Service);
}

/// The schema node for a dotted field path.
fn field_schema<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(schema, |node, part| node.get("properties")?.get(part))
}

#[test]
fn every_schema_is_valid_and_secret_fields_exist_and_are_marked() {
    for t in catalog() {
        jsonschema::meta::validate(&t.schema)
            .unwrap_or_else(|e| panic!("{}: schema is not valid JSON Schema: {e}", t.id));
        assert_eq!(
            t.schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(t.schema["additionalProperties"], false, "{}", t.id);
        assert!(t.schema["required"].is_array(), "{}", t.id);
        for (name, prop) in t.schema["properties"].as_object().unwrap() {
            assert!(
                prop["description"].is_string(),
                "{}.{name} has no description",
                t.id
            );
        }
        assert!(!t.secret_fields.is_empty(), "{} has no secret field", t.id);
        for field in t.secret_fields {
            let prop = field_schema(&t.schema, field)
                .unwrap_or_else(|| panic!("{}: secret field {field} not in schema", t.id));
            assert_eq!(prop["x-secret"], true, "{}.{field} lacks x-secret", t.id);
            assert_eq!(prop["writeOnly"], true, "{}.{field} lacks writeOnly", t.id);
        }
        // Every property marked secret is listed as a secret field (so it is masked and hidden).
        fn marked(schema: &Value, prefix: &str, out: &mut Vec<String>) {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    if prop.get("x-secret") == Some(&json!(true)) {
                        out.push(path.clone());
                    }
                    marked(prop, &path, out);
                }
            }
        }
        let mut secret_props = Vec::new();
        marked(&t.schema, "", &mut secret_props);
        for p in secret_props {
            assert!(
                t.secret_fields.contains(&p.as_str()),
                "{}: {p} is marked secret but not in secret_fields",
                t.id
            );
        }
        // Every template placeholder names a schema field.
        let mut templates: Vec<&str> = Vec::new();
        for rule in &t.apply {
            match rule.target {
                orcheo_vault::Target::Header { name, value }
                | orcheo_vault::Target::Query { name, value } => templates.extend([name, value]),
                orcheo_vault::Target::Basic { username, password } => {
                    templates.extend([username, password])
                }
                orcheo_vault::Target::HeaderMap { field } => {
                    assert!(field_schema(&t.schema, field).is_some())
                }
            }
            if let Some(when) = rule.when {
                assert!(field_schema(&t.schema, when.field).is_some(), "{}", t.id);
            }
        }
        if let TestKind::Http { requests } = &t.test {
            assert!(!requests.is_empty());
            for r in requests {
                templates.push(r.url);
                for (n, v) in r.headers {
                    templates.extend([*n, *v]);
                }
                for f in r.requires {
                    assert!(field_schema(&t.schema, f).is_some(), "{}: {f}", t.id);
                }
            }
        }
        for tpl in templates {
            let mut rest = tpl;
            while let Some(i) = rest.find("{{") {
                let end = rest[i..].find("}}").unwrap() + i;
                let field = rest[i + 2..end].trim();
                assert!(
                    field_schema(&t.schema, field).is_some(),
                    "{}: template {tpl} names unknown field {field}",
                    t.id
                );
                rest = &rest[end + 2..];
            }
        }
    }
}

#[test]
fn service_templates_allow_overriding_base_url() {
    for id in [
        "openai",
        "anthropic",
        "slack",
        "telegram",
        "discord",
        "github",
    ] {
        let t = types::get(id).unwrap();
        let prop = &t.schema["properties"]["base_url"];
        assert!(
            prop["default"].as_str().unwrap().starts_with("https://"),
            "{id}"
        );
    }
    let data = types::validate(
        "openai",
        &json!({ "api_key": "sk-test", "base_url": "http://127.0.0.1:4567/v1/" }),
    )
    .unwrap();
    let req = types::get("openai").unwrap().test_request(&data).unwrap();
    assert_eq!(req.url.as_str(), "http://127.0.0.1:4567/v1/models");
}

#[test]
fn validation_reports_missing_required_fields_with_their_path() {
    let p = problems("bearer", json!({}));
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("/token: is required"), "{p:?}");
    let p = problems("oauth2", json!({ "grant_type": "authorization_code" }));
    let text = p.join("\n");
    for field in ["/token_url", "/client_id", "/authorization_url"] {
        assert!(text.contains(field), "{text}");
    }
    let p = problems(
        "oauth2",
        json!({
            "grant_type": "client_credentials", "token_url": "https://a/t", "client_id": "c"
        }),
    );
    assert!(p.join(" ").contains("/client_secret: is required"), "{p:?}");
    let p = problems(
        "http",
        json!({ "base_url": "https://x", "auth": { "type": "bearer" } }),
    );
    assert!(p.join(" ").contains("/auth/token: is required"), "{p:?}");
}

#[test]
fn validation_reports_wrong_types_and_enums() {
    let p = problems("smtp", json!({ "host": "mail", "port": "587" }));
    assert_eq!(p, vec!["/port: must be an integer"]);
    let p = problems("smtp", json!({ "host": "mail", "port": 70000 }));
    assert_eq!(p, vec!["/port: must be at most 65535"]);
    let p = problems("api_key", json!({ "key": "k-123", "placement": "body" }));
    assert_eq!(p.len(), 1);
    assert!(
        p[0].contains("/placement") && p[0].contains("\"header\""),
        "{p:?}"
    );
    assert!(!p[0].contains("body"), "value echoed: {p:?}");
    let p = problems("bearer", json!("just a string"));
    assert_eq!(p, vec!["/: must be an object"]);
    let p = problems(
        "openai",
        json!({ "api_key": "sk", "base_url": "not a url" }),
    );
    assert!(p.iter().any(|m| m.contains("/base_url")), "{p:?}");
    assert!(!p.join(" ").contains("not a url"));
}

#[test]
fn validation_rejects_additional_properties() {
    let p = problems(
        "basic",
        json!({ "username": "u", "password": "p", "pasword": "x" }),
    );
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("/pasword: is not a field"), "{p:?}");
    assert!(p[0].contains("username, password"), "{p:?}");
    let p = problems(
        "http",
        json!({ "base_url": "https://x", "auth": { "type": "none", "extra": 1 } }),
    );
    assert!(p[0].starts_with("/auth/extra: is not a field"), "{p:?}");
    let p = problems(
        "custom_headers",
        json!({ "headers": { "bad header": "v" } }),
    );
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("/headers: has a key that is not allowed: each key must be a header name"),
        "{p:?}"
    );
    let p = problems("custom_headers", json!({ "headers": {} }));
    assert_eq!(p, vec!["/headers: must not be empty"]);
}

#[test]
fn validation_applies_defaults() {
    let v = types::validate("api_key", &json!({ "key": "abc-123" })).unwrap();
    assert_eq!(
        v,
        json!({ "key": "abc-123", "placement": "header", "name": "X-API-Key" })
    );
    let v = types::validate(
        "postgresql",
        &json!({ "host": "db", "database": "app", "user": "u" }),
    )
    .unwrap();
    assert_eq!(v["port"], 5432);
    assert_eq!(v["sslmode"], "prefer");
    let v = types::validate(
        "oauth2",
        &json!({
            "grant_type": "authorization_code",
            "authorization_url": "https://idp/auth",
            "token_url": "https://idp/token",
            "client_id": "cid",
        }),
    )
    .unwrap();
    assert_eq!(v["use_pkce"], true);
    assert_eq!(v["scopes"], json!([]));
    let v = types::validate("http", &json!({ "base_url": "https://x" })).unwrap();
    assert_eq!(v["auth"], json!({ "type": "none" }));
    let v = types::validate("anthropic", &json!({ "api_key": "sk-ant" })).unwrap();
    assert_eq!(v["base_url"], "https://api.anthropic.com");
    assert_eq!(v["anthropic_version"], "2023-06-01");
    // Given values win over defaults.
    let v = types::validate(
        "smtp",
        &json!({ "host": "h", "port": 465, "security": "tls" }),
    )
    .unwrap();
    assert_eq!(v["port"], 465);
    assert_eq!(v["security"], "tls");
}

#[test]
fn alternatives_are_explained() {
    let p = problems("postgresql", json!({ "host": "db" }));
    let text = p.join(" ");
    assert!(
        text.contains("set url, or host, database and user"),
        "{text}"
    );
    assert!(text.contains("/database: is required"), "{text}");
    assert!(types::validate("postgresql", &json!({ "url": "postgres://u:p@h/db" })).is_ok());
    let p = problems("discord", json!({}));
    assert!(p.join(" ").contains("bot_token"), "{p:?}");
    assert!(types::validate(
        "discord",
        &json!({ "webhook_url": "https://discord.com/api/webhooks/1/x" })
    )
    .is_ok());
}

#[test]
fn error_messages_never_include_secret_values() {
    let secret = "xoxq-THIS-IS-THE-SECRET-987";
    let cases = [
        ("slack", json!({ "bot_token": secret })),
        ("telegram", json!({ "bot_token": secret })),
        ("postgresql", json!({ "url": secret })),
        ("mongodb", json!({ "uri": secret })),
        ("bearer", json!({ "token": [secret] })),
        (
            "basic",
            json!({ "username": "u", "password": { "x": secret } }),
        ),
        (
            "smtp",
            json!({ "host": "h", "port": secret, "password": secret }),
        ),
        (
            "custom_headers",
            json!({ "headers": { "X-Key": 5, "bad header": secret } }),
        ),
        (
            "http",
            json!({ "base_url": secret, "auth": { "type": secret } }),
        ),
    ];
    for (id, data) in cases {
        let err = types::validate(id, &data).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("THIS-IS-THE-SECRET"), "{id}: {text}");
        assert!(text.contains(&format!("invalid {id} credential")), "{text}");
    }
    // Pattern errors carry a readable hint.
    let p = problems("slack", json!({ "bot_token": "nope-123" }));
    assert!(p[0].contains("xoxb-"), "{p:?}");
}

#[test]
fn unknown_type_lists_the_known_ones() {
    let err = types::validate("ftp", &json!({})).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`ftp`") && text.contains("openai"), "{text}");
}

#[test]
fn public_view_hides_secrets_but_keeps_metadata() {
    let data = json!({
        "host": "db.internal", "port": 5432, "database": "app", "user": "svc",
        "password": "pg-pass", "sslmode": "require",
    });
    let view = types::public_view("postgresql", &data);
    assert_eq!(view["host"], "db.internal");
    assert_eq!(view["user"], "svc");
    assert_eq!(view["password"], json!({ "set": true }));
    assert!(view.get("url").is_none());
    assert!(!view.to_string().contains("pg-pass"));

    let view = types::public_view(
        "custom_headers",
        &json!({ "headers": { "X-A": "1", "X-B": "" } }),
    );
    assert_eq!(
        view,
        json!({ "headers": { "X-A": { "set": true }, "X-B": { "set": false } } })
    );

    let view = types::public_view(
        "http",
        &json!({ "base_url": "https://x", "auth": { "type": "basic", "username": "u", "password": "pw" } }),
    );
    assert_eq!(view["auth"]["type"], "basic");
    assert_eq!(view["auth"]["username"], "u");
    assert_eq!(view["auth"]["password"], json!({ "set": true }));
    assert_eq!(
        types::public_view("ftp", &json!({ "password": "x" })),
        json!({})
    );
}

#[test]
fn http_auth_renders_each_kind() {
    let header = |id: &str, data: Value| {
        let t = types::get(id).unwrap();
        let data = t.validate(&data).unwrap();
        t.http_auth(&data)
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.as_str()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        header("bearer", json!({ "token": "t1" })),
        ["Authorization: Bearer t1"]
    );
    assert_eq!(
        header(
            "basic",
            json!({ "username": "Aladdin", "password": "open sesame" })
        ),
        ["Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="]
    );
    assert_eq!(
        header("basic", json!({ "username": "sk_live" })),
        [format!("Authorization: Basic {}", "c2tfbGl2ZTo=")]
    );
    assert_eq!(header("api_key", json!({ "key": "k1" })), ["X-API-Key: k1"]);
    let t = types::get("api_key").unwrap();
    let d = t
        .validate(&json!({ "key": "k1", "placement": "query", "name": "api_key" }))
        .unwrap();
    let auth = t.http_auth(&d);
    assert!(auth.headers.is_empty());
    assert_eq!(auth.query[0].0, "api_key");
    assert_eq!(auth.query[0].1.as_str(), "k1");
    assert!(!format!("{auth:?}").contains("k1"));
    assert_eq!(
        header(
            "custom_headers",
            json!({ "headers": { "X-A": "1", "X-B": "2" } })
        ),
        ["X-A: 1", "X-B: 2"]
    );
    assert_eq!(
        header("anthropic", json!({ "api_key": "sk-ant" })),
        ["x-api-key: sk-ant", "anthropic-version: 2023-06-01"]
    );
    assert_eq!(
        header(
            "openai",
            json!({ "api_key": "sk", "organization": "org-1" })
        ),
        ["Authorization: Bearer sk", "OpenAI-Organization: org-1"]
    );
    assert_eq!(
        header("discord", json!({ "bot_token": "b" })),
        ["Authorization: Bot b"]
    );
    assert_eq!(
        header(
            "http",
            json!({ "base_url": "https://x", "auth": { "type": "header", "header_name": "X-T", "header_value": "v" } })
        ),
        ["X-T: v"]
    );
    assert!(header("http", json!({ "base_url": "https://x" })).is_empty());
    assert!(header("oauth2", json!({
        "grant_type": "client_credentials", "token_url": "https://t", "client_id": "c", "client_secret": "s"
    }))
    .is_empty(), "no access token yet");
}

#[test]
fn test_requests_follow_each_service() {
    let req = |id: &str, data: Value| {
        let t = types::get(id).unwrap();
        t.test_request(&t.validate(&data).unwrap())
    };
    let r = req("anthropic", json!({ "api_key": "k" })).unwrap();
    assert_eq!(
        (r.method, r.url.as_str()),
        ("GET", "https://api.anthropic.com/v1/models")
    );
    let r = req("slack", json!({ "bot_token": "xoxb-1" })).unwrap();
    assert_eq!(
        (r.method, r.url.as_str()),
        ("POST", "https://slack.com/api/auth.test")
    );
    assert_eq!(r.expect, Expect::JsonTrue { pointer: "/ok" });
    let r = req("telegram", json!({ "bot_token": "123:abc" })).unwrap();
    assert_eq!(r.url.as_str(), "https://api.telegram.org/bot123:abc/getMe");
    assert!(!format!("{r:?}").contains("123:abc"));
    let r = req("discord", json!({ "bot_token": "b" })).unwrap();
    assert_eq!(r.url.as_str(), "https://discord.com/api/v10/users/@me");
    let r = req(
        "discord",
        json!({ "webhook_url": "https://discord.com/api/webhooks/1/tok" }),
    )
    .unwrap();
    assert_eq!(r.url.as_str(), "https://discord.com/api/webhooks/1/tok");
    assert!(r.headers.is_empty());
    let r = req("github", json!({ "token": "ghp_x" })).unwrap();
    assert_eq!(r.url.as_str(), "https://api.github.com/user");
    let names: Vec<_> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Authorization",
            "Accept",
            "User-Agent",
            "X-GitHub-Api-Version"
        ]
    );
    let r = req("http", json!({ "base_url": "http://127.0.0.1:9/" })).unwrap();
    assert_eq!(r.expect, Expect::NotUnauthorized);
    assert!(req("smtp", json!({ "host": "h" })).is_none());
    assert_eq!(types::get("smtp").unwrap().test, TestKind::Smtp);
    assert_eq!(types::get("postgresql").unwrap().test, TestKind::Postgres);
    assert_eq!(types::get("mongodb").unwrap().test, TestKind::Mongo);
}

#[test]
fn credential_masker_covers_its_secrets() {
    let t = types::get("oauth2").unwrap();
    let data = json!({
        "grant_type": "refresh_token", "token_url": "https://t", "client_id": "public-client",
        "client_secret": "cs-secret-1", "refresh_token": "rt-secret-2", "access_token": "at-secret-3",
    });
    let m = t.masker(&data);
    assert_eq!(
        m.mask_str("cs-secret-1 rt-secret-2 at-secret-3 public-client"),
        "*** *** *** public-client"
    );
}

#[test]
fn catalog_serializes_for_the_api() {
    let v = serde_json::to_value(catalog()).unwrap();
    let openai = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "openai")
        .unwrap();
    assert_eq!(openai["category"], "service");
    assert_eq!(openai["test"]["kind"], "http");
    assert_eq!(openai["apply"][0]["target"]["kind"], "header");
    assert_eq!(openai["secret_fields"], json!(["api_key"]));
}
