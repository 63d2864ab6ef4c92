//! Shared by the tests that drive the `orcheo` binary: a real `orcheo serve` child process, and
//! small HTTP services on 127.0.0.1 (std threads, one request per connection) that stand in for
//! third-party APIs at their wire protocol.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_orcheo");

/// A running `orcheo serve`; killed (and its temporary data directory removed) on drop.
pub struct Serve {
    pub child: Child,
    /// Its base URL.
    pub base: String,
    /// The admin key printed on first start (empty on later starts).
    pub key: String,
    /// The data directory.
    pub dir: PathBuf,
    remove_dir: bool,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh temporary directory name.
pub fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "orcheo-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ))
}

/// `orcheo serve` on SQLite in a temporary directory, allowed to reach 127.0.0.1.
pub fn serve() -> Serve {
    let mut s = serve_in(
        &temp_dir("serve"),
        None,
        &[("ORCHEO_HTTP_ALLOW", "127.0.0.1")],
        None,
    );
    s.remove_dir = true;
    s
}

/// `orcheo serve` on `data` (and PostgreSQL at `db`), with extra environment, its log (stderr)
/// appended to `log` when given. Reads the URL and the first-start admin key it prints.
pub fn serve_in(data: &Path, db: Option<&str>, env: &[(&str, &str)], log: Option<&Path>) -> Serve {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--port", "0", "--data-dir"])
        .arg(data)
        .env_remove("ORCHEO_DATABASE_URL")
        .env_remove("ORCHEO_VAULT_KEY")
        .env("ORCHEO_LOG", if log.is_some() { "debug" } else { "warn" })
        .stdout(Stdio::piped());
    match log {
        Some(p) => cmd.stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("log file"),
        ),
        None => cmd.stderr(Stdio::null()),
    };
    if let Some(db) = db {
        cmd.env("ORCHEO_DATABASE_URL", db);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("orcheo serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut base, mut key, mut next) = (String::new(), String::new(), false);
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.by_ref() {
        let line = line.expect("line");
        if next {
            key = line.trim().to_string();
            next = false;
        }
        if let Some(rest) = line.strip_prefix("Orcheo is running at ") {
            base = rest.split_whitespace().next().unwrap_or("").to_string();
        }
        next |= line.contains("It is shown only now");
        if line.starts_with("Press Ctrl-C") || Instant::now() > deadline {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    assert!(!base.is_empty(), "the server printed its URL");
    Serve {
        child,
        base,
        key,
        dir: data.to_path_buf(),
        remove_dir: false,
    }
}

/// An HTTP service on 127.0.0.1: `respond` gets each request's head (request line and headers)
/// and returns the status (`"200 OK"`) and a JSON body. Returns the base URL and every head.
pub fn http_service(
    respond: impl Fn(&str) -> (String, String) + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).map(|n| n == 1).unwrap_or(false) {
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            log.lock().expect("log").push(head.clone());
            let (status, body) = respond(&head);
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, seen)
}

/// A header's value in a request head (names case-insensitive).
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    })
}
