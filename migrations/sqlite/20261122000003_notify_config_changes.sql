-- SQLite has no NOTIFY: runtimes poll a fingerprint of provider_configs instead (see
-- Store::config_fingerprint). This migration keeps the two folders in step.
SELECT 1;
