-- Switchyard schema, SQLite flavour. The PostgreSQL flavour in ../postgres mirrors it
-- table for table; keep the two in step.

-- One account of one provider (the seed's ai_model_configs). Rate-limit and priority
-- columns are real columns so operators can edit them with plain SQL.
CREATE TABLE provider_configs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT        NOT NULL UNIQUE,
    provider           TEXT        NOT NULL,
    kinds              TEXT       NOT NULL,
    model              TEXT,
    base_url           TEXT,
    api_key_ciphertext TEXT,
    enabled            BOOLEAN     NOT NULL DEFAULT TRUE,
    priority           INTEGER      NOT NULL DEFAULT 0,
    weight             INTEGER      NOT NULL DEFAULT 1,
    rpm                INTEGER,
    burst              INTEGER,
    max_concurrency    INTEGER,
    tpm                INTEGER,
    breaker            TEXT,
    timeout_ms         INTEGER      NOT NULL DEFAULT 60000,
    cost               TEXT,
    supports_images    BOOLEAN     NOT NULL DEFAULT FALSE,
    supports_files     BOOLEAN     NOT NULL DEFAULT FALSE,
    supports_audio     BOOLEAN     NOT NULL DEFAULT FALSE,
    supports_video     BOOLEAN     NOT NULL DEFAULT FALSE,
    plugin             TEXT,
    options            TEXT       NOT NULL DEFAULT '{}',
    description        TEXT,
    version            INTEGER      NOT NULL DEFAULT 1,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX provider_configs_provider_idx ON provider_configs (provider);
CREATE INDEX provider_configs_enabled_priority_idx ON provider_configs (enabled, priority DESC);

-- A hand-written UPDATE that does not bump the version gets it bumped, so change
-- detection (keyed by version) sees every edit.
CREATE TRIGGER provider_configs_bump_version AFTER UPDATE ON provider_configs
    FOR EACH ROW WHEN NEW.version = OLD.version
BEGIN
    UPDATE provider_configs
       SET version = OLD.version + 1,
           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE id = NEW.id;
END;

-- Names of [[providers]] entries already seeded from the config file: a seed is
-- applied once, so later operator edits or deletions are never overwritten.
CREATE TABLE config_seeds (
    name      TEXT        PRIMARY KEY,
    seeded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Installed WASM plugins, content-addressed and versioned.
CREATE TABLE plugins (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT        NOT NULL,
    version    TEXT        NOT NULL,
    sha256     TEXT        NOT NULL,
    bytes      BLOB       NOT NULL,
    active     BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (name, version)
);
CREATE INDEX plugins_sha256_idx ON plugins (sha256);

-- One generation request (the seed's image_generation_task). (tenant, request_id) is
-- the idempotency key.
CREATE TABLE tasks (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id         TEXT        NOT NULL,
    tenant             TEXT        NOT NULL,
    user_id            TEXT,
    kind               TEXT        NOT NULL,
    prompt             TEXT,
    input_images       TEXT,
    model              TEXT,
    size               TEXT,
    status             TEXT        NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    provider_config_id INTEGER,  -- no foreign key: a config may be deleted mid-request
    attempts           INTEGER      NOT NULL DEFAULT 0,
    command            TEXT       NOT NULL,
    error_code         TEXT,
    error_message      TEXT,
    raw_response       TEXT,
    terminal_event     TEXT,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at         TEXT,
    completed_at       TEXT,
    UNIQUE (tenant, request_id)
);
CREATE INDEX tasks_status_idx ON tasks (status);
CREATE INDEX tasks_created_at_idx ON tasks (created_at);
CREATE INDEX tasks_completed_at_idx ON tasks (completed_at);
CREATE INDEX tasks_model_idx ON tasks (model);

-- What a task produced (the seed's generation_result).
CREATE TABLE task_results (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        INTEGER      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    artifact_id    TEXT,
    url            TEXT,
    content_type   TEXT,
    bytes          INTEGER,
    width          INTEGER,
    height         INTEGER,
    sha256         TEXT,
    model          TEXT,
    seed           INTEGER,
    revised_prompt TEXT,
    text           TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX task_results_task_id_idx ON task_results (task_id);

-- Named request parameters (the seed's generation_parameter), one per task and name.
CREATE TABLE task_parameters (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name    TEXT   NOT NULL,
    value   TEXT   NOT NULL,
    UNIQUE (task_id, name)
);

-- One row per finished attempt that consumed something.
CREATE TABLE usage_log (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id            INTEGER REFERENCES tasks (id) ON DELETE SET NULL,
    tenant             TEXT             NOT NULL,
    user_id            TEXT,
    provider_config_id INTEGER,
    provider           TEXT             NOT NULL,
    model              TEXT,
    kind               TEXT             NOT NULL,
    images             INTEGER           NOT NULL DEFAULT 0,
    input_tokens       INTEGER           NOT NULL DEFAULT 0,
    output_tokens      INTEGER           NOT NULL DEFAULT 0,
    cost_usd           REAL NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX usage_log_tenant_created_idx ON usage_log (tenant, created_at);

-- Limits per tenant (user_id '' = the whole tenant) and period.
CREATE TABLE quotas (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT        NOT NULL,
    user_id      TEXT        NOT NULL DEFAULT '',
    period       TEXT        NOT NULL CHECK (period IN ('day', 'month')),
    max_requests INTEGER,
    max_images   INTEGER,
    max_cost_usd REAL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (tenant, user_id, period)
);

-- Reusable system prompts (the seed's prompt templates).
CREATE TABLE system_prompt_templates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT        NOT NULL UNIQUE,
    kind       TEXT        NOT NULL,
    template   TEXT        NOT NULL,
    enabled    BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Process-wide facts, e.g. the master-key check value.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
