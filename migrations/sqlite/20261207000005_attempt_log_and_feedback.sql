-- Statistics per provider config (issue 18 §1): one row per attempt, written with the
-- request's terminal row, so statistics survive config edits and restarts. Kept for
-- `usage_days` by retention.
CREATE TABLE attempt_log (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id            BIGINT,  -- no foreign key: statistics outlive their tasks
    tenant             TEXT        NOT NULL,
    kind               TEXT        NOT NULL,
    provider_config_id BIGINT      NOT NULL,
    succeeded          BOOLEAN     NOT NULL,
    error_code         TEXT,
    latency_ms         BIGINT      NOT NULL,
    created_at         TEXT        NOT NULL
);
CREATE INDEX attempt_log_config_created_idx ON attempt_log (provider_config_id, created_at);
CREATE INDEX attempt_log_created_idx ON attempt_log (created_at);

-- Feedback on a job's result (issue 18 §7): by the job's own tenant, one per job.
CREATE TABLE task_feedback (
    task_id            BIGINT      PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    tenant             TEXT        NOT NULL,
    provider_config_id BIGINT,
    rating             BIGINT      CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
    favorite           BOOLEAN     NOT NULL DEFAULT FALSE,
    comment            TEXT,
    updated_at         TEXT        NOT NULL
);
CREATE INDEX task_feedback_config_idx ON task_feedback (provider_config_id, updated_at);
