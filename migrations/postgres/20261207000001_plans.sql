-- Named plans (issue 16 §4): a plan is a tenant-wide quota over a period; a tenant
-- assigned a plan gets it as a quota row marked with the plan's name (so it is
-- reserved from and counted like any quota), unless the tenant has its own quota for
-- that period, which wins. Seed 004's plans ship as editable defaults.
CREATE TABLE plans (
    name         TEXT             PRIMARY KEY,
    period       TEXT             NOT NULL CHECK (period IN ('day', 'month')),
    max_requests BIGINT,
    max_images   BIGINT,
    max_tokens   BIGINT,
    max_cost_usd DOUBLE PRECISION,
    updated_at   TIMESTAMPTZ      NOT NULL DEFAULT (now())
);

INSERT INTO plans (name, period, max_tokens, max_images) VALUES
    ('basic', 'month', 100000, 50),
    ('professional', 'month', 500000, 200),
    ('enterprise', 'month', 2000000, 1000);

CREATE TABLE tenant_plans (
    tenant     TEXT        PRIMARY KEY,
    plan       TEXT        NOT NULL REFERENCES plans (name),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT (now())
);

-- NULL: the tenant's own quota; else the plan it comes from.
ALTER TABLE quotas ADD COLUMN plan TEXT;
