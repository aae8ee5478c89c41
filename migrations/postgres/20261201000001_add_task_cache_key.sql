-- The key of a task's generation input (tenant, kind, input, route, params), so a
-- command with `cache: true` can be answered from an identical earlier request's
-- result (PROTOCOL.md §2).
ALTER TABLE tasks ADD COLUMN cache_key TEXT;
CREATE INDEX tasks_cache_key_idx ON tasks (cache_key) WHERE cache_key IS NOT NULL;
