//! The worker loop: leases queued runs (and runs whose holder died) from the store, executes
//! them with the engine, renews its leases while they run, and records how each ended. Every
//! write of a leased run carries the lease's fencing token, so a worker whose lease was taken
//! over cannot write any more.

use crate::{CompiledCache, Config};
use async_trait::async_trait;
use orcheo_core::checkpoint::{CheckpointError, RunStatus};
use orcheo_core::engine::{Engine, EngineError, RunOptions, RunOutcome, WorkflowLoader};
use orcheo_core::{Catalog, ResumeTarget, Workflow};
use orcheo_store::{LeasedRun, RunFinish, RunStorage, Store};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Loads stored workflows for sub-workflow nodes that name a workflow by id.
struct StoreLoader(Store);

#[async_trait]
impl WorkflowLoader for StoreLoader {
    async fn load(&self, id: &str, version: Option<u32>) -> Result<Workflow, String> {
        let v = self
            .0
            .get_version(id, version)
            .await
            .map_err(|e| e.to_string())?;
        Workflow::from_value(v.document).map_err(|e| e.to_string())
    }
}

/// A worker inside `orcheo serve`.
pub struct Worker {
    store: Store,
    storage: Arc<RunStorage>,
    engine: Engine,
    catalog: Arc<Catalog>,
    compiled: Arc<CompiledCache>,
    owner: String,
    slots: Arc<Semaphore>,
    wake: Arc<Notify>,
    running: Mutex<HashMap<String, CancellationToken>>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    stop: CancellationToken,
    lease_ttl: Duration,
    loops: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    vault: Arc<crate::vault::Vault>,
}

impl Worker {
    /// Starts the lease, renewal and wake-up loops.
    pub fn start(
        store: Store,
        catalog: Arc<Catalog>,
        compiled: Arc<CompiledCache>,
        wake: Arc<Notify>,
        vault: Arc<crate::vault::Vault>,
        cfg: &Config,
    ) -> Arc<Worker> {
        let storage = Arc::new(RunStorage::new(store.clone()));
        let engine = Engine::builder(catalog.clone())
            .checkpointer(storage.clone())
            .sink(storage.clone())
            .loader(Arc::new(StoreLoader(store.clone())))
            .build();
        let w = Arc::new(Worker {
            store,
            storage,
            engine,
            catalog,
            compiled,
            owner: format!("{}:{}", hostname(), uuid::Uuid::now_v7()),
            slots: Arc::new(Semaphore::new(cfg.worker_concurrency)),
            wake,
            running: Mutex::new(HashMap::new()),
            tasks: tokio::sync::Mutex::new(JoinSet::new()),
            stop: CancellationToken::new(),
            lease_ttl: cfg.lease_ttl(),
            loops: Mutex::new(Vec::new()),
            vault,
        });
        let handles = vec![
            tokio::spawn(w.clone().lease_loop()),
            tokio::spawn(w.clone().renew_loop()),
            tokio::spawn(w.clone().sweep_loop()),
        ];
        *lock(&w.loops) = handles;
        w
    }

    /// This worker's identity in leases.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs executing here now.
    pub fn active(&self) -> usize {
        lock(&self.running).len()
    }

    /// Stops the run `id` if it executes here; true when it did.
    pub fn cancel_local(&self, id: &str) -> bool {
        match lock(&self.running).get(id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    async fn lease_loop(self: Arc<Self>) {
        let poll = Duration::from_millis(500);
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let free = self.slots.available_permits();
            if free > 0 {
                match self
                    .store
                    .lease_runs(&self.owner, free, self.lease_ttl)
                    .await
                {
                    Ok(runs) => {
                        let n = runs.len();
                        for run in runs {
                            self.clone().spawn(run).await;
                        }
                        if n == free {
                            // Possibly more waiting: go again at once.
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "leasing runs failed; retrying"),
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.wake.notified() => {
                    // Let a burst of wake-ups (runs queued or finished together) gather into
                    // one lease transaction.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn renew_loop(self: Arc<Self>) {
        let every = self.lease_ttl / 3;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if lock(&self.running).is_empty() {
                continue;
            }
            match self.store.renew_leases(&self.owner, self.lease_ttl).await {
                Ok(cancel) => {
                    for id in cancel {
                        self.cancel_local(&id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing leases failed"),
            }
        }
    }

    /// Queues waiting runs whose interrupt timed out.
    async fn sweep_loop(self: Arc<Self>) {
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            ticks += 1;
            if ticks % 60 == 1 {
                // Credential versions superseded a day ago: runs have had time to finish.
                let cutoff = chrono::Utc::now() - chrono::Duration::hours(24);
                if let Err(e) = self.store.retire_credential_versions(cutoff).await {
                    tracing::warn!(error = %e, "retiring old credential versions failed");
                }
            }
            match self.store.wake_due().await {
                Ok(n) if n > 0 => self.wake.notify_one(),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "waking timed-out runs failed"),
            }
        }
    }

    async fn spawn(self: Arc<Self>, leased: LeasedRun) {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            // Cannot happen (we lease at most the free slots); give the lease back.
            return;
        };
        let token = CancellationToken::new();
        if leased.run.cancel_requested {
            token.cancel();
        }
        lock(&self.running).insert(leased.run.id.clone(), token.clone());
        let me = self.clone();
        let span = tracing::info_span!("run", run_id = %leased.run.id, workflow_id = %leased.run.workflow_id);
        let mut tasks = self.tasks.lock().await;
        while tasks.try_join_next().is_some() {}
        tasks.spawn(
            async move {
                let id = leased.run.id.clone();
                me.execute(leased, token).await;
                lock(&me.running).remove(&id);
                me.storage.release(&id);
                drop(permit);
                me.wake.notify_one();
            }
            .instrument(span),
        );
    }

    async fn execute(&self, leased: LeasedRun, cancel: CancellationToken) {
        let run = &leased.run;
        let epoch = leased.epoch;
        // A run taken for the first time has no events or checkpoints yet: skip the reads.
        let fresh = run.attempts <= 1;
        let next_seq = if fresh {
            1
        } else {
            match self.store.max_seq(&run.id).await {
                Ok(n) => n + 1,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the run's events; the lease will lapse and the run be retried");
                    return;
                }
            }
        };
        self.storage.hold(&run.id, epoch, next_seq);
        let wf = match self
            .compiled
            .get(&self.store, &self.catalog, &run.workflow_id, run.version)
            .await
        {
            Ok(wf) => wf,
            Err(e) => {
                self.record(run, epoch, failed("workflow", &e.detail)).await;
                return;
            }
        };
        let mut opts = RunOptions::with_id(run.id.clone());
        opts.cancel = cancel;
        opts.debug = run.origin.get("debug").and_then(Value::as_bool) == Some(true);
        opts.credentials = Some(Arc::new(crate::vault::provider::RunCredentials::new(
            self.vault.clone(),
            self.store.clone(),
            crate::vault::provider::RunOwner {
                run_id: run.id.clone(),
                workflow_id: run.workflow_id.clone(),
                created_by: run.created_by.clone(),
            },
        )));
        let latest = match if fresh {
            Ok(None)
        } else {
            self.store.latest_checkpoint(&run.id).await
        } {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the run's checkpoints");
                return;
            }
        };
        let result = match &latest {
            None if run.origin.get("kind").and_then(Value::as_str) == Some("fork") => {
                let from = run
                    .origin
                    .get("run_id")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let cp = run
                    .origin
                    .get("checkpoint")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let patch: Option<Map<String, Value>> =
                    run.origin.get("state").and_then(Value::as_object).cloned();
                self.engine.fork(&wf, from, cp, patch, opts).await
            }
            None => self.engine.start(&wf, run.input.clone(), opts).await,
            Some(_) => {
                // The API stores `{"value": …, "at": {node, index}?}`.
                let (value, at) = match run.resume_value.clone() {
                    Some(Value::Object(mut m)) => (
                        m.remove("value"),
                        m.remove("at")
                            .and_then(|a| serde_json::from_value::<ResumeTarget>(a).ok()),
                    ),
                    other => (other, None),
                };
                opts.resume_at = at;
                self.engine.resume(&wf, &run.id, value, opts).await
            }
        };
        let fin = match result {
            Ok(outcome) => finish_of(outcome),
            Err(EngineError::Checkpoint(CheckpointError::Refused(m))) => {
                tracing::warn!(reason = %m, "lease lost; another worker has the run");
                return;
            }
            Err(EngineError::NotResumable(m))
                if latest
                    .as_ref()
                    .is_some_and(|c| c.status == RunStatus::Waiting) =>
            {
                // Woken before its deadline (clocks differ): wait again.
                let cp = latest
                    .as_ref()
                    .map(|c| c.waiting.clone())
                    .unwrap_or_default();
                tracing::info!(reason = %m, "run is still waiting");
                RunFinish {
                    status: RunStatus::Waiting,
                    error: None,
                    failed_node: None,
                    output: None,
                    wake_at: cp.iter().filter_map(|w| w.timeout_at).min(),
                    waiting: serde_json::to_value(cp).ok(),
                }
            }
            Err(EngineError::InvalidInput(m)) => failed("invalid_input", &m),
            Err(e) => failed("engine", &e.to_string()),
        };
        self.record(run, epoch, fin).await;
    }

    async fn record(&self, run: &orcheo_store::RunRecord, epoch: i64, fin: RunFinish) {
        let status = fin.status;
        match self.store.finish_run(&run.id, epoch, fin).await {
            Ok(()) => tracing::info!(status = status.as_str(), "run recorded"),
            Err(e) => tracing::warn!(error = %e, "could not record the run's end"),
        }
    }

    /// Stops leasing; waits up to `grace` for running runs, then stops them where they are and
    /// releases their leases so the next server resumes them from their last checkpoint.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.cancel();
        for h in lock(&self.loops).drain(..) {
            h.abort();
        }
        let mut tasks = self.tasks.lock().await;
        let deadline = tokio::time::Instant::now() + grace;
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(runs = tasks.len(), "grace period over; leaving the remaining runs to be resumed");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                }
            }
        }
        match self.store.release_leases(&self.owner).await {
            Ok(n) if n > 0 => tracing::info!(runs = n, "released leases for the next start"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not release leases; they lapse on their own")
            }
        }
    }
}

fn failed(kind: &str, message: &str) -> RunFinish {
    RunFinish {
        status: RunStatus::Failed,
        error: Some(json!({"kind": kind, "message": message})),
        failed_node: None,
        output: None,
        waiting: None,
        wake_at: None,
    }
}

fn finish_of(o: RunOutcome) -> RunFinish {
    RunFinish {
        status: o.status,
        error: o.error.as_ref().map(|e| e.to_value()),
        failed_node: o.failed_node.clone(),
        output: Some(json!({"state": o.state, "results": o.results})),
        wake_at: o.waiting.iter().filter_map(|w| w.timeout_at).min(),
        waiting: (!o.waiting.is_empty())
            .then(|| serde_json::to_value(&o.waiting).ok())
            .flatten(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "orcheo".into())
}
