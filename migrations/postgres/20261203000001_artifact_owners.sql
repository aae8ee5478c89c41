-- Who owns an artifact (issue 14): the tenants whose requests produced it (task_results,
-- looked up by artifact_id) and the tenants who uploaded it (an OpenAI-compatible edit's
-- files). Without a signed link an artifact is served only to the admin or an owner,
-- and a command may name only its own tenant's artifacts as inputs.
CREATE INDEX task_results_artifact_id_idx ON task_results (artifact_id);
CREATE TABLE artifact_uploads (
    artifact_id TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    PRIMARY KEY (artifact_id, tenant)
);
