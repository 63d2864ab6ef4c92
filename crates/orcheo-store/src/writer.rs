//! The store's one ordered writer: events, checkpoints, task writes and run completions go
//! through a queue and are committed in batches (group commit), in the order they were
//! queued. Every write of a leased run is fenced: it lands only while the run's lease token
//! is the one the writer holds. Committed events are then published to live subscribers.

use crate::runs::{RunFinish, StoredEvent};
use crate::{now_ms, Backend, Inner, StoreError};
use orcheo_core::checkpoint::{Checkpoint, RunStatus, TaskWrite};
use orcheo_core::event::Event;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A lease token a write must match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Fence {
    pub(crate) run_id: Arc<str>,
    pub(crate) epoch: i64,
}

type Ack = oneshot::Sender<Result<(), StoreError>>;

pub(crate) enum Op {
    Event(Event, Option<Fence>),
    Checkpoint {
        checkpoint: Box<Checkpoint>,
        fence: Option<Fence>,
        ack: Ack,
    },
    Write {
        run_id: String,
        checkpoint: u64,
        write: Box<TaskWrite>,
        fence: Option<Fence>,
        ack: Ack,
    },
    Finish {
        id: String,
        epoch: i64,
        fin: RunFinish,
        ack: Ack,
    },
    Flush(oneshot::Sender<()>),
}

impl Op {
    fn fence(&self) -> Option<Fence> {
        match self {
            Op::Event(_, f) => f.clone(),
            Op::Checkpoint { fence, .. } | Op::Write { fence, .. } => fence.clone(),
            Op::Finish { id, epoch, .. } => Some(Fence {
                run_id: id.as_str().into(),
                epoch: *epoch,
            }),
            Op::Flush(_) => None,
        }
    }
}

const MAX_BATCH: usize = 4096;
const EVENT_ROWS_PER_INSERT: usize = 100;

pub(crate) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        match apply(&inner, &batch).await {
            Ok(outcome) => deliver(&inner, batch, outcome),
            Err(e) => {
                // One bad op must not sink the others: apply each alone.
                tracing::warn!(error = %e, ops = batch.len(), "batched write failed; retrying one by one");
                for op in batch {
                    match apply(&inner, std::slice::from_ref(&op)).await {
                        Ok(outcome) => deliver(&inner, vec![op], outcome),
                        Err(e) => fail(op, e),
                    }
                }
            }
        }
    }
}

/// Per op: Ok, or refused by its fence.
struct Outcome {
    refused: Vec<bool>,
}

fn refused_error(f: &Fence) -> StoreError {
    StoreError::Refused(format!(
        "the lease on run `{}` was taken over (lease token {} is stale); this worker stops the run",
        f.run_id, f.epoch
    ))
}

fn deliver(inner: &Inner, batch: Vec<Op>, outcome: Outcome) {
    for (op, refused) in batch.into_iter().zip(outcome.refused) {
        let fence = op.fence();
        let result = || match (&fence, refused) {
            (Some(f), true) => Err(refused_error(f)),
            _ => Ok(()),
        };
        match op {
            Op::Event(ev, _) => {
                if !refused {
                    if let Ok(json) = serde_json::to_string(&ev) {
                        let _ = inner.events.send(Arc::new(StoredEvent {
                            kind: ev.kind.type_name().to_string(),
                            run_id: ev.run_id,
                            seq: ev.seq,
                            json: json.into(),
                        }));
                    }
                }
            }
            Op::Checkpoint { ack, .. } | Op::Write { ack, .. } | Op::Finish { ack, .. } => {
                let _ = ack.send(result());
            }
            Op::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

fn fail(op: Op, e: StoreError) {
    let msg = e.to_string();
    match op {
        Op::Event(ev, _) => {
            tracing::error!(run_id = %ev.run_id, seq = ev.seq, error = %msg, "could not store a run event");
        }
        Op::Checkpoint { ack, .. } | Op::Write { ack, .. } | Op::Finish { ack, .. } => {
            let _ = ack.send(Err(e));
        }
        Op::Flush(ack) => {
            let _ = ack.send(());
        }
    }
}

async fn apply(inner: &Inner, batch: &[Op]) -> Result<Outcome, StoreError> {
    if batch.iter().all(|op| matches!(op, Op::Flush(_))) {
        return Ok(Outcome {
            refused: vec![false; batch.len()],
        });
    }
    let mut tx = inner.write.begin().await?;
    // Each lease token is checked once per batch; on PostgreSQL the run row stays locked until
    // commit, so a lease cannot change hands between the check and the write.
    let lock = match inner.backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let mut valid: HashMap<Fence, bool> = HashMap::new();
    let mut refused = Vec::with_capacity(batch.len());
    for op in batch {
        let ok = match op.fence() {
            None => true,
            Some(f) => match valid.get(&f) {
                Some(ok) => *ok,
                None => {
                    let row =
                        crate::dynamic(format!("SELECT lease_epoch FROM runs WHERE id = $1{lock}"))
                            .bind(&*f.run_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let ok = match row {
                        Some(r) => r.try_get::<i64, _>(0)? == f.epoch,
                        None => false,
                    };
                    valid.insert(f, ok);
                    ok
                }
            },
        };
        refused.push(!ok);
    }

    let mut events: Vec<&Event> = Vec::new();
    for (op, refused) in batch.iter().zip(&refused) {
        if *refused {
            continue;
        }
        match op {
            Op::Event(ev, _) => events.push(ev),
            Op::Checkpoint { checkpoint: cp, .. } => {
                flush_events(&mut tx, &mut events).await?;
                let body = serde_json::to_string(cp.as_ref())
                    .map_err(|e| StoreError::Corrupt(format!("checkpoint: {e}")))?;
                sqlx::query(
                    "INSERT INTO checkpoints (run_id, id, step, status, body, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (run_id, id) DO UPDATE SET step = excluded.step, status = excluded.status, body = excluded.body, created_at = excluded.created_at",
                )
                .bind(cp.run_id.as_str())
                .bind(cp.id as i64)
                .bind(i64::from(cp.step))
                .bind(cp.status.as_str())
                .bind(body)
                .bind(cp.created_at.timestamp_millis())
                .execute(&mut *tx)
                .await?;
            }
            Op::Write {
                run_id,
                checkpoint,
                write,
                ..
            } => {
                let body = serde_json::to_string(write.as_ref())
                    .map_err(|e| StoreError::Corrupt(format!("task write: {e}")))?;
                sqlx::query(
                    "INSERT INTO task_writes (run_id, checkpoint, n, body) \
                     SELECT $1, $2, COALESCE(MAX(n), 0) + 1, $3 FROM task_writes WHERE run_id = $1 AND checkpoint = $2",
                )
                .bind(run_id.as_str())
                .bind(*checkpoint as i64)
                .bind(body)
                .execute(&mut *tx)
                .await?;
            }
            Op::Finish { id, epoch, fin, .. } => {
                flush_events(&mut tx, &mut events).await?;
                let now = now_ms();
                let finished = fin.status.is_terminal().then_some(now);
                sqlx::query(
                    "UPDATE runs SET status = $1, error = $2, failed_node = $3, output = $4, waiting = $5, wake_at = $6, \
                     resume_value = NULL, cancel_requested = 0, finished_at = $7, updated_at = $8, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $9 AND lease_epoch = $10",
                )
                .bind(fin.status.as_str())
                .bind(fin.error.as_ref().map(|v| v.to_string()))
                .bind(fin.failed_node.as_deref())
                .bind(fin.output.as_ref().map(|v| v.to_string()))
                .bind(fin.waiting.as_ref().map(|v| v.to_string()))
                .bind(fin.wake_at.map(|t| t.timestamp_millis()))
                .bind(finished)
                .bind(now)
                .bind(id.as_str())
                .bind(*epoch)
                .execute(&mut *tx)
                .await?;
                debug_assert!(fin.status != RunStatus::Queued);
            }
            Op::Flush(_) => {}
        }
    }
    flush_events(&mut tx, &mut events).await?;
    tx.commit().await?;
    Ok(Outcome { refused })
}

async fn flush_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &mut Vec<&Event>,
) -> Result<(), StoreError> {
    for chunk in events.chunks(EVENT_ROWS_PER_INSERT) {
        let mut sql = String::from("INSERT INTO run_events (run_id, seq, ts, type, body) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let b = i * 5;
            sql += &format!(
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            );
        }
        sql.push_str(" ON CONFLICT (run_id, seq) DO NOTHING");
        let mut q = crate::dynamic(sql);
        for ev in chunk {
            let body = serde_json::to_string(ev)
                .map_err(|e| StoreError::Corrupt(format!("event: {e}")))?;
            q = q
                .bind(ev.run_id.to_string())
                .bind(ev.seq as i64)
                .bind(ev.ts.timestamp_millis())
                .bind(ev.kind.type_name())
                .bind(body);
        }
        q.execute(&mut **tx).await?;
    }
    events.clear();
    Ok(())
}
