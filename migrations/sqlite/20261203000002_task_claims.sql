-- A task's claim (issue 14): the process running it and until when (Unix ms). Moving a
-- task to run is an atomic claim; another delivery of the same command waits while the
-- lease is live and resumes the task only once it has expired.
ALTER TABLE tasks ADD COLUMN claimed_by TEXT;
ALTER TABLE tasks ADD COLUMN claim_until BIGINT NOT NULL DEFAULT 0;
