-- Batch jobs (issue 18 §9). A batch is many commands posted at once; each one is a
-- task row of its own (the usual events, statuses and results), tagged with its batch
-- and its place in it. The dispatcher (runtime/src/batches.rs) queues a batch's
-- tasks on the bus a few at a time, at background priority, under a cluster-wide cap.
CREATE TABLE batches (
    id              TEXT        PRIMARY KEY,
    tenant          TEXT        NOT NULL,
    -- The client's key for a retried POST (NULL: none); one batch per key and tenant.
    idempotency_key TEXT,
    -- submitting: the POST is still storing it; open: tasks wait to be queued;
    -- closed: every task was queued; cancelled: the tasks that waited were cancelled.
    state           TEXT        NOT NULL,
    total           BIGINT      NOT NULL,
    created_at      TEXT        NOT NULL,
    ended_at        TEXT
);
CREATE UNIQUE INDEX batches_idempotency_idx ON batches (tenant, idempotency_key);
CREATE INDEX batches_state_idx ON batches (state, created_at);

-- A task's batch, its index in it, and where the dispatcher has it: waiting (not
-- queued yet), dispatched (queued on the bus, at dispatched_ms), cancelled (never
-- queued). NULL for a task of no batch.
ALTER TABLE tasks ADD COLUMN batch_id TEXT;
ALTER TABLE tasks ADD COLUMN batch_index BIGINT;
ALTER TABLE tasks ADD COLUMN batch_state TEXT;
ALTER TABLE tasks ADD COLUMN dispatched_ms BIGINT;
CREATE INDEX tasks_batch_idx ON tasks (batch_id, batch_index) WHERE batch_id IS NOT NULL;
-- The dispatcher's counts: batch tasks queued and not ended.
CREATE INDEX tasks_batch_in_flight_idx ON tasks (dispatched_ms)
    WHERE batch_state = 'dispatched' AND status IN ('pending', 'processing');
-- Cancelled tasks whose failure was never written (a crash between the two).
CREATE INDEX tasks_batch_cancelled_idx ON tasks (id)
    WHERE batch_state = 'cancelled' AND status = 'pending';
