-- The seq of the last event published for a task, so a command resumed by another
-- process after a crash continues the event sequence instead of restarting it.
ALTER TABLE tasks ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
