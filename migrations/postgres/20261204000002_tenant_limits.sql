-- Per-tenant limits at intake (issue 16): requests per minute and requests at once,
-- for the tenant as a whole and for each of its users. NULL: the configured default.
CREATE TABLE tenant_limits (
    tenant           TEXT        PRIMARY KEY,
    rpm              BIGINT,
    concurrency      BIGINT,
    user_rpm         BIGINT,
    user_concurrency BIGINT,
    updated_at       TIMESTAMPTZ NOT NULL
);
