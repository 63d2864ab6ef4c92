//! Checkpoints: the durable record of a run after every superstep (state, results, pending
//! work, attempt counters) plus the writes of tasks that finished inside an unfinished
//! superstep, so a resumed run never re-runs a finished node.

use crate::node::{Interrupt, NodeError, NodeOutput};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting to be picked up by a worker.
    Queued,
    /// Executing supersteps.
    Running,
    /// Paused at an interrupt.
    Waiting,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl RunStatus {
    /// True for completed, failed and cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// A node activation waiting for the next superstep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The node to run.
    pub node: Arc<str>,
    /// Nodes whose edges activated it (`__start__` for entry), in activation order.
    pub sources: Vec<Arc<str>>,
}

/// A task paused at an interrupt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// The node.
    pub node: String,
    /// Map item index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// What it asks.
    pub interrupt: Interrupt,
    /// When the wait expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_at: Option<DateTime<Utc>>,
}

/// How an edge set is chosen after a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Normal, branch, conditional and else edges.
    #[default]
    Normal,
    /// Error edges (on_error: route).
    Error,
    /// Timeout edges (interrupt expired).
    Timeout,
}

/// What a task (one node execution, or one map item) left behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriteKind {
    /// Finished: its output and update, and which edges to follow.
    Done {
        /// What the node produced (update already includes `assign`).
        output: NodeOutput,
        /// Which edges to follow.
        #[serde(default)]
        route: Route,
    },
    /// An attempt failed and a retry is scheduled.
    Attempt {
        /// The error.
        error: NodeError,
    },
    /// Failed for good (the run fails).
    Failed {
        /// The error.
        error: NodeError,
    },
    /// Paused.
    Interrupted {
        /// The interrupt.
        interrupt: Interrupt,
    },
}

/// A task's write within a superstep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskWrite {
    /// The node.
    pub node: String,
    /// Map item index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The attempt this write records.
    pub attempt: u32,
    /// What happened.
    #[serde(flatten)]
    pub kind: WriteKind,
}

/// The durable record of a run after a superstep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run.
    pub run_id: String,
    /// Sequential id within the run, from 0.
    pub id: u64,
    /// The checkpoint this one follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    /// Supersteps completed.
    pub step: u32,
    /// Run status at this point.
    pub status: RunStatus,
    /// The run input.
    pub input: Arc<Value>,
    /// The state.
    pub state: Arc<Value>,
    /// Outputs of finished nodes by id.
    pub results: crate::results::Results,
    /// Activations for the next superstep.
    pub pending: Vec<Pending>,
    /// Task writes of the unfinished superstep (waiting or failed runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<TaskWrite>,
    /// Interrupts the run waits on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Waiting>,
    /// The error a failed run ended with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
    /// Next event sequence number.
    pub next_seq: u64,
    /// Milliseconds spent executing so far (for the run timeout).
    #[serde(default)]
    pub active_ms: u64,
    /// When the checkpoint was written.
    pub created_at: DateTime<Utc>,
    /// Content hash of the workflow document this run executes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow_hash: String,
    /// The run and checkpoint this run was forked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<(String, u64)>,
}

/// A short description of a checkpoint for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    /// Checkpoint id.
    pub id: u64,
    /// Supersteps completed.
    pub step: u32,
    /// Status at that point.
    pub status: RunStatus,
    /// Nodes pending next.
    pub pending: Vec<String>,
    /// When written.
    pub created_at: DateTime<Utc>,
}

impl From<&Checkpoint> for CheckpointSummary {
    fn from(c: &Checkpoint) -> Self {
        Self {
            id: c.id,
            step: c.step,
            status: c.status,
            pending: c.pending.iter().map(|p| p.node.to_string()).collect(),
            created_at: c.created_at,
        }
    }
}

/// Checkpoint storage failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// I/O failure.
    #[error("checkpoint storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data could not be read.
    #[error("checkpoint data is corrupt: {0}")]
    Corrupt(String),
    /// The backend refused the write (e.g. a stale lease).
    #[error("checkpoint write refused: {0}")]
    Refused(String),
    /// Any other backend error.
    #[error("checkpoint backend error: {0}")]
    Backend(String),
}

/// Durable storage of checkpoints and task writes.
#[async_trait]
pub trait Checkpointer: Send + Sync {
    /// Stores a checkpoint.
    async fn put(&self, checkpoint: Checkpoint) -> Result<(), CheckpointError>;
    /// Stores a task write made while the superstep after `checkpoint` runs.
    async fn put_write(
        &self,
        run_id: &str,
        checkpoint: u64,
        write: TaskWrite,
    ) -> Result<(), CheckpointError>;
    /// One checkpoint.
    async fn get(&self, run_id: &str, id: u64) -> Result<Option<Checkpoint>, CheckpointError>;
    /// The newest checkpoint of a run.
    async fn latest(&self, run_id: &str) -> Result<Option<Checkpoint>, CheckpointError>;
    /// Every checkpoint of a run, oldest first.
    async fn list(&self, run_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError>;
    /// Task writes recorded after `checkpoint`.
    async fn writes(
        &self,
        run_id: &str,
        checkpoint: u64,
    ) -> Result<Vec<TaskWrite>, CheckpointError>;
}

#[derive(Default)]
struct RunRecord {
    checkpoints: Vec<Checkpoint>,
    writes: HashMap<u64, Vec<TaskWrite>>,
}

/// Keeps checkpoints in memory: tests, benchmarks and one-shot local runs.
#[derive(Default)]
pub struct MemoryCheckpointer {
    runs: Mutex<HashMap<String, RunRecord>>,
}

impl MemoryCheckpointer {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// Full checkpoints of a run, oldest first.
    pub fn all(&self, run_id: &str) -> Vec<Checkpoint> {
        self.lock()
            .get(run_id)
            .map(|r| r.checkpoints.clone())
            .unwrap_or_default()
    }
    /// Removes a checkpoint and everything after it (to simulate a crash before they were written).
    pub fn truncate(&self, run_id: &str, keep: u64) {
        if let Some(r) = self.lock().get_mut(run_id) {
            r.checkpoints.retain(|c| c.id <= keep);
            r.writes.retain(|k, _| *k <= keep);
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunRecord>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Checkpointer for MemoryCheckpointer {
    async fn put(&self, checkpoint: Checkpoint) -> Result<(), CheckpointError> {
        let mut runs = self.lock();
        let rec = runs.entry(checkpoint.run_id.clone()).or_default();
        rec.checkpoints.retain(|c| c.id != checkpoint.id);
        rec.checkpoints.push(checkpoint);
        Ok(())
    }
    async fn put_write(
        &self,
        run_id: &str,
        checkpoint: u64,
        write: TaskWrite,
    ) -> Result<(), CheckpointError> {
        self.lock()
            .entry(run_id.to_string())
            .or_default()
            .writes
            .entry(checkpoint)
            .or_default()
            .push(write);
        Ok(())
    }
    async fn get(&self, run_id: &str, id: u64) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self
            .lock()
            .get(run_id)
            .and_then(|r| r.checkpoints.iter().find(|c| c.id == id).cloned()))
    }
    async fn latest(&self, run_id: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self
            .lock()
            .get(run_id)
            .and_then(|r| r.checkpoints.iter().max_by_key(|c| c.id).cloned()))
    }
    async fn list(&self, run_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError> {
        let mut v: Vec<CheckpointSummary> = self
            .lock()
            .get(run_id)
            .map(|r| r.checkpoints.iter().map(CheckpointSummary::from).collect())
            .unwrap_or_default();
        v.sort_by_key(|c| c.id);
        Ok(v)
    }
    async fn writes(
        &self,
        run_id: &str,
        checkpoint: u64,
    ) -> Result<Vec<TaskWrite>, CheckpointError> {
        Ok(self
            .lock()
            .get(run_id)
            .and_then(|r| r.writes.get(&checkpoint).cloned())
            .unwrap_or_default())
    }
}

/// A run file's contents: its checkpoints and its task writes keyed by checkpoint id.
type RunFile = (Vec<Checkpoint>, Vec<(u64, TaskWrite)>);

/// One line of a run's checkpoint file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FileRecord {
    Checkpoint(Box<Checkpoint>),
    Write {
        checkpoint: u64,
        write: Box<TaskWrite>,
    },
}

/// Keeps checkpoints as append-only JSON Lines files, one per run, in a directory: lets
/// `orcheo run --resume` continue a local run in a later process.
pub struct FileCheckpointer {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl FileCheckpointer {
    /// Uses (and creates) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            lock: Mutex::new(()),
        })
    }
    fn path(&self, run_id: &str) -> Result<PathBuf, CheckpointError> {
        if run_id.is_empty() || run_id.contains(['/', '\\']) || run_id.starts_with('.') {
            return Err(CheckpointError::Backend(format!(
                "invalid run id {run_id:?}"
            )));
        }
        Ok(self.dir.join(format!("{run_id}.jsonl")))
    }
    fn append(&self, run_id: &str, rec: &FileRecord) -> Result<(), CheckpointError> {
        let path = self.path(run_id)?;
        let mut line =
            serde_json::to_vec(rec).map_err(|e| CheckpointError::Corrupt(e.to_string()))?;
        line.push(b'\n');
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(&line)?;
        // Checkpoints are synced; a task write lost to a power cut only means that task runs
        // again, so writes skip the (slow) sync.
        if matches!(rec, FileRecord::Checkpoint(_)) {
            f.sync_data()?;
        }
        Ok(())
    }
    fn read(&self, run_id: &str) -> Result<RunFile, CheckpointError> {
        let path = self.path(run_id)?;
        read_file(&path)
    }
    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn read_file(path: &Path) -> Result<RunFile, CheckpointError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e.into()),
    };
    let mut cps = Vec::new();
    let mut writes = Vec::new();
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .collect::<Result<_, _>>()?;
    let n = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<FileRecord>(&line) {
            Ok(FileRecord::Checkpoint(c)) => {
                cps.retain(|x: &Checkpoint| x.id != c.id);
                cps.push(*c)
            }
            Ok(FileRecord::Write { checkpoint, write }) => writes.push((checkpoint, *write)),
            // A torn last line from a crash mid-write is ignored; anything else is corruption.
            Err(_) if i + 1 == n => {}
            Err(e) => {
                return Err(CheckpointError::Corrupt(format!(
                    "{}: line {}: {e}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok((cps, writes))
}

#[async_trait]
impl Checkpointer for FileCheckpointer {
    async fn put(&self, checkpoint: Checkpoint) -> Result<(), CheckpointError> {
        let run_id = checkpoint.run_id.clone();
        self.append(&run_id, &FileRecord::Checkpoint(Box::new(checkpoint)))
    }
    async fn put_write(
        &self,
        run_id: &str,
        checkpoint: u64,
        write: TaskWrite,
    ) -> Result<(), CheckpointError> {
        self.append(
            run_id,
            &FileRecord::Write {
                checkpoint,
                write: Box::new(write),
            },
        )
    }
    async fn get(&self, run_id: &str, id: u64) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self.read(run_id)?.0.into_iter().find(|c| c.id == id))
    }
    async fn latest(&self, run_id: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self.read(run_id)?.0.into_iter().max_by_key(|c| c.id))
    }
    async fn list(&self, run_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError> {
        let mut v: Vec<CheckpointSummary> = self
            .read(run_id)?
            .0
            .iter()
            .map(CheckpointSummary::from)
            .collect();
        v.sort_by_key(|c| c.id);
        Ok(v)
    }
    async fn writes(
        &self,
        run_id: &str,
        checkpoint: u64,
    ) -> Result<Vec<TaskWrite>, CheckpointError> {
        Ok(self
            .read(run_id)?
            .1
            .into_iter()
            .filter(|(c, _)| *c == checkpoint)
            .map(|(_, w)| w)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(run: &str, id: u64) -> Checkpoint {
        Checkpoint {
            run_id: run.into(),
            id,
            parent: id.checked_sub(1),
            step: id as u32,
            status: RunStatus::Running,
            input: Arc::new(Value::Null),
            state: Arc::new(serde_json::json!({ "n": id })),
            results: Default::default(),
            pending: vec![],
            writes: vec![],
            waiting: vec![],
            error: None,
            next_seq: 1,
            active_ms: 0,
            created_at: Utc::now(),
            workflow_hash: String::new(),
            forked_from: None,
        }
    }

    #[tokio::test]
    async fn file_checkpointer_round_trips_and_survives_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("orcheo-cp-{}", uuid::Uuid::now_v7()));
        let store = FileCheckpointer::new(&dir).unwrap();
        store.put(cp("r1", 0)).await.unwrap();
        let w = TaskWrite {
            node: "a".into(),
            index: None,
            attempt: 1,
            kind: WriteKind::Done {
                output: NodeOutput::default(),
                route: Route::Normal,
            },
        };
        store.put_write("r1", 0, w.clone()).await.unwrap();
        store.put(cp("r1", 1)).await.unwrap();
        assert_eq!(store.latest("r1").await.unwrap().unwrap().id, 1);
        assert_eq!(store.writes("r1", 0).await.unwrap(), vec![w]);
        assert_eq!(store.list("r1").await.unwrap().len(), 2);
        assert!(store.latest("nobody").await.unwrap().is_none());
        // A crash mid-append leaves a torn last line: it is ignored.
        let path = dir.join("r1.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"checkpoint\": {\"run_id\": ").unwrap();
        assert_eq!(store.latest("r1").await.unwrap().unwrap().id, 1);
        // Corruption in the middle is an error, not silently skipped.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("garbage\n{text}")).unwrap();
        assert!(matches!(
            store.latest("r1").await,
            Err(CheckpointError::Corrupt(_))
        ));
        assert!(store.put(cp("../evil", 0)).await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn memory_checkpointer_truncates() {
        let store = MemoryCheckpointer::new();
        for i in 0..4 {
            store.put(cp("r", i)).await.unwrap();
        }
        store.truncate("r", 1);
        assert_eq!(store.latest("r").await.unwrap().unwrap().id, 1);
    }
}
