-- Issue #19, wake-ups across nodes: the database tells every node's listener (`LISTEN`) what
-- changed, so nodes do not wait for their polls (which stay, as the fallback after a lost
-- connection).
--
-- - `picloud_jobs`: an async job was committed (an accepted request, a trigger's job, a replayed
--   dead letter). Idle dispatchers claim at once. Row-level with a `WHEN`: a sync request's row
--   (the hot path) costs the check of one column, no function call; PostgreSQL sends one
--   notification per transaction however many jobs it inserts.
-- - `picloud_changes`, payload an app id: the app, one of its scripts or one of its routes
--   changed. Route indexes (and with them the module versions) reload that app at once.
-- (`picloud_executions`, records for live tails, is sent by the records' writer itself.)

CREATE FUNCTION picloud_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('picloud_jobs', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify_jobs AFTER INSERT ON outbox
    FOR EACH ROW WHEN (NEW.mode = 'async') EXECUTE FUNCTION picloud_notify_jobs();

CREATE FUNCTION picloud_notify_app_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    IF TG_TABLE_NAME = 'apps' THEN
        PERFORM pg_notify('picloud_changes', changed.id);
    ELSE
        PERFORM pg_notify('picloud_changes', changed.app_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER apps_notify_change AFTER INSERT OR UPDATE OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_app_change();
CREATE TRIGGER scripts_notify_change AFTER INSERT OR UPDATE OR DELETE ON scripts
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_app_change();
CREATE TRIGGER routes_notify_change AFTER INSERT OR UPDATE OR DELETE ON routes
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_app_change();
