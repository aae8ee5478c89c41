-- Retention (issue 17 §2). A tenant's own policy: how many days its finished tasks,
-- their images and its usage rows are kept (NULL: the configured default; 0: for
-- ever). The cleaner (runtime/src/retention.rs) applies it in bounded batches.
CREATE TABLE tenant_retention (
    tenant         TEXT        PRIMARY KEY,
    tasks_days     BIGINT,
    artifacts_days BIGINT,
    usage_days     BIGINT,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A result whose image outlived artifacts_days: the task row stays, its claim on the
-- image does not (the image is deleted once nothing kept references it).
ALTER TABLE task_results ADD COLUMN released_at TIMESTAMPTZ;
ALTER TABLE artifact_uploads ADD COLUMN created_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX artifact_uploads_created_idx ON artifact_uploads (created_at);
CREATE INDEX task_results_created_idx ON task_results (created_at) WHERE released_at IS NULL;
CREATE INDEX usage_log_created_idx ON usage_log (created_at);
-- Deleting a task sets its usage rows' task_id to NULL: found by this index, not by a
-- scan of the whole log per task.
CREATE INDEX usage_log_task_id_idx ON usage_log (task_id);

-- Images that lost a reference (by content hash). Queued in the same transaction as
-- the delete that dropped the reference, so a crash never leaves an image orphaned.
CREATE TABLE artifact_gc (
    artifact_id TEXT        PRIMARY KEY,
    queued_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Cluster-wide leases: which process runs a once-per-cluster job, until when (Unix
-- ms), and when a run last started.
CREATE TABLE leases (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_ms  BIGINT NOT NULL,
    last_run_ms BIGINT NOT NULL
);
