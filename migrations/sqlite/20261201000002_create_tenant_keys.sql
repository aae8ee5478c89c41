-- API keys of tenants, for the OpenAI-compatible endpoints (PROTOCOL.md §4). Only a
-- SHA-256 of each key is kept; the key itself is shown once, when it is created.
CREATE TABLE tenant_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    key_hash   TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at TEXT
);
CREATE INDEX tenant_keys_tenant_idx ON tenant_keys (tenant);
