-- Every change to provider_configs, however made (API, CLI or hand-written SQL), is
-- announced on LISTEN channel switchyard_config_changed, so runtimes reload at once.
-- The payload names the schema: channels are per database, schemas share them.
CREATE FUNCTION provider_configs_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('switchyard_config_changed', json_build_object(
        'schema', TG_TABLE_SCHEMA,
        'id', COALESCE(NEW.id, OLD.id),
        'op', lower(TG_OP),
        'version', COALESCE(NEW.version, OLD.version)
    )::text);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER provider_configs_notify AFTER INSERT OR UPDATE OR DELETE ON provider_configs
    FOR EACH ROW EXECUTE FUNCTION provider_configs_notify();
