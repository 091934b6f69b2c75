-- Billing: the plan catalogue and webhook inbox (system tables), and per-org billing
-- state, usage and invoices (tenant tables: their isolation is generated from the
-- billing plugin's declarations).

CREATE TABLE billing_plans (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    currency TEXT NOT NULL,
    interval TEXT NOT NULL CHECK (interval IN ('month', 'year')),
    stripe_price_id TEXT UNIQUE,
    seat_limit BIGINT CHECK (seat_limit IS NULL OR seat_limit >= 1),
    -- {"metric": {"limit": n, "over": "block"|"bill", "unit_price_cents": n, "unit_size": n}}
    quotas TEXT NOT NULL DEFAULT '{}',
    features TEXT NOT NULL DEFAULT '[]',
    trial_days BIGINT NOT NULL DEFAULT 0 CHECK (trial_days >= 0),
    is_default BIGINT NOT NULL DEFAULT 0,
    archived BIGINT NOT NULL DEFAULT 0,
    position BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Exactly one default plan: the one every org is on until it subscribes.
CREATE UNIQUE INDEX billing_plans_one_default ON billing_plans (is_default) WHERE is_default = 1;

INSERT INTO billing_plans (id, name, description, price_cents, currency, interval, created_at, updated_at, is_default)
VALUES ('free', 'Free', 'The default plan', 0, 'usd', 'month', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 1);

-- Which org a Stripe customer belongs to: the routing index webhook processing
-- reads before it can bind to the org. It holds no tenant data.
CREATE TABLE billing_customers (
    customer_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL UNIQUE REFERENCES organizations (id) ON DELETE CASCADE
);

-- Every Stripe delivery, once per event id.
CREATE TABLE billing_webhook_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    api_version TEXT,
    stripe_created BIGINT NOT NULL,
    payload TEXT NOT NULL,
    received_at TEXT NOT NULL,
    processed_at TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    outcome TEXT
);

CREATE INDEX billing_webhook_events_received ON billing_webhook_events (received_at);

-- Instance-wide counters (local invoice numbers), advanced only by triggers.
CREATE TABLE billing_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO billing_counters (name, value) VALUES ('invoice', 0);

CREATE TABLE tenant_billing_accounts (
    org_id TEXT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    plan_id TEXT NOT NULL,
    status TEXT NOT NULL,
    stripe_customer_id TEXT,
    stripe_subscription_id TEXT,
    stripe_item_id TEXT,
    quantity BIGINT,
    current_period_start TEXT NOT NULL,
    current_period_end TEXT NOT NULL,
    cancel_at_period_end BIGINT NOT NULL DEFAULT 0,
    trial_end TEXT,
    past_due_since TEXT,
    -- Stripe `created` of the newest subscription event applied: older ones are stale.
    stripe_version BIGINT NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

CREATE TABLE tenant_usage_events (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    idempotency_key TEXT NOT NULL,
    actor_id TEXT,
    period_start TEXT NOT NULL,
    created_at TEXT NOT NULL,
    reported_at TEXT,
    UNIQUE (org_id, idempotency_key)
);

CREATE INDEX tenant_usage_events_period ON tenant_usage_events (org_id, period_start, metric);

CREATE TABLE tenant_invoices (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('stripe', 'local')),
    stripe_invoice_id TEXT UNIQUE,
    -- Local invoices: the instance-wide sequence number, set by a trigger on insert.
    seq BIGINT UNIQUE,
    number TEXT,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    subtotal BIGINT NOT NULL,
    tax BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL,
    amount_due BIGINT NOT NULL,
    amount_paid BIGINT NOT NULL DEFAULT 0,
    period_start TEXT,
    period_end TEXT,
    lines TEXT NOT NULL DEFAULT '[]',
    hosted_url TEXT,
    pdf_url TEXT,
    stripe_version BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (org_id, source, period_start)
);

CREATE INDEX tenant_invoices_org ON tenant_invoices (org_id, id);

-- SECURITY DEFINER: the counter is a system table the tenant role cannot write.
CREATE FUNCTION tenant_invoices_number() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    next BIGINT;
BEGIN
    -- The row lock on the counter serializes numbering across transactions.
    UPDATE billing_counters SET value = value + 1 WHERE name = 'invoice' RETURNING value INTO next;
    NEW.seq := next;
    NEW.number := 'INV-' || lpad(next::text, 6, '0');
    RETURN NEW;
END
$$;

CREATE TRIGGER tenant_invoices_number BEFORE INSERT ON tenant_invoices
    FOR EACH ROW WHEN (NEW.source = 'local') EXECUTE FUNCTION tenant_invoices_number();

-- A finalized local invoice never changes, but for its payment status.
CREATE FUNCTION tenant_invoices_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a finalized invoice is immutable';
END
$$;

CREATE TRIGGER tenant_invoices_immutable BEFORE UPDATE ON tenant_invoices
    FOR EACH ROW WHEN (OLD.source = 'local' AND OLD.seq IS NOT NULL AND (
        NEW.total IS DISTINCT FROM OLD.total OR NEW.subtotal IS DISTINCT FROM OLD.subtotal
        OR NEW.lines IS DISTINCT FROM OLD.lines OR NEW.number IS DISTINCT FROM OLD.number
        OR NEW.seq IS DISTINCT FROM OLD.seq OR NEW.currency IS DISTINCT FROM OLD.currency
        OR NEW.period_start IS DISTINCT FROM OLD.period_start OR NEW.period_end IS DISTINCT FROM OLD.period_end
        OR NEW.amount_due IS DISTINCT FROM OLD.amount_due OR NEW.created_at IS DISTINCT FROM OLD.created_at))
    EXECUTE FUNCTION tenant_invoices_immutable();

-- The catalogue as every connection may read it: plans are public, not tenant data,
-- and the entitlements seam reads them on tenant connections.
CREATE VIEW plan_catalog WITH (security_invoker = true) AS
    SELECT id, name, description, price_cents, currency, interval, stripe_price_id, seat_limit, quotas, features,
        trial_days, is_default, archived, position
    FROM billing_plans;
