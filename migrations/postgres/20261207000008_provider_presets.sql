-- A config's presets (issue 18 §3): the `defaults` object, values an instance fills
-- in for the fields a request leaves out (NULL: none).
ALTER TABLE provider_configs ADD COLUMN defaults JSONB;
