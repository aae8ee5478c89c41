-- Whether admission restricted a request to its tenant's own provider accounts (a
-- tenant over its quota that prefers its own accounts; issue 16 §6). Written with
-- each attempt's start, so that a task resumed after a crash keeps the restriction
-- instead of reading the tenant's setting again and charging shared accounts.
ALTER TABLE tasks ADD COLUMN own_accounts_only BOOLEAN NOT NULL DEFAULT FALSE;
