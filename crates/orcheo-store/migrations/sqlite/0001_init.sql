-- Orcheo schema v1 (SQLite). Times are epoch milliseconds; JSON is TEXT. Append-only run
-- data is stored WITHOUT ROWID: one B-tree per table, clustered by run.
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    latest_version INTEGER NOT NULL,
    max_concurrency INTEGER,
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE INDEX workflows_by_update ON workflows (updated_at DESC, id DESC);
CREATE TABLE workflow_tags (
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    tag TEXT NOT NULL,
    PRIMARY KEY (workflow_id, tag)
);
CREATE INDEX workflow_tags_by_tag ON workflow_tags (tag);
CREATE TABLE workflow_versions (
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    author TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, version)
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    origin TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    error TEXT,
    failed_node TEXT,
    output TEXT,
    waiting TEXT,
    resume_value TEXT,
    wake_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_lease ON runs (status, lease_until);
CREATE INDEX runs_by_workflow ON runs (workflow_id, created_at);
CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_wake ON runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE TABLE run_events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    run_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, id)
) WITHOUT ROWID;
CREATE TABLE task_writes (
    run_id TEXT NOT NULL,
    checkpoint INTEGER NOT NULL,
    n INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, checkpoint, n)
) WITHOUT ROWID;
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE TABLE login_tokens (
    hash TEXT PRIMARY KEY,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_time ON audit_log (at);
