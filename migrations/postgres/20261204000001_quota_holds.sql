-- Quotas that cannot overshoot (issue 16). Each quota keeps, per period, what it
-- counted (`used`) and what requests admitted but not finished hold (`reserved`).
-- Admission reserves with one conditional UPDATE per quota (it only succeeds while
-- used + reserved + the ask stays within the limit); the terminal write settles the
-- hold with the actual usage in the same transaction; a failure releases it.
ALTER TABLE quotas ADD COLUMN max_tokens BIGINT;

CREATE TABLE quota_counters (
    quota_id          BIGINT           NOT NULL REFERENCES quotas (id) ON DELETE CASCADE,
    period_start      TIMESTAMPTZ      NOT NULL,
    requests          BIGINT           NOT NULL DEFAULT 0,
    images            BIGINT           NOT NULL DEFAULT 0,
    tokens            BIGINT           NOT NULL DEFAULT 0,
    cost_usd          DOUBLE PRECISION NOT NULL DEFAULT 0,
    reserved_requests BIGINT           NOT NULL DEFAULT 0,
    reserved_images   BIGINT           NOT NULL DEFAULT 0,
    reserved_tokens   BIGINT           NOT NULL DEFAULT 0,
    reserved_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (quota_id, period_start)
);

-- One row per quota a request holds until it ends, keyed by the request (a
-- synchronous call has no task row until after its answer).
CREATE TABLE quota_holds (
    tenant       TEXT             NOT NULL,
    request_id   TEXT             NOT NULL,
    quota_id     BIGINT           NOT NULL REFERENCES quotas (id) ON DELETE CASCADE,
    period_start TIMESTAMPTZ      NOT NULL,
    requests     BIGINT           NOT NULL,
    images       BIGINT           NOT NULL,
    tokens       BIGINT           NOT NULL,
    cost_usd     DOUBLE PRECISION NOT NULL,
    created_at   TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (tenant, request_id, quota_id)
);
CREATE INDEX quota_holds_created_idx ON quota_holds (created_at);
