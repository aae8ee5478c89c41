-- Bring your own key and OAuth2 provider auth (issue 16 §6, §7).
-- owner: the tenant whose own account a config is (NULL: a shared account). It serves
-- only that tenant's requests. auth: the `auth` block (NULL: the api_key), with the
-- client secret and refresh token encrypted like API keys.
ALTER TABLE provider_configs ADD COLUMN owner TEXT;
ALTER TABLE provider_configs ADD COLUMN auth TEXT;
CREATE INDEX provider_configs_owner ON provider_configs (owner) WHERE owner IS NOT NULL;

-- How a tenant's own accounts are used next to the shared ones: prefer, only, never
-- (NULL: the configured default).
ALTER TABLE tenant_limits ADD COLUMN own_accounts TEXT
    CHECK (own_accounts IS NULL OR own_accounts IN ('prefer', 'only', 'never'));

-- Usage on a tenant's own account is recorded but not charged to its quotas.
ALTER TABLE usage_log ADD COLUMN charged BOOLEAN NOT NULL DEFAULT TRUE;
