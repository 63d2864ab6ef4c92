//! The CLI as a client of a real `orcheo serve` subprocess, and `orcheo api-key` on its data
//! directory.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

fn cli(s: &Serve, key: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("ORCHEO_SERVER", &s.base)
        .env_remove("ORCHEO_API_KEY")
        .env_remove("ORCHEO_LOG");
    if let Some(k) = key {
        cmd.env("ORCHEO_API_KEY", k);
    }
    let out = cmd.output().expect("orcheo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A one-route JSON source on 127.0.0.1 that records each request's head.
fn json_source(body: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let (base, seen) = http_service(move |_| ("200 OK".into(), body.into()));
    (format!("{base}/items"), seen)
}

/// Runs the CLI with `input` on standard input.
fn cli_stdin(s: &Serve, key: &str, args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("ORCHEO_SERVER", &s.base)
        .env("ORCHEO_API_KEY", key)
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
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn polling_trigger_commands() {
    let s = serve();
    let key = Some(s.key.as_str());
    let (url, seen) = json_source(r#"{"orders": [{"id": "o-1"}, {"id": "o-2"}]}"#);
    let file = examples().join("webhook-order-intake.json");
    let (code, _, err) = cli(&s, key, &["workflow", "push", file.to_str().expect("p")]);
    assert_eq!(code, 0, "{err}");
    let args = [
        "trigger",
        "create",
        "webhook-order-intake",
        "--poll",
        &url,
        "--items",
        ".orders[]",
        "--key",
        ".id",
        "--interval",
        "3600",
        "--auth",
        "bearer",
        "--emit-existing",
        "--json",
    ];
    let (code, out, err) = cli_stdin(&s, &s.key, &args, "tok-from-stdin\n");
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("tok-from-stdin"), "{out}");
    let t: Value = serde_json::from_str(&out).expect("json");
    let id = t["id"].as_str().expect("id").to_string();
    let (_, out, _) = cli(&s, key, &["trigger", "list"]);
    assert!(
        out.contains("polling") && out.contains("every 3600s"),
        "{out}"
    );
    // The first poll (made by the server at once) started both; polling again starts none.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = cli(&s, key, &["trigger", "poll", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 items, 0 new, 0 runs started"), "{out}");
    let heads = seen.lock().expect("log").clone();
    assert!(heads.len() >= 2, "{heads:?}");
    assert!(
        heads.iter().all(|h| h
            .to_ascii_lowercase()
            .contains("authorization: bearer tok-from-stdin")),
        "{heads:?}"
    );
    // No secret on stdin: refused before anything is made.
    let (code, _, err) = cli_stdin(&s, &s.key, &args, "");
    assert_ne!(code, 0);
    assert!(err.contains("standard input"), "{err}");
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn workflow_commands_against_a_server() {
    let s = serve();
    let key = Some(s.key.as_str());
    let file = examples().join("order-routing.json");
    let file = file.to_str().expect("path");
    let (code, out, err) = cli(&s, key, &["workflow", "push", file]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "order-routing: created (version 1)");
    let (_, out, _) = cli(&s, key, &["workflow", "push", file]);
    assert_eq!(out.trim(), "order-routing: unchanged (version 1)");
    // A changed copy becomes version 2.
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("json");
    doc["description"] =
        Value::String("Routes orders to a lane, now with a new description.".into());
    let changed = s.dir.join("order-routing.json");
    std::fs::write(&changed, doc.to_string()).expect("write");
    let (code, out, err) = cli(
        &s,
        key,
        &[
            "workflow",
            "push",
            changed.to_str().expect("p"),
            "-m",
            "new words",
        ],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "order-routing: new version (version 2)"),
        "{err}"
    );

    let (_, out, _) = cli(&s, key, &["workflow", "list", "--json"]);
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list["items"][0]["id"], "order-routing");
    let (_, out, _) = cli(
        &s,
        key,
        &["workflow", "show", "order-routing", "--version", "1"],
    );
    let v1: Value = serde_json::from_str(&out).expect("document");
    assert_eq!(v1["name"], "Order routing");
    let (_, out, _) = cli(&s, key, &["workflow", "versions", "order-routing"]);
    assert!(
        out.lines()
            .next()
            .is_some_and(|l| l.starts_with("v2") && l.contains("new words")),
        "{out}"
    );
    let (_, out, _) = cli(&s, key, &["workflow", "diff", "order-routing", "1", "2"]);
    assert!(out.contains("~ /description:"), "{out}");

    // Run and wait: events stream, then the outcome and exit code 0.
    let (code, out, err) = cli(
        &s,
        key,
        &[
            "workflow",
            "run",
            "order-routing",
            "--input",
            r#"{"order_id": "A-9", "country": "DE", "total": 1250}"#,
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("run_completed") && out.contains("same-day courier"),
        "{out}"
    );
    let run_id = err
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .expect("run id")
        .trim()
        .to_string();
    let (code, out, _) = cli(&s, key, &["run-status", &run_id, "--json"]);
    assert_eq!(code, 0);
    let run: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(run["status"], "completed");
    let (_, out, _) = cli(&s, key, &["workflow", "logs", &run_id, "--json"]);
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("event")["seq"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let (_, follow, _) = cli(
        &s,
        key,
        &["workflow", "logs", &run_id, "--follow", "--after", "3"],
    );
    assert!(
        follow
            .lines()
            .next()
            .is_some_and(|l| l.trim_start().starts_with('4')),
        "{follow}"
    );

    // Invalid input and bad keys: clear errors, non-zero exit.
    let (code, _, err) = cli(
        &s,
        key,
        &["workflow", "run", "order-routing", "--input", "[1]"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("422") || err.contains("object"), "{err}");
    let (code, _, err) = cli(&s, None, &["workflow", "list"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("401") && err.contains("ORCHEO_API_KEY"),
        "{err}"
    );
}

#[test]
fn api_key_commands_on_the_data_directory() {
    let s = serve();
    let dir = s.dir.to_str().expect("dir").to_string();
    let (code, out, err) = cli(
        &s,
        None,
        &[
            "api-key",
            "create",
            "--name",
            "ci",
            "--scope",
            "runs:read",
            "--data-dir",
            &dir,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let new_key = out.trim().to_string();
    assert!(new_key.starts_with("ok_"));
    // The key works against the running server, within its scope only.
    let (code, _, err) = cli(&s, Some(&new_key), &["workflow", "list"]);
    assert_ne!(code, 0, "runs:read cannot list workflows");
    assert!(
        err.contains("403") && err.contains("workflows:read"),
        "{err}"
    );
    let (_, _, err) = cli(&s, Some(&new_key), &["run-status", "no-such-run"]);
    assert!(err.contains("404"), "runs:read may read runs: {err}");
    let (code, out, _) = cli(&s, None, &["api-key", "list", "--json", "--data-dir", &dir]);
    assert_eq!(code, 0);
    let keys: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(keys.as_array().map(Vec::len), Some(2));
    assert!(
        !out.contains(&new_key[12..]),
        "listing never shows a secret"
    );
    // The vault key rotates under the running server.
    let before = std::fs::read_to_string(s.dir.join("vault.key")).expect("key file");
    let (code, out, err) = cli(
        &s,
        None,
        &["vault", "rotate-key", "--json", "--data-dir", &dir],
    );
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["new_key"], true);
    assert_eq!(r["retired"].as_array().map(Vec::len), Some(1));
    let after = std::fs::read_to_string(s.dir.join("vault.key")).expect("key file");
    assert_ne!(before, after);
    assert!(after.contains(r["active_key"].as_str().expect("id")));
    let prefix = &new_key[3..11];
    let (code, out, _) = cli(&s, None, &["api-key", "revoke", prefix, "--data-dir", &dir]);
    assert_eq!(code, 0);
    assert!(out.contains("revoked"));
    let (code, _, err) = cli(&s, Some(&new_key), &["run-status", "no-such-run"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("401"),
        "a revoked key stops working at once: {err}"
    );
    let (code, _, err) = cli(
        &s,
        None,
        &[
            "api-key",
            "create",
            "--name",
            "x",
            "--scope",
            "root",
            "--data-dir",
            &dir,
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown scope `root`"), "{err}");
}

#[test]
fn trigger_and_retry_commands() {
    let s = serve();
    let key = Some(s.key.as_str());
    let file = examples().join("webhook-order-intake.json");
    let (code, _, err) = cli(&s, key, &["workflow", "push", file.to_str().expect("p")]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(
        &s,
        key,
        &[
            "trigger",
            "create",
            "webhook-order-intake",
            "--cron",
            "30 2 * * *",
            "--timezone",
            "Europe/Amsterdam",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).expect("json");
    let id = t["id"].as_str().expect("id").to_string();
    let (_, out, _) = cli(&s, key, &["trigger", "next", &id, "--count", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        // 02:30 in Amsterdam is 00:30 UTC in summer, 01:30 in winter.
        lines[1].contains("T00:30:00") || lines[1].contains("T01:30:00"),
        "{out}"
    );
    let (_, out, _) = cli(&s, key, &["trigger", "pause", &id]);
    assert!(out.contains("paused"), "{out}");
    let (_, out, _) = cli(&s, key, &["trigger", "list"]);
    assert!(
        out.contains(&id) && out.contains("30 2 * * *") && out.contains("paused"),
        "{out}"
    );
    let (_, out, _) = cli(&s, key, &["trigger", "resume", &id]);
    assert!(out.contains("active"), "{out}");
    let (code, out, err) = cli(
        &s,
        key,
        &[
            "trigger",
            "create",
            "webhook-order-intake",
            "--webhook",
            "--signature",
            "github",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("/hooks/") && out.contains("signing secret"),
        "{out}"
    );
    let hook_id = out
        .lines()
        .find_map(|l| l.strip_prefix("trigger "))
        .expect("id")
        .trim()
        .to_string();
    let url_line = out
        .lines()
        .find(|l| l.starts_with("url: "))
        .expect("url")
        .to_string();
    let (code, out, err) = cli(&s, key, &["trigger", "url", &hook_id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(format!("url: {}", out.trim()), url_line);
    let (code, _, err) = cli(
        &s,
        key,
        &[
            "trigger",
            "create",
            "webhook-order-intake",
            "--cron",
            "nonsense",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("422"), "{err}");

    // A failed run, retried from the CLI.
    let failing = s.dir.join("fails.json");
    std::fs::write(&failing, r#"{"format": "orcheo.workflow/1", "name": "fails", "nodes": [{"id": "boom", "type": "fail", "config": {"message": "boom"}}], "edges": [{"source": "__start__", "target": "boom"}, {"source": "boom", "target": "__end__"}]}"#).expect("write");
    cli(&s, key, &["workflow", "push", failing.to_str().expect("p")]);
    let (code, _, err) = cli(&s, key, &["workflow", "run", "fails", "--wait"]);
    assert_eq!(code, 1, "{err}");
    let run_id = err
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .expect("id")
        .trim()
        .to_string();
    let (code, out, err) = cli(&s, key, &["run", "retry", &run_id, "--wait"]);
    assert_eq!(code, 1, "it fails again: {out}{err}");
    assert!(out.contains("failed"), "{out}");
    let (_, out, _) = cli(&s, key, &["run-status", &run_id, "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["attempts"], 2);
}
