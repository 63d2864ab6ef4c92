-- The credential vault: metadata in `credentials`, sealed secrets (AES-256-GCM text, never a
-- plaintext) one row per version in `credential_versions`, and `vault_meta` for the key canary
-- and the passphrase salt.
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL,
    public_data TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    expires_at INTEGER,
    rotate_every_days INTEGER,
    rotated_at INTEGER NOT NULL,
    last_used_at INTEGER,
    last_test TEXT,
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX credentials_live_name ON credentials (name) WHERE deleted_at IS NULL;
CREATE TABLE credential_versions (
    credential_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    sealed TEXT,
    key_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER,
    PRIMARY KEY (credential_id, version)
);
CREATE TABLE vault_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
