//! The store's one ordered writer: events, checkpoints, task writes and run completions go
//! through a queue and are committed in batches (group commit), in the order they were
//! queued. Every write of a leased run is fenced: it lands only while the run's lease token
//! is the one the writer holds. Committed events are then published to live subscribers.

use crate::runs::{RunFinish, StoredEvent};
use crate::{now_ms, Backend, Inner, StoreError};
use orcheo_core::checkpoint::{Checkpoint, RunStatus};
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

/// A checkpoint row, serialised by the caller (off the writer's single task).
pub(crate) struct CheckpointRow {
    pub(crate) run_id: String,
    pub(crate) id: u64,
    pub(crate) step: u32,
    pub(crate) status: &'static str,
    pub(crate) created_at: i64,
    pub(crate) body: String,
}

impl CheckpointRow {
    pub(crate) fn of(cp: &Checkpoint) -> Result<Self, StoreError> {
        Ok(Self {
            run_id: cp.run_id.clone(),
            id: cp.id,
            step: cp.step,
            status: cp.status.as_str(),
            created_at: cp.created_at.timestamp_millis(),
            body: serde_json::to_string(cp)
                .map_err(|e| StoreError::Corrupt(format!("checkpoint: {e}")))?,
        })
    }
}

/// An event, serialised once by the caller: the same text is stored and streamed.
pub(crate) struct EventRow {
    pub(crate) event: Arc<StoredEvent>,
    pub(crate) ts: i64,
}

impl EventRow {
    pub(crate) fn of(ev: &Event) -> Result<Self, StoreError> {
        let json =
            serde_json::to_string(ev).map_err(|e| StoreError::Corrupt(format!("event: {e}")))?;
        Ok(Self {
            event: Arc::new(StoredEvent {
                run_id: ev.run_id.clone(),
                seq: ev.seq,
                kind: ev.kind.type_name().to_string(),
                json: json.into(),
            }),
            ts: ev.ts.timestamp_millis(),
        })
    }
}

pub(crate) enum Op {
    Event(EventRow, Option<Fence>),
    Checkpoint {
        row: Box<CheckpointRow>,
        fence: Option<Fence>,
        ack: Ack,
    },
    Write {
        run_id: String,
        checkpoint: u64,
        body: String,
        fence: Option<Fence>,
        ack: Ack,
    },
    Finish {
        id: String,
        epoch: i64,
        fin: RunFinish,
        ack: Ack,
    },
    CreateRun {
        sql_args: crate::runs::RunInsert,
        ack: Ack,
    },
    Receipt {
        trigger_id: String,
        message_id: String,
        keep_ms: i64,
        ack: oneshot::Sender<Result<bool, StoreError>>,
    },
    Lease {
        owner: String,
        max: usize,
        ttl: std::time::Duration,
        ack: oneshot::Sender<Result<Vec<crate::runs::LeasedRun>, StoreError>>,
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
            Op::Flush(_) | Op::CreateRun { .. } | Op::Lease { .. } | Op::Receipt { .. } => None,
        }
    }
}

const MAX_BATCH: usize = 4096;
const ROWS_PER_INSERT: usize = 64;

pub(crate) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        match apply(&inner, &batch).await {
            Ok(outcome) => {
                tracing::debug!(
                    ops = batch.len(),
                    us = started.elapsed().as_micros() as u64,
                    "write batch committed"
                );
                deliver(&inner, batch, outcome)
            }
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

/// Per op: Ok, or refused by its fence; and the runs each lease op took.
struct Outcome {
    refused: Vec<bool>,
    leased: HashMap<usize, Vec<crate::runs::LeasedRun>>,
    receipts: HashMap<usize, bool>,
}

fn refused_error(f: &Fence) -> StoreError {
    StoreError::Refused(format!(
        "the lease on run `{}` was taken over (lease token {} is stale); this worker stops the run",
        f.run_id, f.epoch
    ))
}

fn deliver(inner: &Inner, batch: Vec<Op>, mut outcome: Outcome) {
    for (i, (op, refused)) in batch.into_iter().zip(outcome.refused).enumerate() {
        let fence = op.fence();
        let result = || match (&fence, refused) {
            (Some(f), true) => Err(refused_error(f)),
            _ => Ok(()),
        };
        match op {
            Op::Event(row, _) => {
                if !refused {
                    let _ = inner.events.send(row.event);
                }
            }
            Op::Checkpoint { ack, .. }
            | Op::Write { ack, .. }
            | Op::Finish { ack, .. }
            | Op::CreateRun { ack, .. } => {
                let _ = ack.send(result());
            }
            Op::Lease { ack, .. } => {
                let _ = ack.send(Ok(outcome.leased.remove(&i).unwrap_or_default()));
            }
            Op::Receipt { ack, .. } => {
                let _ = ack.send(Ok(outcome.receipts.get(&i).copied().unwrap_or(false)));
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
        Op::Event(row, _) => {
            tracing::error!(run_id = %row.event.run_id, seq = row.event.seq, error = %msg, "could not store a run event");
        }
        Op::Checkpoint { ack, .. }
        | Op::Write { ack, .. }
        | Op::Finish { ack, .. }
        | Op::CreateRun { ack, .. } => {
            let _ = ack.send(Err(e));
        }
        Op::Lease { ack, .. } => {
            let _ = ack.send(Err(e));
        }
        Op::Receipt { ack, .. } => {
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
            leased: HashMap::new(),
            receipts: HashMap::new(),
        });
    }
    // Set-based: one statement per table and batch, whatever the number of runs in it (each
    // statement is a round trip to the database, which is what limits throughput).
    let mut tx = inner.write.begin().await?;
    let valid = check_fences(inner, &mut tx, batch).await?;
    let refused: Vec<bool> = batch
        .iter()
        .map(|op| {
            op.fence()
                .is_some_and(|f| !valid.get(&f).copied().unwrap_or(false))
        })
        .collect();

    let mut creates = Vec::new();
    let mut events: Vec<&EventRow> = Vec::new();
    let mut checkpoints: Vec<&CheckpointRow> = Vec::new();
    let mut writes: Vec<(&str, u64, &str)> = Vec::new();
    let mut finishes = Vec::new();
    for (op, refused) in batch.iter().zip(&refused) {
        if *refused {
            continue;
        }
        match op {
            Op::Event(ev, _) => events.push(ev),
            Op::Checkpoint { row, .. } => checkpoints.push(row),
            Op::Write {
                run_id,
                checkpoint,
                body,
                ..
            } => writes.push((run_id, *checkpoint, body)),
            Op::Finish { id, epoch, fin, .. } => finishes.push((id, *epoch, fin)),
            Op::CreateRun { sql_args, .. } => creates.push(sql_args),
            Op::Flush(_) | Op::Lease { .. } | Op::Receipt { .. } => {}
        }
    }
    crate::runs::insert_runs(&mut tx, &creates).await?;
    insert_events(&mut tx, &events).await?;
    insert_checkpoints(&mut tx, &checkpoints).await?;
    insert_writes(&mut tx, &writes).await?;
    for (id, epoch, fin) in finishes {
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
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        debug_assert!(fin.status != RunStatus::Queued);
    }
    // Webhook receipts: a new id inserts, an expired one renews, a live one is a replay.
    let mut receipts = HashMap::new();
    for (i, op) in batch.iter().enumerate() {
        if let Op::Receipt {
            trigger_id,
            message_id,
            keep_ms,
            ..
        } = op
        {
            let now = now_ms();
            let r = sqlx::query(
                "INSERT INTO webhook_receipts (trigger_id, message_id, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (trigger_id, message_id) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE webhook_receipts.expires_at < $4",
            )
            .bind(trigger_id.as_str())
            .bind(message_id.as_str())
            .bind(now + keep_ms)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            receipts.insert(i, r.rows_affected() == 1);
        }
    }
    // Leases last, so slots freed by this batch's finished runs are filled in the same commit.
    let mut leased = HashMap::new();
    for (i, op) in batch.iter().enumerate() {
        if let Op::Lease {
            owner, max, ttl, ..
        } = op
        {
            leased.insert(
                i,
                crate::runs::lease_in(&mut tx, inner.backend, owner, *max, *ttl).await?,
            );
        }
    }
    tx.commit().await?;
    Ok(Outcome {
        refused,
        leased,
        receipts,
    })
}

/// Which lease tokens of the batch still hold: one query for all its runs. On PostgreSQL the
/// rows stay locked until commit, so a lease cannot change hands between check and write.
async fn check_fences(
    inner: &Inner,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    batch: &[Op],
) -> Result<HashMap<Fence, bool>, StoreError> {
    let mut fences: Vec<Fence> = batch.iter().filter_map(Op::fence).collect();
    fences.sort_by(|a, b| (&a.run_id, a.epoch).cmp(&(&b.run_id, b.epoch)));
    fences.dedup();
    let mut ids: Vec<&str> = fences.iter().map(|f| &*f.run_id).collect();
    ids.dedup();
    let lock = match inner.backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let mut current: HashMap<String, i64> = HashMap::new();
    for chunk in ids.chunks(512) {
        let (marks, padded) = in_list(1, chunk.len());
        let mut q = crate::dynamic(format!(
            "SELECT id, lease_epoch FROM runs WHERE id IN ({marks}) ORDER BY id{lock}"
        ));
        for i in 0..padded {
            q = q.bind(chunk[i.min(chunk.len() - 1)]);
        }
        for row in q.fetch_all(&mut **tx).await? {
            current.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    Ok(fences
        .into_iter()
        .map(|f| {
            let ok = current.get(&*f.run_id) == Some(&f.epoch);
            (f, ok)
        })
        .collect())
}

/// Splits `items` into chunks whose sizes are powers of two (at most [`ROWS_PER_INSERT`]), so
/// multi-row statements come in a handful of shapes that stay in the prepared-statement cache
/// instead of being parsed anew for every batch size.
pub(crate) fn pow2_chunks<T>(items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let mut n = ROWS_PER_INSERT;
        while n > rest.len() {
            n /= 2;
        }
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// `$1, $2, …` for an `IN (…)` list of `n` values starting at `$first`, padded to a power of
/// two (callers bind the last value again for the padding) for the same reason.
pub(crate) fn in_list(first: usize, n: usize) -> (String, usize) {
    let padded = n.next_power_of_two();
    let marks: Vec<String> = (0..padded).map(|i| format!("${}", first + i)).collect();
    (marks.join(", "), padded)
}

/// `(…), (…)` with `cols` placeholders per row, numbered from 1.
pub(crate) fn rows_sql(rows: usize, cols: usize) -> String {
    let mut sql = String::new();
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            sql += &format!("${}", r * cols + c + 1);
        }
        sql.push(')');
    }
    sql
}

async fn insert_checkpoints(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    cps: &[&CheckpointRow],
) -> Result<(), StoreError> {
    // A checkpoint put twice in one batch: the later one wins (one statement cannot touch a
    // row twice on PostgreSQL).
    let mut last: HashMap<(&str, u64), usize> = HashMap::new();
    for (i, cp) in cps.iter().enumerate() {
        last.insert((cp.run_id.as_str(), cp.id), i);
    }
    let cps: Vec<&CheckpointRow> = cps
        .iter()
        .enumerate()
        .filter(|(i, cp)| last.get(&(cp.run_id.as_str(), cp.id)) == Some(i))
        .map(|(_, cp)| *cp)
        .collect();
    for chunk in pow2_chunks(&cps) {
        let mut q = crate::dynamic(format!(
            "INSERT INTO checkpoints (run_id, id, step, status, body, created_at) VALUES {} \
             ON CONFLICT (run_id, id) DO UPDATE SET step = excluded.step, status = excluded.status, body = excluded.body, created_at = excluded.created_at",
            rows_sql(chunk.len(), 6)
        ));
        for cp in chunk {
            q = q
                .bind(cp.run_id.clone())
                .bind(cp.id as i64)
                .bind(i64::from(cp.step))
                .bind(cp.status)
                .bind(cp.body.clone())
                .bind(cp.created_at);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Orders task writes within a checkpoint: microseconds since the epoch times 1000 plus a
/// counter, so later writes sort later, also after another server took the run over.
fn write_order() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_micros().saturating_mul(1000);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

async fn insert_writes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    writes: &[(&str, u64, &str)],
) -> Result<(), StoreError> {
    for chunk in pow2_chunks(writes) {
        let mut q = crate::dynamic(format!(
            "INSERT INTO task_writes (run_id, checkpoint, n, body) VALUES {}",
            rows_sql(chunk.len(), 4)
        ));
        for (run_id, checkpoint, body) in chunk {
            q = q
                .bind(run_id.to_string())
                .bind(*checkpoint as i64)
                .bind(write_order())
                .bind(body.to_string());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[&EventRow],
) -> Result<(), StoreError> {
    for chunk in pow2_chunks(events) {
        let mut q = crate::dynamic(format!(
            "INSERT INTO run_events (run_id, seq, ts, type, body) VALUES {} ON CONFLICT (run_id, seq) DO NOTHING",
            rows_sql(chunk.len(), 5)
        ));
        for row in chunk {
            let ev = &row.event;
            q = q
                .bind(ev.run_id.to_string())
                .bind(ev.seq as i64)
                .bind(row.ts)
                .bind(ev.kind.clone())
                .bind(ev.json.to_string());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_powers_of_two_and_cover_everything() {
        let items: Vec<u32> = (0..200).collect();
        let chunks = pow2_chunks(&items);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![64, 64, 64, 8]
        );
        assert_eq!(chunks.concat(), items);
        assert!(pow2_chunks::<u32>(&[]).is_empty());
        assert_eq!(in_list(4, 3), ("$4, $5, $6, $7".to_string(), 4));
    }
}
