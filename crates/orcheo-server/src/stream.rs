//! Following a run's events: stored history after a sequence number, then live events as
//! they are committed, with no gap or duplicate at the seam. Used by both the SSE and the
//! WebSocket routes.

use orcheo_store::{Store, StoredEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

const PAGE: u32 = 1000;

fn is_terminal(kind: &str) -> bool {
    matches!(kind, "run_completed" | "run_failed" | "run_cancelled")
}

/// Sends the events of `run_id` numbered above `after` into `tx`, in order and each once,
/// until the run ends, the receiver goes away or `stop` fires.
pub async fn follow(
    store: Store,
    run_id: String,
    after: u64,
    tx: mpsc::Sender<Arc<StoredEvent>>,
    stop: CancellationToken,
) {
    // Subscribe before reading history: an event committed after the subscription arrives
    // live, one committed before it is in the history, and duplicates are dropped by number.
    let mut live = store.subscribe();
    let mut last = after;
    if catch_up(&store, &run_id, &mut last, &tx).await.is_err() {
        return;
    }
    if finished(&store, &run_id).await {
        // Finished before we subscribed and history is complete: nothing more will come.
        let _ = catch_up(&store, &run_id, &mut last, &tx).await;
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            msg = live.recv() => match msg {
                Ok(ev) => {
                    if &*ev.run_id != run_id.as_str() || ev.seq <= last {
                        continue;
                    }
                    if ev.seq > last + 1 {
                        // Missed some (cannot normally happen): fill from history.
                        if catch_up(&store, &run_id, &mut last, &tx).await.is_err() {
                            return;
                        }
                        if ev.seq <= last {
                            continue;
                        }
                    }
                    last = ev.seq;
                    let terminal = is_terminal(&ev.kind);
                    if tx.send(ev).await.is_err() || terminal {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if catch_up(&store, &run_id, &mut last, &tx).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                // A safety net: a run that ended elsewhere (another server) ends the stream.
                if finished(&store, &run_id).await {
                    let _ = catch_up(&store, &run_id, &mut last, &tx).await;
                    return;
                }
            }
        }
    }
}

async fn finished(store: &Store, run_id: &str) -> bool {
    match store.get_run(run_id).await {
        Ok(r) => r.status.is_terminal(),
        Err(_) => true,
    }
}

/// Sends stored events after `last`. A closing event in the history does not end the
/// stream by itself (a failed run can be retried); whether the run is over is asked anew.
async fn catch_up(
    store: &Store,
    run_id: &str,
    last: &mut u64,
    tx: &mpsc::Sender<Arc<StoredEvent>>,
) -> Result<(), ()> {
    loop {
        let page = store.list_events(run_id, *last, PAGE).await.map_err(|e| {
            tracing::warn!(error = %e, "reading run events failed");
        })?;
        let n = page.len();
        for ev in page {
            *last = ev.seq;
            tx.send(Arc::new(ev)).await.map_err(|_| ())?;
        }
        if n < PAGE as usize {
            return Ok(());
        }
    }
}
