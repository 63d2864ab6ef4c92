//! A real server on an ephemeral port, over SQLite or a fresh PostgreSQL database.
#![allow(dead_code)]

use orcheo_server::{Config, Server};
use orcheo_store::Backend;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
    pub dir: PathBuf,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = std::env::temp_dir().join(format!("orcheo-server-test-{}", uuid::Uuid::new_v4()));
        let store = orcheo_store::testing::fresh_config(backend, &dir)
            .await
            .expect("database");
        let mut cfg = Config {
            port: 0,
            data_dir: dir.clone(),
            database_url: store.database_url,
            lease_ttl_secs: 3.0,
            shutdown_grace_secs: 0.5,
            ..Config::default()
        };
        tweak(&mut cfg);
        let (server, first) = Server::start(cfg).await.expect("server starts");
        let base = server.url();
        TestServer {
            server: Some(server),
            base,
            admin: first.admin_key.expect("first start"),
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the admin key.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.admin.clone(), method, path, body).await
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut b = self.http.request(m, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            b = b.json(&body);
        }
        let res = b.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path} → {s}: {v}");
        v
    }

    pub async fn key(&self, scopes: &[&str]) -> String {
        let v = self
            .ok(
                "POST",
                "/api/api-keys",
                Some(json!({"name": "test", "scopes": scopes})),
            )
            .await;
        v["secret_once"].as_str().expect("secret").to_string()
    }

    pub async fn push(&self, id: &str, doc: Value) -> Value {
        self.ok(
            "POST",
            "/api/workflows",
            Some(json!({"id": id, "document": doc})),
        )
        .await
    }

    pub async fn start_run(&self, wf: &str, input: Value) -> String {
        let v = self
            .ok(
                "POST",
                "/api/runs",
                Some(json!({"workflow_id": wf, "input": input})),
            )
            .await;
        v["id"].as_str().expect("run id").to_string()
    }

    /// Polls until the run reaches one of `statuses`.
    pub async fn wait_for(&self, run: &str, statuses: &[&str]) -> Value {
        for _ in 0..600 {
            let v = self.ok("GET", &format!("/api/runs/{run}"), None).await;
            if statuses.contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let v = self.ok("GET", &format!("/api/runs/{run}"), None).await;
        panic!("run {run} never reached {statuses:?}: {v}");
    }

    pub async fn events(&self, run: &str) -> Vec<Value> {
        let v = self
            .ok("GET", &format!("/api/runs/{run}/events?limit=10000"), None)
            .await;
        v["events"].as_array().cloned().unwrap_or_default()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("shutdown");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A workflow: a chain of `n` set_variables nodes.
pub fn chain(n: usize) -> Value {
    let mut nodes = Vec::new();
    let mut edges = vec![json!({"source": "__start__", "target": "s0"})];
    for i in 0..n {
        nodes.push(json!({"id": format!("s{i}"), "type": "set_variables", "config": {"values": {format!("v{i}"): i}}}));
        if i + 1 < n {
            edges.push(json!({"source": format!("s{i}"), "target": format!("s{}", i + 1)}));
        }
    }
    edges.push(json!({"source": format!("s{}", n - 1), "target": "__end__"}));
    json!({"format": "orcheo.workflow/1", "name": format!("chain of {n}"), "nodes": nodes, "edges": edges})
}

/// A workflow that waits `ms` milliseconds.
pub fn sleeper(ms: u64) -> Value {
    json!({"format": "orcheo.workflow/1", "name": "sleeper",
           "nodes": [{"id": "wait", "type": "delay", "config": {"duration": format!("{ms}ms")}},
                     {"id": "after", "type": "set_variables", "config": {"values": {"done": true}}}],
           "edges": [{"source": "__start__", "target": "wait"}, {"source": "wait", "target": "after"}, {"source": "after", "target": "__end__"}]})
}

pub fn example(name: &str) -> Value {
    let p = format!("{}/../../examples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).expect("example")).expect("json")
}

#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(orcheo_store::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(orcheo_store::Backend::Postgres).await } )* }
    };
}
