-- Billing: the plan catalogue and webhook inbox (system tables), and per-org billing
-- state, usage and invoices (tenant tables behind filtered views).

CREATE TABLE billing_plans (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    currency TEXT NOT NULL,
    interval TEXT NOT NULL CHECK (interval IN ('month', 'year')),
    stripe_price_id TEXT UNIQUE,
    seat_limit INTEGER CHECK (seat_limit IS NULL OR seat_limit >= 1),
    -- {"metric": {"limit": n, "over": "block"|"bill", "unit_price_cents": n, "unit_size": n}}
    quotas TEXT NOT NULL DEFAULT '{}',
    features TEXT NOT NULL DEFAULT '[]',
    trial_days INTEGER NOT NULL DEFAULT 0 CHECK (trial_days >= 0),
    is_default INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0,
    position INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

-- Exactly one default plan: the one every org is on until it subscribes.
CREATE UNIQUE INDEX billing_plans_one_default ON billing_plans (is_default) WHERE is_default = 1;

INSERT INTO billing_plans (id, name, description, price_cents, currency, interval, created_at, updated_at, is_default)
VALUES ('free', 'Free', 'The default plan', 0, 'usd', 'month', strftime('%Y-%m-%dT%H:%M:%SZ'), strftime('%Y-%m-%dT%H:%M:%SZ'), 1);

-- Which org a Stripe customer belongs to: the routing index webhook processing
-- reads before it can bind to the org. It holds no tenant data.
CREATE TABLE billing_customers (
    customer_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL UNIQUE REFERENCES organizations (id) ON DELETE CASCADE
) STRICT;

-- Every Stripe delivery, once per event id.
CREATE TABLE billing_webhook_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    api_version TEXT,
    stripe_created INTEGER NOT NULL,
    payload TEXT NOT NULL,
    received_at TEXT NOT NULL,
    processed_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    outcome TEXT
) STRICT;

CREATE INDEX billing_webhook_events_received ON billing_webhook_events (received_at);

-- Instance-wide counters (local invoice numbers), advanced only by triggers.
CREATE TABLE billing_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;

INSERT INTO billing_counters (name, value) VALUES ('invoice', 0);

CREATE TABLE tenant_billing_accounts (
    org_id TEXT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    plan_id TEXT NOT NULL,
    status TEXT NOT NULL,
    stripe_customer_id TEXT,
    stripe_subscription_id TEXT,
    stripe_item_id TEXT,
    quantity INTEGER,
    current_period_start TEXT NOT NULL,
    current_period_end TEXT NOT NULL,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
    trial_end TEXT,
    past_due_since TEXT,
    -- Stripe `created` of the newest subscription event applied: older ones are stale.
    stripe_version INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
) STRICT;

CREATE VIEW billing_accounts AS
    SELECT org_id, plan_id, status, stripe_customer_id, stripe_subscription_id, stripe_item_id, quantity,
        current_period_start, current_period_end, cancel_at_period_end, trial_end, past_due_since,
        stripe_version, updated_at
    FROM tenant_billing_accounts WHERE org_id = current_org();

CREATE TRIGGER billing_accounts_insert INSTEAD OF INSERT ON billing_accounts BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_billing_accounts (org_id, plan_id, status, stripe_customer_id, stripe_subscription_id,
        stripe_item_id, quantity, current_period_start, current_period_end, cancel_at_period_end, trial_end,
        past_due_since, stripe_version, updated_at)
    VALUES (NEW.org_id, NEW.plan_id, NEW.status, NEW.stripe_customer_id, NEW.stripe_subscription_id,
        NEW.stripe_item_id, NEW.quantity, NEW.current_period_start, NEW.current_period_end,
        coalesce(NEW.cancel_at_period_end, 0), NEW.trial_end, NEW.past_due_since,
        coalesce(NEW.stripe_version, 0), NEW.updated_at);
END;

CREATE TRIGGER billing_accounts_update INSTEAD OF UPDATE ON billing_accounts BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    UPDATE tenant_billing_accounts SET plan_id = NEW.plan_id, status = NEW.status,
        stripe_customer_id = NEW.stripe_customer_id, stripe_subscription_id = NEW.stripe_subscription_id,
        stripe_item_id = NEW.stripe_item_id, quantity = NEW.quantity,
        current_period_start = NEW.current_period_start, current_period_end = NEW.current_period_end,
        cancel_at_period_end = NEW.cancel_at_period_end, trial_end = NEW.trial_end,
        past_due_since = NEW.past_due_since, stripe_version = NEW.stripe_version, updated_at = NEW.updated_at
    WHERE org_id = current_org();
END;

CREATE TRIGGER billing_accounts_delete INSTEAD OF DELETE ON billing_accounts BEGIN
    DELETE FROM tenant_billing_accounts WHERE org_id = current_org();
END;

CREATE TABLE tenant_usage_events (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    idempotency_key TEXT NOT NULL,
    actor_id TEXT,
    period_start TEXT NOT NULL,
    created_at TEXT NOT NULL,
    reported_at TEXT,
    UNIQUE (org_id, idempotency_key)
) STRICT;

CREATE INDEX tenant_usage_events_period ON tenant_usage_events (org_id, period_start, metric);

CREATE VIEW usage_events AS
    SELECT id, org_id, metric, quantity, idempotency_key, actor_id, period_start, created_at, reported_at
    FROM tenant_usage_events WHERE org_id = current_org();

CREATE TRIGGER usage_events_insert INSTEAD OF INSERT ON usage_events BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_usage_events (id, org_id, metric, quantity, idempotency_key, actor_id, period_start,
        created_at, reported_at)
    VALUES (NEW.id, NEW.org_id, NEW.metric, NEW.quantity, NEW.idempotency_key, NEW.actor_id, NEW.period_start,
        NEW.created_at, NEW.reported_at);
END;

-- Recorded usage is a ledger: only the report stamp changes.
CREATE TRIGGER usage_events_update INSTEAD OF UPDATE ON usage_events BEGIN
    SELECT RAISE(ABORT, 'usage events are immutable') WHERE NEW.quantity IS NOT OLD.quantity
        OR NEW.metric IS NOT OLD.metric OR NEW.org_id IS NOT OLD.org_id;
    UPDATE tenant_usage_events SET reported_at = NEW.reported_at WHERE org_id = current_org() AND id = OLD.id;
END;

CREATE TRIGGER usage_events_delete INSTEAD OF DELETE ON usage_events BEGIN
    SELECT RAISE(ABORT, 'usage events are immutable');
END;

CREATE TABLE tenant_invoices (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('stripe', 'local')),
    stripe_invoice_id TEXT UNIQUE,
    -- Local invoices: the instance-wide sequence number, set by a trigger on insert.
    seq INTEGER UNIQUE,
    number TEXT,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    subtotal INTEGER NOT NULL,
    tax INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL,
    amount_due INTEGER NOT NULL,
    amount_paid INTEGER NOT NULL DEFAULT 0,
    period_start TEXT,
    period_end TEXT,
    lines TEXT NOT NULL DEFAULT '[]',
    hosted_url TEXT,
    pdf_url TEXT,
    stripe_version INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (org_id, source, period_start)
) STRICT;

CREATE INDEX tenant_invoices_org ON tenant_invoices (org_id, id);

CREATE TRIGGER tenant_invoices_number AFTER INSERT ON tenant_invoices WHEN NEW.source = 'local' BEGIN
    UPDATE billing_counters SET value = value + 1 WHERE name = 'invoice';
    UPDATE tenant_invoices SET
        seq = (SELECT value FROM billing_counters WHERE name = 'invoice'),
        number = 'INV-' || printf('%06d', (SELECT value FROM billing_counters WHERE name = 'invoice'))
    WHERE id = NEW.id;
END;

-- A finalized local invoice never changes, but for its payment status.
CREATE TRIGGER tenant_invoices_immutable BEFORE UPDATE ON tenant_invoices
WHEN OLD.source = 'local' AND OLD.seq IS NOT NULL AND (
    NEW.total IS NOT OLD.total OR NEW.subtotal IS NOT OLD.subtotal OR NEW.lines IS NOT OLD.lines
    OR NEW.number IS NOT OLD.number OR NEW.seq IS NOT OLD.seq OR NEW.currency IS NOT OLD.currency
    OR NEW.period_start IS NOT OLD.period_start OR NEW.period_end IS NOT OLD.period_end
    OR NEW.amount_due IS NOT OLD.amount_due OR NEW.created_at IS NOT OLD.created_at) BEGIN
    SELECT RAISE(ABORT, 'a finalized invoice is immutable');
END;

CREATE VIEW invoices AS
    SELECT id, org_id, source, stripe_invoice_id, seq, number, status, currency, subtotal, tax, total, amount_due,
        amount_paid, period_start, period_end, lines, hosted_url, pdf_url, stripe_version, created_at, updated_at
    FROM tenant_invoices WHERE org_id = current_org();

CREATE TRIGGER invoices_insert INSTEAD OF INSERT ON invoices BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_invoices (id, org_id, source, stripe_invoice_id, number, status, currency, subtotal, tax,
        total, amount_due, amount_paid, period_start, period_end, lines, hosted_url, pdf_url, stripe_version,
        created_at, updated_at)
    VALUES (NEW.id, NEW.org_id, NEW.source, NEW.stripe_invoice_id, NEW.number, NEW.status, NEW.currency,
        NEW.subtotal, coalesce(NEW.tax, 0), NEW.total, NEW.amount_due, coalesce(NEW.amount_paid, 0),
        NEW.period_start, NEW.period_end, coalesce(NEW.lines, '[]'), NEW.hosted_url, NEW.pdf_url,
        coalesce(NEW.stripe_version, 0), NEW.created_at, NEW.updated_at);
END;

CREATE TRIGGER invoices_update INSTEAD OF UPDATE ON invoices BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    UPDATE tenant_invoices SET number = NEW.number, status = NEW.status, currency = NEW.currency,
        subtotal = NEW.subtotal, tax = NEW.tax, total = NEW.total, amount_due = NEW.amount_due,
        amount_paid = NEW.amount_paid, period_start = NEW.period_start, period_end = NEW.period_end,
        lines = NEW.lines, hosted_url = NEW.hosted_url, pdf_url = NEW.pdf_url,
        stripe_version = NEW.stripe_version, updated_at = NEW.updated_at
    WHERE org_id = current_org() AND id = OLD.id;
END;

-- Invoices are records: they go only with their org.
CREATE TRIGGER invoices_delete INSTEAD OF DELETE ON invoices BEGIN
    SELECT RAISE(ABORT, 'invoices are never deleted');
END;

-- The catalogue as every connection may read it: plans are public, not tenant data,
-- and the entitlements seam reads them on tenant connections.
CREATE VIEW plan_catalog AS
    SELECT id, name, description, price_cents, currency, interval, stripe_price_id, seat_limit, quotas, features,
        trial_days, is_default, archived, position
    FROM billing_plans;
