-- A config's presets (issue 18 §3): the `defaults` object, values an instance fills
-- in for the fields a request leaves out (NULL: none).
ALTER TABLE provider_configs ADD COLUMN defaults JSONB;
-- Its fallback chain (issue 18 §5): models tried next when a request for this
-- config's model fails retryably on every instance of it (a JSON array; NULL: none).
ALTER TABLE provider_configs ADD COLUMN fallback_models JSONB;
