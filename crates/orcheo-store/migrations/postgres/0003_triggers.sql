-- Triggers (webhooks now; schedules and polling later) and webhook replay protection.
CREATE TABLE triggers (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    version BIGINT,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    secret TEXT,
    token TEXT UNIQUE,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX triggers_by_workflow ON triggers (workflow_id);
CREATE TABLE webhook_receipts (
    trigger_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (trigger_id, message_id)
);
CREATE INDEX webhook_receipts_by_expiry ON webhook_receipts (expires_at);
