//! `orcheo credential …` against a real `orcheo serve` subprocess: secrets go in on standard input
//! only, never appear in any output, and `credential test` reaches a local service.

mod support;

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use support::*;

/// Runs the CLI and keeps every argument list and every output, to check for secrets at the end.
struct Cli<'a> {
    s: &'a Serve,
    key: String,
    argv: Vec<String>,
    output: Vec<String>,
}

impl Cli<'_> {
    /// Runs `orcheo ARGS` with `input` on standard input (a pipe, not a terminal).
    fn run(&mut self, args: &[&str], input: &str) -> (i32, String, String) {
        self.argv.extend(args.iter().map(|a| a.to_string()));
        let mut child = Command::new(BIN)
            .args(args)
            .env("ORCHEO_SERVER", &self.s.base)
            .env("ORCHEO_API_KEY", &self.key)
            .env_remove("ORCHEO_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("orcheo");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        self.output.push(o.clone());
        self.output.push(e.clone());
        (out.status.code().unwrap_or(-1), o, e)
    }

    fn json(&mut self, args: &[&str]) -> Value {
        let (code, out, err) = self.run(args, "");
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).expect("json")
    }
}

/// A service on 127.0.0.1 that answers 200 only to `Authorization: Bearer <good>` and records the
/// request heads.
fn service(good: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    http_service(move |head| {
        if header(head, "authorization").as_deref() == Some(&format!("Bearer {good}")) {
            ("200 OK".into(), r#"{"login": "orcheo"}"#.into())
        } else {
            (
                "401 Unauthorized".into(),
                r#"{"message": "Bad credentials"}"#.into(),
            )
        }
    })
}

#[test]
fn credential_commands_keep_secrets_off_the_command_line_and_out_of_output() {
    const BEARER_1: &str = "tok-first-7f3a9c";
    const BEARER_2: &str = "tok-second-b81e44";
    const ARGV_SECRET: &str = "tok-on-argv-55d2";
    const GH_GOOD: &str = "ghp-good-0c9e71";
    const GH_BAD: &str = "ghp-wrong-a4410f";
    const HEADER: &str = "hdr-value-93be02";
    let secrets = [BEARER_1, BEARER_2, ARGV_SECRET, GH_GOOD, GH_BAD, HEADER];
    let s = serve();
    let mut cli = Cli {
        s: &s,
        key: s.key.clone(),
        argv: Vec::new(),
        output: Vec::new(),
    };
    let (url, seen) = service(GH_GOOD);

    let (code, out, err) = cli.run(&["credential", "types"], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("bearer") && l.contains("secret: token")),
        "{out}"
    );
    assert!(
        out.contains("auth.token, auth.password, auth.header_value"),
        "{out}"
    );

    // A bearer token on stdin (with the newline `echo` adds).
    let (code, out, err) = cli.run(
        &[
            "credential",
            "create",
            "api-token",
            "--type",
            "bearer",
            "--description",
            "the billing API",
            "--roles",
            "runs:execute",
            "--rotate-every-days",
            "90",
        ],
        &format!("{BEARER_1}\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("credential api-token created (type bearer, version 1"),
        "{out}"
    );

    // A secret with --set is refused before anything is sent, without repeating it.
    let (code, _, err) = cli.run(
        &[
            "credential",
            "create",
            "leaky",
            "--type",
            "bearer",
            "--set",
            &format!("token={ARGV_SECRET}"),
        ],
        "",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("`token` is a secret field") && err.contains("standard input"),
        "{err}"
    );
    // Nested secret fields, and objects holding them, are refused too.
    for set in [
        format!("auth.token={ARGV_SECRET}"),
        format!(r#"auth={{"type": "bearer", "token": "{ARGV_SECRET}"}}"#),
    ] {
        let (code, _, err) = cli.run(
            &[
                "credential",
                "create",
                "leaky",
                "--type",
                "http",
                "--set",
                &format!("base_url={url}"),
                "--set",
                &set,
            ],
            "",
        );
        assert_ne!(code, 0);
        assert!(err.contains("secret field"), "{err}");
    }
    // No secret on stdin: a clear error.
    let (code, _, err) = cli.run(&["credential", "create", "empty", "--type", "bearer"], "");
    assert_ne!(code, 0);
    assert!(
        err.contains("no `token` on standard input") && err.contains("printf %s"),
        "{err}"
    );

    let (code, out, err) = cli.run(&["credential", "list"], "");
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("api-token "))
        .unwrap_or_else(|| panic!("listed: {out}"));
    assert!(
        line.contains("bearer") && line.contains("v1") && line.contains("roles"),
        "{line}"
    );
    assert!(line.contains("never used"), "{line}");
    assert!(!out.contains("leaky") && !out.contains("empty"), "{out}");
    let list = cli.json(&["credential", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["rotate_every_days"], 90);

    let (code, out, err) = cli.run(&["credential", "show", "api-token"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version:     1"), "{out}");
    assert!(out.contains("roles: runs:execute"), "{out}");
    assert!(out.contains("rotation:    every 90 days"), "{out}");
    let shown = cli.json(&["credential", "show", "api-token", "--json"]);
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["description"], "the billing API");
    // By id as well as by name.
    let id = shown["id"].as_str().expect("id").to_string();
    let by_id = cli.json(&["credential", "show", &id, "--json"]);
    assert_eq!(by_id["name"], "api-token");

    let (code, out, err) = cli.run(&["credential", "rotate", "api-token"], BEARER_2);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("credential api-token rotated to version 2"),
        "{out}"
    );
    assert_eq!(
        cli.json(&["credential", "show", "api-token", "--json"])["version"],
        2
    );

    // A GitHub credential pointed at the local service: the test passes with the right token …
    let (code, _, err) = cli.run(
        &[
            "credential",
            "create",
            "gh",
            "--type",
            "github",
            "--set",
            &format!("base_url={url}"),
        ],
        GH_GOOD,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli.run(&["credential", "test", "gh"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains('✓') && !out.contains('✗'), "{out}");
    assert!(
        seen.lock()
            .expect("log")
            .iter()
            .any(|h| h.contains("/user") && h.contains(GH_GOOD)),
        "the service got the token"
    );
    // … and fails (exit 1) once rotated to a wrong one; --merge keeps base_url.
    let (code, out, err) = cli.run(&["credential", "rotate", "gh", "--merge"], GH_BAD);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 2"), "{out}");
    let (code, out, err) = cli.run(&["credential", "test", "gh"], "");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains('✗'), "{out}");
    assert!(out.contains("401"), "{out}");
    let report = {
        let (code, out, _) = cli.run(&["credential", "test", "gh", "--json"], "");
        assert_eq!(code, 1);
        serde_json::from_str::<Value>(&out).expect("json")
    };
    assert_eq!(report["ok"], false);
    let (_, out, _) = cli.run(&["credential", "show", "gh"], "");
    assert!(out.contains("last test:   ✗"), "{out}");

    // Several secret fields: a JSON object on stdin, merged into the --set fields.
    let (code, _, err) = cli.run(
        &[
            "credential",
            "create",
            "svc",
            "--type",
            "http",
            "--set",
            &format!("base_url={url}"),
            "--set",
            "auth.type=bearer",
            "--workflows",
            "billing,intake",
        ],
        &format!(r#"{{"auth": {{"token": "{GH_GOOD}"}}}}"#),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli.run(&["credential", "test", "svc"], "");
    assert_eq!(code, 0, "{out}{err}");
    let svc = cli.json(&["credential", "show", "svc", "--json"]);
    assert_eq!(svc["data"]["auth"]["type"], "bearer");
    assert_eq!(
        svc["scope"],
        serde_json::json!({"kind": "workflows", "ids": ["billing", "intake"]})
    );
    // Without --merge, rotation replaces everything: a missing base_url is explained.
    let (code, _, err) = cli.run(
        &["credential", "rotate", "svc"],
        &format!(r#"{{"auth": {{"type": "bearer", "token": "{GH_BAD}"}}}}"#),
    );
    assert_ne!(code, 0);
    assert!(err.contains("422") && err.contains("--merge"), "{err}");
    // Plain text is ambiguous for a type with several secret fields.
    let (code, _, err) = cli.run(
        &[
            "credential",
            "create",
            "svc2",
            "--type",
            "http",
            "--set",
            &format!("base_url={url}"),
        ],
        GH_GOOD,
    );
    assert_ne!(code, 0);
    assert!(err.contains("JSON object"), "{err}");

    // custom_headers: its secret is an object, so it comes as JSON.
    let (code, _, err) = cli.run(
        &["credential", "create", "hdrs", "--type", "custom_headers"],
        &format!(r#"{{"headers": {{"X-Api-Key": "{HEADER}"}}}}"#),
    );
    assert_eq!(code, 0, "{err}");
    let hdrs = cli.json(&["credential", "show", "hdrs", "--json"]);
    assert_eq!(hdrs["type"], "custom_headers");
    let (code, _, err) = cli.run(
        &["credential", "create", "hdrs2", "--type", "custom_headers"],
        HEADER,
    );
    assert_ne!(code, 0);
    assert!(err.contains("JSON object"), "{err}");

    // Delete: gone from the list, and no longer found.
    let (code, out, err) = cli.run(&["credential", "delete", "api-token"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted"), "{out}");
    let (_, out, _) = cli.run(&["credential", "list"], "");
    assert!(!out.contains("api-token") && out.contains("gh "), "{out}");
    let (code, _, err) = cli.run(&["credential", "show", "api-token"], "");
    assert_ne!(code, 0);
    assert!(err.contains("no credential named `api-token`"), "{err}");
    let (code, _, err) = cli.run(&["credential", "create", "x", "--type", "nope"], "t");
    assert_ne!(code, 0);
    assert!(err.contains("no credential type `nope`"), "{err}");

    // A key with credentials:manage only cannot read /api/credential-types: the CLI falls back
    // to its built-in list, so secret fields are still refused on the command line.
    let dir = s.dir.to_str().expect("dir").to_string();
    let (code, out, err) = cli.run(
        &[
            "api-key",
            "create",
            "--name",
            "vault-admin",
            "--scope",
            "credentials:manage",
            "--data-dir",
            &dir,
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    cli.output.pop();
    cli.output.pop();
    cli.key = out.trim().to_string();
    let (code, _, err) = cli.run(
        &[
            "credential",
            "create",
            "narrow",
            "--type",
            "bearer",
            "--set",
            &format!("token={ARGV_SECRET}"),
        ],
        "",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("built into") && err.contains("secret field"),
        "{err}"
    );
    let (code, out, err) = cli.run(
        &["credential", "create", "narrow", "--type", "bearer"],
        BEARER_1,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");

    // No secret was ever printed, and none was on a command line except the one refused there.
    for (i, text) in cli.output.iter().enumerate() {
        for secret in secrets {
            assert!(!text.contains(secret), "output #{i} shows {secret}: {text}");
        }
    }
    let argv = cli.argv.join(" ");
    for secret in secrets.iter().filter(|s| **s != ARGV_SECRET) {
        assert!(!argv.contains(secret), "{secret} was on a command line");
    }
}
