-- Triggers (webhooks now; schedules and polling later) and webhook replay protection.
CREATE TABLE triggers (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    version INTEGER,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    secret TEXT,
    token TEXT UNIQUE,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE INDEX triggers_by_workflow ON triggers (workflow_id);
CREATE TABLE webhook_receipts (
    trigger_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (trigger_id, message_id)
);
CREATE INDEX webhook_receipts_by_expiry ON webhook_receipts (expires_at);
