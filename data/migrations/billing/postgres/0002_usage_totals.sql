-- Running usage totals per org, period and metric, kept by a trigger as events are
-- recorded: quota checks and usage summaries read one row instead of summing a
-- period's events (which grew with every write).

CREATE TABLE tenant_usage_totals (
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period_start TEXT NOT NULL,
    metric TEXT NOT NULL,
    total BIGINT NOT NULL,
    PRIMARY KEY (org_id, period_start, metric)
);

-- No backfill: this migration ships with 0001, before any usage exists.

-- SECURITY DEFINER: totals are read-only to the tenant role; the owner's write is
-- still held to the bound org by the forced row-level security.
CREATE FUNCTION tenant_usage_events_total() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO tenant_usage_totals (org_id, period_start, metric, total)
    VALUES (NEW.org_id, NEW.period_start, NEW.metric, NEW.quantity)
    ON CONFLICT (org_id, period_start, metric) DO UPDATE SET total = tenant_usage_totals.total + excluded.total;
    RETURN NEW;
END
$$;

CREATE TRIGGER tenant_usage_events_total AFTER INSERT ON tenant_usage_events
    FOR EACH ROW EXECUTE FUNCTION tenant_usage_events_total();
