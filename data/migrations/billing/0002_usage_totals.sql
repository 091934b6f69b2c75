-- Running usage totals per org, period and metric, kept by a trigger as events are
-- recorded: quota checks and usage summaries read one row instead of summing a
-- period's events (which grew with every write).

CREATE TABLE tenant_usage_totals (
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period_start TEXT NOT NULL,
    metric TEXT NOT NULL,
    total INTEGER NOT NULL,
    PRIMARY KEY (org_id, period_start, metric)
) STRICT, WITHOUT ROWID;

-- No backfill: this migration ships with 0001, before any usage exists.

CREATE TRIGGER tenant_usage_events_total AFTER INSERT ON tenant_usage_events BEGIN
    INSERT INTO tenant_usage_totals (org_id, period_start, metric, total)
    VALUES (NEW.org_id, NEW.period_start, NEW.metric, NEW.quantity)
    ON CONFLICT (org_id, period_start, metric) DO UPDATE SET total = total + excluded.total;
END;

CREATE VIEW usage_totals AS
    SELECT org_id, period_start, metric, total FROM tenant_usage_totals WHERE org_id = current_org();

-- Totals follow the ledger only: written by the trigger above, never directly.
CREATE TRIGGER usage_totals_insert INSTEAD OF INSERT ON usage_totals BEGIN
    SELECT RAISE(ABORT, 'usage totals are derived from usage events');
END;

CREATE TRIGGER usage_totals_update INSTEAD OF UPDATE ON usage_totals BEGIN
    SELECT RAISE(ABORT, 'usage totals are derived from usage events');
END;

CREATE TRIGGER usage_totals_delete INSTEAD OF DELETE ON usage_totals BEGIN
    SELECT RAISE(ABORT, 'usage totals are derived from usage events');
END;
