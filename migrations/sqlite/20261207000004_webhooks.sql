-- Webhooks (issue 17 §3), SQLite flavour: a tenant's endpoints, and one delivery per endpoint and
-- event (the delivery log, and the retry queue: `pending` rows are due at
-- `next_attempt_ms`, claimed by one process until `claimed_until_ms`).
CREATE TABLE webhooks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant            TEXT        NOT NULL,
    url               TEXT        NOT NULL,
    events            TEXT        NOT NULL,
    secret_ciphertext TEXT        NOT NULL,
    enabled           BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX webhooks_tenant_idx ON webhooks (tenant);

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id       BIGINT      NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    tenant           TEXT        NOT NULL,
    event_id         TEXT        NOT NULL,
    event_type       TEXT        NOT NULL,
    request_id       TEXT        NOT NULL,
    payload          TEXT        NOT NULL,
    status           TEXT        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT      NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT      NOT NULL,
    claimed_until_ms BIGINT      NOT NULL DEFAULT 0,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       TEXT        NOT NULL,
    finished_at      TEXT       ,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_ms)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);
