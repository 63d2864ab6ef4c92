//! The store's behaviour, run against SQLite and PostgreSQL alike.

use orcheo_core::checkpoint::{Checkpoint, Checkpointer, RunStatus, TaskWrite, WriteKind};
use orcheo_core::event::{Event, EventKind, EventSink};
use orcheo_core::node::NodeOutput;
use orcheo_store::testing::fresh_config;
use orcheo_store::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

async fn open(backend: Backend) -> (Store, tempfile_dir::Dir) {
    let dir = tempfile_dir::Dir::new();
    let cfg = fresh_config(backend, dir.path()).await.expect("config");
    (Store::open(&cfg).await.expect("open"), dir)
}

mod tempfile_dir {
    /// A temporary directory removed on drop.
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("orcheo-store-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).expect("tmp");
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Postgres).await } )* }
    };
}

both!(
    workflows_and_versions,
    runs_queue_lease_and_fence,
    events_and_checkpoints,
    api_keys_and_audit
);

fn version(doc: serde_json::Value, hash: &str) -> NewVersion {
    NewVersion {
        document: doc,
        content_hash: hash.into(),
        author: "tester".into(),
        message: "m".into(),
    }
}

async fn workflows_and_versions(b: Backend) {
    let (store, _d) = open(b).await;
    for i in 0..5 {
        store
            .create_workflow(NewWorkflow {
                id: format!("wf{i}"),
                name: format!("Flow {i}"),
                description: if i == 3 {
                    "Sends 100% of INVOICES".into()
                } else {
                    String::new()
                },
                tags: vec![
                    "a".into(),
                    if i % 2 == 0 {
                        "even".into()
                    } else {
                        "odd".into()
                    },
                    "a".into(),
                ],
                max_concurrency: None,
                version: version(json!({"n": i}), &format!("h{i}")),
            })
            .await
            .expect("create");
    }
    let dup = store
        .create_workflow(NewWorkflow {
            id: "wf1".into(),
            name: "x".into(),
            description: String::new(),
            tags: vec![],
            max_concurrency: None,
            version: version(json!({}), "x"),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    let wf = store.get_workflow("wf2").await.expect("get");
    assert_eq!(wf.tags, vec!["a", "even"]);
    // Pages of 2 cover all five once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_workflows(&WorkflowFilter {
                cursor: cursor.clone(),
                limit: Some(2),
                ..Default::default()
            })
            .await
            .expect("list");
        seen.extend(page.items.iter().map(|w| w.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["wf0", "wf1", "wf2", "wf3", "wf4"]);
    let odd = store
        .list_workflows(&WorkflowFilter {
            tag: Some("odd".into()),
            ..Default::default()
        })
        .await
        .expect("tag");
    assert_eq!(odd.items.len(), 2);
    let q = store
        .list_workflows(&WorkflowFilter {
            q: Some("100% of invoices".into()),
            ..Default::default()
        })
        .await
        .expect("q");
    assert_eq!(
        q.items.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        vec!["wf3"]
    );
    let q = store
        .list_workflows(&WorkflowFilter {
            q: Some("_".into()),
            ..Default::default()
        })
        .await
        .expect("q");
    assert!(q.items.is_empty(), "LIKE wildcards are escaped");

    let (v2, created) = store
        .add_version("wf1", version(json!({"n": 11}), "h11"), Some("Renamed"))
        .await
        .expect("v2");
    assert!(created);
    assert_eq!(v2.version, 2);
    let (same, created) = store
        .add_version("wf1", version(json!({"n": 11}), "h11"), None)
        .await
        .expect("same");
    assert!(!created);
    assert_eq!(same.version, 2);
    assert_eq!(store.get_workflow("wf1").await.expect("wf").name, "Renamed");
    assert_eq!(
        store
            .get_version("wf1", None)
            .await
            .expect("latest")
            .document,
        json!({"n": 11})
    );
    assert_eq!(
        store
            .get_version("wf1", Some(1))
            .await
            .expect("v1")
            .document,
        json!({"n": 1})
    );
    assert!(matches!(
        store.get_version("wf1", Some(9)).await,
        Err(StoreError::NotFound(_))
    ));
    let vs = store
        .list_versions("wf1", None, None)
        .await
        .expect("versions");
    assert_eq!(
        vs.items.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 1]
    );

    let patched = store
        .update_workflow(
            "wf1",
            WorkflowPatch {
                tags: Some(vec!["x".into()]),
                max_concurrency: Some(Some(2)),
                ..Default::default()
            },
        )
        .await
        .expect("patch");
    assert_eq!(patched.tags, vec!["x"]);
    assert_eq!(patched.max_concurrency, Some(2));
    store.delete_workflow("wf1").await.expect("delete");
    assert!(matches!(
        store.get_workflow("wf1").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_workflow("wf1").await,
        Err(StoreError::NotFound(_))
    ));
}

fn new_run(id: &str, wf: &str, key: Option<&str>) -> NewRun {
    NewRun {
        id: id.into(),
        workflow_id: wf.into(),
        version: 1,
        input: json!({"x": 1}),
        origin: json!({"kind": "manual"}),
        idempotency_key: key.map(Into::into),
        created_by: "tester".into(),
    }
}

async fn runs_queue_lease_and_fence(b: Backend) {
    let (store, _d) = open(b).await;
    store
        .create_workflow(NewWorkflow {
            id: "w".into(),
            name: "w".into(),
            description: String::new(),
            tags: vec![],
            max_concurrency: Some(2),
            version: version(json!({}), "h"),
        })
        .await
        .expect("wf");
    let (r1, created) = store
        .create_run(new_run("r1", "w", Some("k1")))
        .await
        .expect("r1");
    assert!(created);
    let (again, created) = store
        .create_run(new_run("r1b", "w", Some("k1")))
        .await
        .expect("again");
    assert!(!created);
    assert_eq!(again.id, r1.id);
    for i in 2..=4 {
        store
            .create_run(new_run(&format!("r{i}"), "w", None))
            .await
            .expect("run");
    }
    // The workflow allows two at once.
    let ttl = Duration::from_millis(300);
    let leased = store.lease_runs("A", 10, ttl).await.expect("lease");
    assert_eq!(
        leased.iter().map(|l| l.run.id.as_str()).collect::<Vec<_>>(),
        vec!["r1", "r2"]
    );
    assert!(leased
        .iter()
        .all(|l| l.run.status == RunStatus::Running && l.epoch == 1));
    assert!(store
        .lease_runs("B", 10, ttl)
        .await
        .expect("lease")
        .is_empty());

    // A waits too long: its lease expires and B takes r1 over with a new token.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b_runs = store
        .lease_runs("B", 1, Duration::from_secs(30))
        .await
        .expect("takeover");
    assert_eq!(b_runs.len(), 1);
    let taken = &b_runs[0];
    assert_eq!(taken.epoch, 2);
    assert_eq!(taken.run.attempts, 2);
    // A's writes are refused, B's land.
    let a_storage = RunStorage::new(store.clone());
    a_storage.hold(&taken.run.id, 1, 1);
    let cp = checkpoint(&taken.run.id, 0);
    let err = a_storage
        .put(cp.clone())
        .await
        .expect_err("stale holder refused");
    assert!(err.to_string().contains("taken over"), "{err}");
    let fin = RunFinish {
        status: RunStatus::Completed,
        error: None,
        failed_node: None,
        output: Some(json!({"ok": true})),
        waiting: None,
        wake_at: None,
    };
    assert!(matches!(
        store.finish_run(&taken.run.id, 1, fin.clone()).await,
        Err(StoreError::Refused(_))
    ));
    let b_storage = RunStorage::new(store.clone());
    b_storage.hold(&taken.run.id, 2, 1);
    b_storage.put(cp).await.expect("holder writes");
    store
        .finish_run(&taken.run.id, 2, fin)
        .await
        .expect("finish");
    let done = store.get_run(&taken.run.id).await.expect("get");
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output, Some(json!({"ok": true})));
    assert!(done.finished_at.is_some());

    // Renewal keeps B's lease alive.
    assert!(store
        .renew_leases("B", Duration::from_secs(30))
        .await
        .expect("renew")
        .is_empty());

    // Cancel: queued → cancelled at once with an event; running → requested.
    let queued = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Queued),
            ..Default::default()
        })
        .await
        .expect("list");
    let q = &queued.items[0].id;
    assert_eq!(
        store.cancel_run(q, "test").await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    let evs = store.list_events(q, 0, 100).await.expect("events");
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, "run_cancelled");
    let running = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Running),
            ..Default::default()
        })
        .await
        .expect("list");
    let owner_runs: Vec<_> = running.items.iter().map(|r| r.id.clone()).collect();
    assert!(!owner_runs.is_empty());
    assert_eq!(
        store
            .cancel_run(&owner_runs[0], "test")
            .await
            .expect("cancel"),
        CancelOutcome::Requested
    );
    assert_eq!(
        store.cancel_run(&taken.run.id, "x").await.expect("done"),
        CancelOutcome::AlreadyFinished(RunStatus::Completed)
    );

    // Filters and paging.
    let all = store
        .list_runs(&RunFilter {
            workflow_id: Some("w".into()),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .expect("page");
    assert_eq!(all.items.len(), 2);
    let rest = store
        .list_runs(&RunFilter {
            workflow_id: Some("w".into()),
            cursor: all.next_cursor.clone(),
            ..Default::default()
        })
        .await
        .expect("page2");
    assert_eq!(rest.items.len(), 2);
    assert!(rest.next_cursor.is_none());
    assert!(matches!(
        store
            .list_runs(&RunFilter {
                cursor: Some("zz".into()),
                ..Default::default()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
    // A non-ASCII cursor is refused too, not a panic on a character boundary.
    assert!(matches!(
        store
            .list_runs(&RunFilter {
                cursor: Some("ééé".into()),
                ..Default::default()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));

    // Waiting → resume queues it again with the value.
    let w = store
        .create_run(new_run("rw", "w", None))
        .await
        .expect("rw")
        .0;
    store.cancel_run("r2", "free a slot").await.expect("cancel");
    let mut leased = Vec::new();
    for _ in 0..5 {
        leased = store
            .lease_runs("C", 5, Duration::from_secs(30))
            .await
            .expect("lease");
        if leased.iter().any(|l| l.run.id == w.id) {
            break;
        }
        for l in &leased {
            store
                .finish_run(
                    &l.run.id,
                    l.epoch,
                    RunFinish {
                        status: RunStatus::Completed,
                        error: None,
                        failed_node: None,
                        output: None,
                        waiting: None,
                        wake_at: None,
                    },
                )
                .await
                .expect("fin");
        }
    }
    let l = leased.iter().find(|l| l.run.id == w.id).expect("rw leased");
    store
        .finish_run(
            &w.id,
            l.epoch,
            RunFinish {
                status: RunStatus::Waiting,
                error: None,
                failed_node: None,
                output: None,
                waiting: Some(json!([])),
                wake_at: Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
            },
        )
        .await
        .expect("wait");
    assert!(matches!(
        store.resume_run("r1", &json!(1)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.wake_due().await.expect("wake"), 1);
    let woke = store.get_run(&w.id).await.expect("get");
    assert_eq!(woke.status, RunStatus::Queued);
}

fn checkpoint(run: &str, id: u64) -> Checkpoint {
    Checkpoint {
        run_id: run.into(),
        id,
        parent: id.checked_sub(1),
        step: id as u32,
        status: RunStatus::Running,
        input: Arc::new(json!({})),
        state: Arc::new(json!({"n": id})),
        results: Default::default(),
        pending: vec![],
        writes: vec![],
        waiting: vec![],
        error: None,
        next_seq: 1,
        active_ms: 0,
        created_at: chrono::Utc::now(),
        workflow_hash: String::new(),
        forked_from: None,
    }
}

async fn events_and_checkpoints(b: Backend) {
    let (store, _d) = open(b).await;
    let storage = RunStorage::new(store.clone());
    let mut live = store.subscribe();
    for seq in 1..=250u64 {
        storage.emit(Event {
            run_id: "run".into(),
            seq,
            ts: chrono::Utc::now(),
            kind: EventKind::RunCancelled {
                reason: format!("e{seq}"),
            },
        });
    }
    storage.put(checkpoint("run", 0)).await.expect("cp0");
    storage.put(checkpoint("run", 1)).await.expect("cp1");
    for i in 0..3 {
        storage
            .put_write(
                "run",
                1,
                TaskWrite {
                    node: format!("n{i}"),
                    index: None,
                    attempt: 1,
                    kind: WriteKind::Done {
                        output: NodeOutput::default(),
                        route: Default::default(),
                    },
                },
            )
            .await
            .expect("write");
    }
    // Everything emitted before the checkpoint is stored by the time it is.
    assert_eq!(store.max_seq("run").await.expect("max"), 250);
    let page = store.list_events("run", 100, 50).await.expect("page");
    assert_eq!(page.first().map(|e| e.seq), Some(101));
    assert_eq!(page.len(), 50);
    for seq in 1..=250u64 {
        let e = live.recv().await.expect("live");
        assert_eq!(e.seq, seq, "published in order");
    }
    // Storing an event twice keeps the first.
    storage.emit(Event {
        run_id: "run".into(),
        seq: 3,
        ts: chrono::Utc::now(),
        kind: EventKind::RunCancelled {
            reason: "dup".into(),
        },
    });
    store.flush().await.expect("flush");
    let third = store.list_events("run", 2, 1).await.expect("3");
    assert!(third[0].json.contains("\"e3\""));
    assert_eq!(
        storage.latest("run").await.expect("latest").map(|c| c.id),
        Some(1)
    );
    assert_eq!(
        storage.get("run", 0).await.expect("get").map(|c| c.state),
        Some(Arc::new(json!({"n": 0})))
    );
    assert_eq!(storage.list("run").await.expect("list").len(), 2);
    let writes = storage.writes("run", 1).await.expect("writes");
    assert_eq!(
        writes.iter().map(|w| w.node.as_str()).collect::<Vec<_>>(),
        vec!["n0", "n1", "n2"]
    );
    assert!(storage.latest("nothing").await.expect("none").is_none());
}

async fn api_keys_and_audit(b: Backend) {
    let (store, _d) = open(b).await;
    assert_eq!(store.count_active_api_keys().await.expect("count"), 0);
    let k = store
        .create_api_key("ci", &[Scope::RunsRead, Scope::RunsExecute], "admin")
        .await
        .expect("key");
    assert!(k.secret.starts_with(&format!("ok_{}_", k.record.prefix)));
    let found = store
        .verify_api_key(&k.secret)
        .await
        .expect("verify")
        .expect("valid");
    assert!(found.allows(Scope::RunsRead));
    assert!(!found.allows(Scope::WorkflowsWrite));
    let mut wrong = k.secret.clone();
    wrong.pop();
    wrong.push('!');
    assert!(store
        .verify_api_key(&wrong)
        .await
        .expect("verify")
        .is_none());
    assert!(store
        .verify_api_key("nonsense")
        .await
        .expect("verify")
        .is_none());
    store.touch_api_key(&k.record.id).await.expect("touch");
    let listed = store.list_api_keys().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some());
    store
        .revoke_api_key(&k.record.prefix)
        .await
        .expect("revoke");
    assert!(store
        .verify_api_key(&k.secret)
        .await
        .expect("verify")
        .is_none());
    assert!(matches!(
        store.revoke_api_key(&k.record.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.revoke_api_key("nope").await,
        Err(StoreError::NotFound(_))
    ));

    let t = store
        .create_login_token(&[Scope::Admin], Duration::from_secs(60))
        .await
        .expect("token");
    assert_eq!(
        store.redeem_login_token(&t).await.expect("redeem"),
        Some(vec![Scope::Admin])
    );
    assert_eq!(
        store.redeem_login_token(&t).await.expect("again"),
        None,
        "one time only"
    );

    for i in 0..3 {
        store
            .audit(
                "admin",
                "workflow.create",
                &format!("wf{i}"),
                json!({"i": i}),
            )
            .await
            .expect("audit");
    }
    let page = store.list_audit(None, Some(2)).await.expect("audit");
    assert_eq!(
        page.items
            .iter()
            .map(|e| e.target.as_str())
            .collect::<Vec<_>>(),
        vec!["wf2", "wf1"]
    );
    let before = page.next_cursor.and_then(|c| c.parse().ok());
    let rest = store.list_audit(before, Some(2)).await.expect("rest");
    assert_eq!(rest.items.len(), 1);
}
