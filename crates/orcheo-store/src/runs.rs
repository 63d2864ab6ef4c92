//! Runs: the queue, leases with fencing, events, checkpoints, and the engine's durable
//! `Checkpointer` and `EventSink` ([`RunStorage`]).

use crate::writer::{Fence, Op};
use crate::{
    bind_all, decode_cursor, encode_cursor, json_col, now_ms, opt_json_col, opt_time, to_time, Arg,
    Backend, Page, Store, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orcheo_core::checkpoint::{
    Checkpoint, CheckpointError, CheckpointSummary, Checkpointer, RunStatus, TaskWrite,
};
use orcheo_core::event::{Event, EventKind, EventSink};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, oneshot};

/// A run as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// The workflow.
    pub workflow_id: String,
    /// The workflow version it executes.
    pub version: u32,
    /// queued, running, waiting, completed, failed or cancelled.
    #[schema(value_type = String, example = "running")]
    pub status: RunStatus,
    /// The run input.
    #[schema(value_type = Object)]
    pub input: Value,
    /// What started it (`{"kind": "manual"}`, `{"kind": "fork", "run_id": …}`, …).
    #[schema(value_type = Object)]
    pub origin: Value,
    /// The idempotency key it was created with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The error of a failed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// The node that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_node: Option<String>,
    /// Final `{state, results}` of a finished or waiting run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// The interrupts a waiting run waits on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub waiting: Option<Value>,
    /// Cancellation was asked for and the run is stopping.
    pub cancel_requested: bool,
    /// How many times a worker took the run (more than 1 after a crash or a resume).
    pub attempts: u32,
    /// Who started it.
    pub created_by: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker first took it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// A value to resume a waiting run with, not yet consumed.
    #[serde(skip)]
    pub resume_value: Option<Value>,
    /// The fencing token of the current lease.
    #[serde(skip)]
    pub lease_epoch: i64,
}

/// What queuing a run needs.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Run id.
    pub id: String,
    /// Workflow.
    pub workflow_id: String,
    /// Version.
    pub version: u32,
    /// Input.
    pub input: Value,
    /// Origin.
    pub origin: Value,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Who.
    pub created_by: String,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Of one workflow.
    pub workflow_id: Option<String>,
    /// In one status.
    pub status: Option<RunStatus>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
}

/// A run a worker holds, with its fencing token.
#[derive(Debug, Clone)]
pub struct LeasedRun {
    /// The run.
    pub run: RunRecord,
    /// The token every write of this holder carries.
    pub epoch: i64,
}

/// How a run call ended, as the worker records it.
#[derive(Debug, Clone)]
pub struct RunFinish {
    /// New status (waiting or terminal).
    pub status: RunStatus,
    /// Error of a failed run.
    pub error: Option<Value>,
    /// Failed node.
    pub failed_node: Option<String>,
    /// `{state, results}`.
    pub output: Option<Value>,
    /// Interrupts of a waiting run.
    pub waiting: Option<Value>,
    /// When a waiting run's first interrupt times out.
    pub wake_at: Option<DateTime<Utc>>,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was queued or waiting and is now cancelled.
    Cancelled,
    /// The run is executing; its worker was asked to stop.
    Requested,
    /// The run had already finished.
    AlreadyFinished(RunStatus),
}

/// An event as stored, with its JSON text ready to stream.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The run.
    pub run_id: Arc<str>,
    /// Its sequence number.
    pub seq: u64,
    /// Event type.
    pub kind: String,
    /// The whole event as JSON.
    pub json: Arc<str>,
}

const RUN_COLS: &str = "id, workflow_id, version, status, input, origin, idempotency_key, error, failed_node, output, waiting, resume_value, cancel_requested, attempts, created_by, created_at, started_at, finished_at, updated_at, lease_epoch";

pub(crate) fn parse_status(s: &str) -> Result<RunStatus, StoreError> {
    serde_json::from_value(Value::String(s.to_string()))
        .map_err(|_| StoreError::Corrupt(format!("unknown run status `{s}`")))
}

fn run_row(r: &AnyRow) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        id: r.try_get("id")?,
        workflow_id: r.try_get("workflow_id")?,
        version: r.try_get::<i64, _>("version")? as u32,
        status: parse_status(&r.try_get::<String, _>("status")?)?,
        input: json_col(r, "input")?,
        origin: json_col(r, "origin")?,
        idempotency_key: r.try_get("idempotency_key")?,
        error: opt_json_col(r, "error")?,
        failed_node: r.try_get("failed_node")?,
        output: opt_json_col(r, "output")?,
        waiting: opt_json_col(r, "waiting")?,
        resume_value: opt_json_col(r, "resume_value")?,
        cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        created_by: r.try_get("created_by")?,
        created_at: to_time(r.try_get("created_at")?),
        started_at: opt_time(r.try_get("started_at")?),
        finished_at: opt_time(r.try_get("finished_at")?),
        updated_at: to_time(r.try_get("updated_at")?),
        lease_epoch: r.try_get("lease_epoch")?,
    })
}

fn event_row(r: &AnyRow) -> Result<StoredEvent, StoreError> {
    let run_id: String = r.try_get("run_id")?;
    let body: String = r.try_get("body")?;
    Ok(StoredEvent {
        run_id: run_id.into(),
        seq: r.try_get::<i64, _>("seq")? as u64,
        kind: r.try_get("type")?,
        json: body.into(),
    })
}

fn checkpoint_body(r: &AnyRow) -> Result<Checkpoint, StoreError> {
    let body: String = r.try_get("body")?;
    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("checkpoint: {e}")))
}

impl Store {
    /// Queues a run. With an idempotency key already used, returns that run and `false`.
    pub async fn create_run(&self, new: NewRun) -> Result<(RunRecord, bool), StoreError> {
        self.create_run_audited(new, None).await
    }

    /// Queues a run and records `audit` (actor, action, detail) in the same transaction.
    pub async fn create_run_audited(
        &self,
        new: NewRun,
        audit: Option<(&str, &str, Value)>,
    ) -> Result<(RunRecord, bool), StoreError> {
        if let Some(key) = &new.idempotency_key {
            if let Some(r) = self.run_by_idempotency_key(key).await? {
                return Ok((r, false));
            }
        }
        let now = now_ms();
        let (tx, rx) = oneshot::channel();
        self.inner
            .ops
            .send(Op::CreateRun {
                sql_args: RunInsert {
                    id: new.id.clone(),
                    workflow_id: new.workflow_id.clone(),
                    version: i64::from(new.version),
                    input: new.input.to_string(),
                    origin: new.origin.to_string(),
                    idempotency_key: new.idempotency_key.clone(),
                    created_by: new.created_by.clone(),
                    now,
                    audit: audit.map(|(a, b, d)| (a.to_string(), b.to_string(), d.to_string())),
                },
                ack: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        // Batched with the writer's other work: one commit for many runs.
        let res = rx.await.map_err(|_| StoreError::Closed)?;
        match res {
            Ok(_) => Ok((
                RunRecord {
                    id: new.id,
                    workflow_id: new.workflow_id,
                    version: new.version,
                    status: RunStatus::Queued,
                    input: new.input,
                    origin: new.origin,
                    idempotency_key: new.idempotency_key,
                    error: None,
                    failed_node: None,
                    output: None,
                    waiting: None,
                    resume_value: None,
                    cancel_requested: false,
                    attempts: 0,
                    created_by: new.created_by,
                    created_at: to_time(now),
                    started_at: None,
                    finished_at: None,
                    updated_at: to_time(now),
                    lease_epoch: 0,
                },
                true,
            )),
            Err(e) => {
                // Two requests with one key at once: the loser returns the winner's run.
                if let Some(key) = &new.idempotency_key {
                    if let Some(r) = self.run_by_idempotency_key(key).await? {
                        return Ok((r, false));
                    }
                }
                Err(e)
            }
        }
    }

    async fn run_by_idempotency_key(&self, key: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = crate::dynamic(format!(
            "SELECT {RUN_COLS} FROM runs WHERE idempotency_key = $1"
        ))
        .bind(key)
        .fetch_optional(&self.inner.write)
        .await?;
        row.as_ref().map(run_row).transpose()
    }

    /// One run.
    pub async fn get_run(&self, id: &str) -> Result<RunRecord, StoreError> {
        let row = crate::dynamic(format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.inner.read)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run `{id}` does not exist")))?;
        run_row(&row)
    }

    /// Runs, newest first.
    pub async fn list_runs(&self, f: &RunFilter) -> Result<Page<RunRecord>, StoreError> {
        let limit = f.limit.unwrap_or(50).clamp(1, 500) as i64;
        let mut sql = format!("SELECT {RUN_COLS} FROM runs WHERE 1 = 1");
        let mut args = Vec::new();
        if let Some(w) = &f.workflow_id {
            args.push(Arg::S(w.clone()));
            sql += &format!(" AND workflow_id = ${}", args.len());
        }
        if let Some(s) = f.status {
            args.push(Arg::S(s.as_str().into()));
            sql += &format!(" AND status = ${}", args.len());
        }
        if let Some(t) = f.since {
            args.push(Arg::I(t.timestamp_millis()));
            sql += &format!(" AND created_at >= ${}", args.len());
        }
        if let Some(t) = f.until {
            args.push(Arg::I(t.timestamp_millis()));
            sql += &format!(" AND created_at < ${}", args.len());
        }
        if let Some(c) = &f.cursor {
            let (k, id) = decode_cursor(c)?;
            args.push(Arg::I(k));
            args.push(Arg::S(id));
            let (a, b) = (args.len() - 1, args.len());
            sql += &format!(" AND (created_at < ${a} OR (created_at = ${a} AND id < ${b}))");
        }
        args.push(Arg::I(limit + 1));
        sql += &format!(" ORDER BY created_at DESC, id DESC LIMIT ${}", args.len());
        let rows = bind_all(crate::dynamic(sql), &args)
            .fetch_all(&self.inner.read)
            .await?;
        let mut items = rows.iter().map(run_row).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items
                .last()
                .map(|r| encode_cursor(r.created_at.timestamp_millis(), &r.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Takes up to `max` runs that are queued or whose lease expired, honouring each
    /// workflow's concurrency limit. Every lease increments the run's fencing token. Runs in
    /// the writer's batch, so leasing never waits for the write connection.
    pub async fn lease_runs(
        &self,
        owner: &str,
        max: usize,
        ttl: std::time::Duration,
    ) -> Result<Vec<LeasedRun>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .ops
            .send(Op::Lease {
                owner: owner.to_string(),
                max,
                ttl,
                ack: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// [`Store::lease_runs`] inside a transaction.
pub(crate) async fn lease_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    owner: &str,
    max: usize,
    ttl: std::time::Duration,
) -> Result<Vec<LeasedRun>, StoreError> {
    let now = now_ms();
    let until = now + ttl.as_millis() as i64;
    if backend == Backend::Postgres {
        // One leaser at a time across servers, so concurrency limits hold.
        sqlx::query("SELECT pg_advisory_xact_lock(72616002)")
            .execute(&mut **tx)
            .await?;
    }
    let want = (max * 2) as i64;
    let mut cands: Vec<(String, String, Option<i64>)> = Vec::new();
    // Runs whose holder died come first: they are older work.
    for sql in [
            "SELECT r.id, r.workflow_id, w.max_concurrency FROM runs r LEFT JOIN workflows w ON w.id = r.workflow_id WHERE r.status = 'running' AND r.lease_until < $2 ORDER BY r.lease_until, r.id LIMIT $1",
            "SELECT r.id, r.workflow_id, w.max_concurrency FROM runs r LEFT JOIN workflows w ON w.id = r.workflow_id WHERE r.status = 'queued' ORDER BY r.created_at, r.id LIMIT $1",
        ] {
            let mut q = sqlx::query(sql).bind(want);
            if sql.contains("$2") {
                q = q.bind(now);
            }
            for r in q.fetch_all(&mut **tx).await? {
                cands.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
        }
    let mut running: HashMap<String, i64> = HashMap::new();
    let mut chosen: Vec<String> = Vec::new();
    for (id, wf, limit) in cands {
        if chosen.len() >= max {
            break;
        }
        if chosen.contains(&id) {
            continue;
        }
        if let Some(limit) = limit {
            let n = match running.get(&wf) {
                Some(n) => *n,
                None => {
                    let r = sqlx::query(
                            "SELECT COUNT(*) FROM runs WHERE workflow_id = $1 AND status = 'running' AND lease_until >= $2",
                        )
                        .bind(wf.as_str())
                        .bind(now)
                        .fetch_one(&mut **tx)
                        .await?;
                    r.try_get::<i64, _>(0)?
                }
            };
            if n >= limit {
                running.insert(wf, n);
                continue;
            }
            running.insert(wf, n + 1);
        }
        chosen.push(id);
    }
    let mut leased = Vec::new();
    if !chosen.is_empty() {
        // One statement for the whole batch.
        let (marks, padded) = crate::writer::in_list(4, chosen.len());
        let mut q = crate::dynamic(format!(
                "UPDATE runs SET status = 'running', lease_owner = $1, lease_until = $2, lease_epoch = lease_epoch + 1, attempts = attempts + 1, started_at = COALESCE(started_at, $3), updated_at = $3 WHERE id IN ({marks}) AND (status = 'queued' OR (status = 'running' AND lease_until < $3)) RETURNING {RUN_COLS}"
            ))
            .bind(owner)
            .bind(until)
            .bind(now);
        for i in 0..padded {
            q = q.bind(chosen[i.min(chosen.len() - 1)].clone());
        }
        let mut rows = q
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(run_row)
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by_key(|r| chosen.iter().position(|c| *c == r.id));
        leased = rows
            .into_iter()
            .map(|run| LeasedRun {
                epoch: run.lease_epoch,
                run,
            })
            .collect();
    }
    Ok(leased)
}

impl Store {
    /// Extends every lease `owner` holds; returns the ids of its runs asked to cancel.
    pub async fn renew_leases(
        &self,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        let until = now_ms() + ttl.as_millis() as i64;
        sqlx::query(
            "UPDATE runs SET lease_until = $1 WHERE lease_owner = $2 AND status = 'running'",
        )
        .bind(until)
        .bind(owner)
        .execute(&self.inner.write)
        .await?;
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE lease_owner = $1 AND status = 'running' AND cancel_requested = 1",
        )
        .bind(owner)
        .fetch_all(&self.inner.read)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .collect()
    }

    /// Gives up every lease `owner` holds so another worker can take the runs at once
    /// (graceful shutdown).
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        self.flush().await?;
        let r = sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(owner)
        .execute(&self.inner.write)
        .await?;
        Ok(r.rows_affected())
    }

    /// Expires every running run's lease: for a single-process SQLite store at start-up,
    /// when no other process can hold one.
    pub async fn expire_all_leases(&self) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = 0 WHERE status = 'running'",
        )
        .execute(&self.inner.write)
        .await?;
        Ok(r.rows_affected())
    }

    /// Records how a run call ended, if the lease `epoch` is still the run's (fencing).
    /// Queued after the run's events, so a client that sees the new status finds them all.
    pub async fn finish_run(&self, id: &str, epoch: i64, fin: RunFinish) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .ops
            .send(Op::Finish {
                id: id.to_string(),
                epoch,
                fin,
                ack: tx,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Cancels a queued or waiting run at once, or asks a running one to stop.
    pub async fn cancel_run(&self, id: &str, reason: &str) -> Result<CancelOutcome, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE runs SET status = 'cancelled', finished_at = $1, updated_at = $1, wake_at = NULL, resume_value = NULL WHERE id = $2 AND status IN ('queued', 'waiting')",
        )
        .bind(now)
        .bind(id)
        .execute(&self.inner.write)
        .await?;
        if done.rows_affected() == 1 {
            let seq = self.max_seq(id).await? + 1;
            self.append_event(
                Event {
                    run_id: id.into(),
                    seq,
                    ts: to_time(now),
                    kind: EventKind::RunCancelled {
                        reason: reason.to_string(),
                    },
                },
                None,
            );
            self.flush().await?;
            return Ok(CancelOutcome::Cancelled);
        }
        let asked = sqlx::query(
            "UPDATE runs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND status = 'running'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.inner.write)
        .await?;
        if asked.rows_affected() == 1 {
            return Ok(CancelOutcome::Requested);
        }
        let run = self.get_run(id).await?;
        Ok(CancelOutcome::AlreadyFinished(run.status))
    }

    /// Queues a waiting run again with the value to resume it with.
    pub async fn resume_run(&self, id: &str, value: &Value) -> Result<RunRecord, StoreError> {
        self.requeue(
            id,
            RunStatus::Waiting,
            "resume_value = $3, wake_at = NULL",
            Some(value.to_string()),
            "resumed",
        )
        .await
    }

    /// Queues a run in status `from` again, setting `set` (which may use `$3` = `arg`).
    async fn requeue(
        &self,
        id: &str,
        from: RunStatus,
        set: &str,
        arg: Option<String>,
        verb: &str,
    ) -> Result<RunRecord, StoreError> {
        let mut q = crate::dynamic(format!(
            "UPDATE runs SET status = 'queued', updated_at = $1, {set} WHERE id = $2 AND status = '{}'",
            from.as_str()
        ))
        .bind(now_ms())
        .bind(id);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let done = q.execute(&self.inner.write).await?;
        let run = self.get_run(id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "run `{id}` is {}, not {}; only a {} run can be {verb}",
                run.status.as_str(),
                from.as_str(),
                from.as_str()
            )));
        }
        Ok(run)
    }

    /// Queues again every waiting run whose interrupt deadline has passed, so a worker takes
    /// its timeout path. Returns how many.
    pub async fn wake_due(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let r = sqlx::query(
            "UPDATE runs SET status = 'queued', wake_at = NULL, updated_at = $1 WHERE status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= $1",
        )
        .bind(now)
        .execute(&self.inner.write)
        .await?;
        Ok(r.rows_affected())
    }

    /// Queues a failed run again so a worker retries it from its last checkpoint.
    pub async fn retry_run(&self, id: &str) -> Result<RunRecord, StoreError> {
        self.requeue(
            id,
            RunStatus::Failed,
            "error = NULL, failed_node = NULL, finished_at = NULL",
            None,
            "retried",
        )
        .await
    }

    /// The highest stored event number of a run (0 when none).
    pub async fn max_seq(&self, run_id: &str) -> Result<u64, StoreError> {
        let r = sqlx::query("SELECT MAX(seq) FROM run_events WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&self.inner.read)
            .await?;
        Ok(r.try_get::<Option<i64>, _>(0)?.unwrap_or(0) as u64)
    }

    /// Stored events of a run after `after`, in order.
    pub async fn list_events(
        &self,
        run_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, seq, type, body FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after as i64)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.inner.read)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// Live events of every run, published after they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.inner.events.subscribe()
    }

    /// Queues an event for storage (fenced by `fence` when given).
    pub(crate) fn append_event(&self, event: Event, fence: Option<Fence>) {
        match crate::writer::EventRow::of(&event) {
            Ok(row) => {
                let _ = self.inner.ops.send(Op::Event(row, fence));
            }
            Err(e) => {
                tracing::error!(run_id = %event.run_id, error = %e, "dropping an event that does not serialise")
            }
        }
    }

    /// One checkpoint.
    pub async fn get_checkpoint(
        &self,
        run_id: &str,
        id: u64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT body FROM checkpoints WHERE run_id = $1 AND id = $2")
            .bind(run_id)
            .bind(id as i64)
            .fetch_optional(&self.inner.read)
            .await?;
        row.as_ref().map(checkpoint_body).transpose()
    }

    /// The newest checkpoint of a run.
    pub async fn latest_checkpoint(&self, run_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row =
            sqlx::query("SELECT body FROM checkpoints WHERE run_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(run_id)
                .fetch_optional(&self.inner.write)
                .await?;
        row.as_ref().map(checkpoint_body).transpose()
    }

    /// Summaries of a run's checkpoints, oldest first.
    pub async fn list_checkpoints(
        &self,
        run_id: &str,
    ) -> Result<Vec<CheckpointSummary>, StoreError> {
        let rows = sqlx::query("SELECT body FROM checkpoints WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.inner.read)
            .await?;
        rows.iter()
            .map(|r| checkpoint_body(r).map(|c| CheckpointSummary::from(&c)))
            .collect()
    }

    /// Task writes recorded after a checkpoint.
    pub async fn task_writes(
        &self,
        run_id: &str,
        checkpoint: u64,
    ) -> Result<Vec<TaskWrite>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM task_writes WHERE run_id = $1 AND checkpoint = $2 ORDER BY n",
        )
        .bind(run_id)
        .bind(checkpoint as i64)
        .fetch_all(&self.inner.read)
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(format!("task write: {e}")))
            })
            .collect()
    }
}

/// A run row to insert (through the ordered writer), with its audit entry.
#[derive(Debug, Clone)]
pub(crate) struct RunInsert {
    id: String,
    workflow_id: String,
    version: i64,
    input: String,
    origin: String,
    idempotency_key: Option<String>,
    created_by: String,
    now: i64,
    audit: Option<(String, String, String)>,
}

/// Inserts queued runs (and their audit entries) with one statement per table and chunk.
pub(crate) async fn insert_runs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    runs: &[&RunInsert],
) -> Result<(), StoreError> {
    use crate::writer::{pow2_chunks, rows_sql};
    for chunk in pow2_chunks(runs) {
        let mut q = crate::dynamic(format!(
            "INSERT INTO runs (id, workflow_id, version, status, input, origin, idempotency_key, created_by, created_at, updated_at) VALUES {}",
            rows_sql(chunk.len(), 10)
        ));
        for r in chunk {
            q = q
                .bind(r.id.clone())
                .bind(r.workflow_id.clone())
                .bind(r.version)
                .bind("queued")
                .bind(r.input.clone())
                .bind(r.origin.clone())
                .bind(r.idempotency_key.clone())
                .bind(r.created_by.clone())
                .bind(r.now)
                .bind(r.now);
        }
        q.execute(&mut **tx).await?;
    }
    let audited: Vec<&&RunInsert> = runs.iter().filter(|r| r.audit.is_some()).collect();
    for chunk in pow2_chunks(&audited) {
        let mut q = crate::dynamic(format!(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES {}",
            rows_sql(chunk.len(), 5)
        ));
        for r in chunk {
            let (actor, action, detail) = r.audit.clone().unwrap_or_default();
            q = q
                .bind(r.now)
                .bind(actor)
                .bind(action)
                .bind(r.id.clone())
                .bind(detail);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The engine's durable checkpointer and event sink on a [`Store`]. A worker registers the
/// fencing token of each run it leases; every checkpoint, task write and event of that run
/// (and of its child runs, whose ids start with `<run>.`) is then written only while the
/// token is still the run's.
pub struct RunStorage {
    store: Store,
    fences: Mutex<HashMap<String, i64>>,
    next_seq: Mutex<HashMap<String, u64>>,
}

impl RunStorage {
    /// Storage over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            fences: Mutex::new(HashMap::new()),
            next_seq: Mutex::new(HashMap::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Registers the lease a worker holds on `run_id`, and where its event stream continues.
    pub fn hold(&self, run_id: &str, epoch: i64, next_seq: u64) {
        lock(&self.fences).insert(run_id.to_string(), epoch);
        lock(&self.next_seq).insert(run_id.to_string(), next_seq);
    }

    /// Forgets a run the worker no longer holds.
    pub fn release(&self, run_id: &str) {
        lock(&self.fences).remove(run_id);
        lock(&self.next_seq).remove(run_id);
    }

    fn fence(&self, run_id: &str) -> Option<Fence> {
        let root = run_id.split('.').next().unwrap_or(run_id);
        lock(&self.fences).get(root).map(|e| Fence {
            run_id: root.into(),
            epoch: *e,
        })
    }

    async fn send(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> Op,
    ) -> Result<(), CheckpointError> {
        let (tx, rx) = oneshot::channel();
        self.store
            .inner
            .ops
            .send(op(tx))
            .map_err(|_| CheckpointError::Backend("the store's writer has stopped".into()))?;
        rx.await
            .map_err(|_| CheckpointError::Backend("the store's writer has stopped".into()))?
            .map_err(to_cp_error)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn to_cp_error(e: StoreError) -> CheckpointError {
    match e {
        StoreError::Refused(m) => CheckpointError::Refused(m),
        StoreError::Corrupt(m) => CheckpointError::Corrupt(m),
        other => CheckpointError::Backend(other.to_string()),
    }
}

#[async_trait]
impl Checkpointer for RunStorage {
    async fn put(&self, checkpoint: Checkpoint) -> Result<(), CheckpointError> {
        let fence = self.fence(&checkpoint.run_id);
        let row = crate::writer::CheckpointRow::of(&checkpoint).map_err(to_cp_error)?;
        self.send(|ack| Op::Checkpoint {
            row: Box::new(row),
            fence,
            ack,
        })
        .await
    }

    async fn put_write(
        &self,
        run_id: &str,
        checkpoint: u64,
        write: TaskWrite,
    ) -> Result<(), CheckpointError> {
        let fence = self.fence(run_id);
        let body = serde_json::to_string(&write)
            .map_err(|e| CheckpointError::Corrupt(format!("task write: {e}")))?;
        self.send(|ack| Op::Write {
            run_id: run_id.to_string(),
            checkpoint,
            body,
            fence,
            ack,
        })
        .await
    }

    async fn get(&self, run_id: &str, id: u64) -> Result<Option<Checkpoint>, CheckpointError> {
        self.store
            .get_checkpoint(run_id, id)
            .await
            .map_err(to_cp_error)
    }

    async fn latest(&self, run_id: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        self.store
            .latest_checkpoint(run_id)
            .await
            .map_err(to_cp_error)
    }

    async fn list(&self, run_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError> {
        self.store
            .list_checkpoints(run_id)
            .await
            .map_err(to_cp_error)
    }

    async fn writes(
        &self,
        run_id: &str,
        checkpoint: u64,
    ) -> Result<Vec<TaskWrite>, CheckpointError> {
        self.store
            .task_writes(run_id, checkpoint)
            .await
            .map_err(to_cp_error)
    }
}

impl EventSink for RunStorage {
    fn emit(&self, event: Event) {
        let fence = self.fence(&event.run_id);
        self.store.append_event(event, fence);
    }

    fn next_seq(&self, run_id: &str) -> Option<u64> {
        lock(&self.next_seq).get(run_id).copied()
    }
}
