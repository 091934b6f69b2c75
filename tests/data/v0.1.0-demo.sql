BEGIN TRANSACTION;
CREATE TABLE audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    archived_at TEXT NOT NULL,
    archive_file TEXT NOT NULL
) STRICT;
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    actor_id TEXT,
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    org_id TEXT,
    ip TEXT,
    user_agent TEXT,
    details TEXT NOT NULL DEFAULT '{}'
, seq INTEGER, personal_digest TEXT, prev_hash TEXT, hash TEXT) STRICT;
CREATE TABLE audit_personal (
    entry_id TEXT PRIMARY KEY,
    salt TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    data TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE TABLE audit_pruning (active INTEGER NOT NULL) STRICT;
CREATE TABLE billing_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO "billing_counters" VALUES('invoice',0);
CREATE TABLE billing_customers (
    customer_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL UNIQUE REFERENCES organizations (id) ON DELETE CASCADE
) STRICT;
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
INSERT INTO "billing_plans" VALUES('free','Free','For trying things out',0,'usd','month',NULL,5,'{"api_calls":{"limit":1000,"over":"block","unit_price_cents":0,"unit_size":1}}','[]',0,1,0,0,'2026-11-29T12:06:58Z','2026-11-29T12:06:58.680Z');
INSERT INTO "billing_plans" VALUES('pro','Pro','For growing teams',2900,'usd','month',NULL,25,'{"api_calls":{"limit":100000,"over":"bill","unit_price_cents":1,"unit_size":100}}','["audit_export","priority_support"]',14,0,0,1,'2026-11-29T12:06:58.681Z','2026-11-29T12:06:58.681Z');
INSERT INTO "billing_plans" VALUES('business','Business','For organizations with many teams',9900,'usd','month',NULL,NULL,'{"api_calls":{"limit":1000000,"over":"bill","unit_price_cents":1,"unit_size":1000}}','["audit_export","priority_support","sso"]',14,0,0,2,'2026-11-29T12:06:58.681Z','2026-11-29T12:06:58.681Z');
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
CREATE TABLE flags (
    -- Overrides refer to the id, so a deleted and re-created key starts clean.
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    value_type TEXT NOT NULL CHECK (value_type IN ('boolean', 'string', 'number', 'json')),
    -- JSON values.
    default_value TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    -- JSON array of rules, evaluated in order; the first match wins.
    rules TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
INSERT INTO "flags" VALUES('01a22733-8978-777c-97ad-bdf50a012d4e','beta-reports','Reports for orgs on the pro plan','boolean','false',1,'[{"kind":"plans","plans":["pro","enterprise"],"value":true}]','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
INSERT INTO "flags" VALUES('01a22733-8978-777c-97ad-bdf610faec93','staff-tools','Internal tools for platform staff accounts','boolean','false',1,'[{"kind":"attribute","subject":"user","attribute":"email_domain","operator":"one_of","values":["plinth.test"],"value":true}]','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
INSERT INTO "flags" VALUES('01a22733-8978-777c-97ad-bdf76bec15d3','checkout-v2','The new checkout, rolled out to half the orgs','boolean','false',1,'[{"kind":"rollout","percentage":50.0,"by":"org","value":true}]','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
INSERT INTO "flags" VALUES('01a22733-8978-777c-97ad-bdf84e01c1b5','max-projects','How many projects an org may create','number','3',1,'[{"kind":"attribute","subject":"user","attribute":"role","operator":"one_of","values":["owner"],"value":10}]','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
INSERT INTO "flags" VALUES('01a22733-8978-777c-97ad-bdf93babcec0','new-dashboard','The redesigned dashboard, for Acme first','boolean','false',1,'[{"kind":"orgs","org_ids":["01a22733-8978-777c-97ad-bdefe0e0dd7b"],"value":true}]','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
INSERT INTO "flags" VALUES('01a22733-8978-777c-97ad-bdfaa73056aa','welcome-message','The greeting on the home page','string','"Welcome!"',1,'[{"kind":"users","user_ids":["01a22733-892b-76f7-9965-f58adf24bb9b"],"value":"Welcome back, Olivia!"}]','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    -- Unix milliseconds: compared in SQL to find due jobs.
    run_at INTEGER NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
) STRICT;
CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    to_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
) STRICT;
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    suspended_at TEXT
) STRICT;
INSERT INTO "organizations" VALUES('01a22733-8978-777c-97ad-bdefe0e0dd7b','Acme','acme','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z',NULL);
CREATE TABLE plinth_migrations (
    owner TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (owner, version)
) STRICT;
INSERT INTO "plinth_migrations" VALUES('billing',1,'create_billing','3e6d050d429605b2f4da3b5ee3dbe19e9e61eda639e5149880739127ce2cf358','2026-11-29T12:06:58.579Z');
INSERT INTO "plinth_migrations" VALUES('billing',2,'usage_totals','f50c8db5e80a1fd098df601bb4456e9590feb3290ab5b4fdec9844a8336fa709','2026-11-29T12:06:58.580Z');
INSERT INTO "plinth_migrations" VALUES('core',1,'create_jobs','156b2a2d70878727172ba416563b0b37d96fb8609a18c329add507fbf31fb266','2026-11-29T12:06:58.580Z');
INSERT INTO "plinth_migrations" VALUES('core',2,'create_users','2c3eec7823ea349526c7b479a99497171f9cc3642a2c7365d9a16ce2f836680f','2026-11-29T12:06:58.580Z');
INSERT INTO "plinth_migrations" VALUES('core',3,'create_sessions','0541e6a899156c74e6e8f076646f6e59407bc16b5f9e1bb40a301132b7dc9f55','2026-11-29T12:06:58.580Z');
INSERT INTO "plinth_migrations" VALUES('core',4,'create_user_tokens','87901acf71ea7da043aded0806fd6cbd050e40a0be9bd8a29afcbfbebab936ec','2026-11-29T12:06:58.580Z');
INSERT INTO "plinth_migrations" VALUES('core',5,'create_mail_outbox','40361a9a6c5cfed07988d0288590b411b146ecd265b666aed3075c8a6866eed4','2026-11-29T12:06:58.580Z');
INSERT INTO "plinth_migrations" VALUES('core',6,'create_audit_log','d74a2ea552794ff3b51fe1ea8ea26e1391cb8685682b70e088188eb2281224da','2026-11-29T12:06:58.580Z');
INSERT INTO "plinth_migrations" VALUES('core',7,'create_tenancy','f3385aafa4a6d3be8a7153d30bb5286a1a0c627b1b5c7618fbabbfa13c61bf8c','2026-11-29T12:06:58.580Z');
INSERT INTO "plinth_migrations" VALUES('core',8,'chain_audit_log','c53cbbc9a0ca65eedc31e57445958c1ef73ec8cd88ebc4908ad4247be0b6e26d','2026-11-29T12:06:58.582Z');
INSERT INTO "plinth_migrations" VALUES('flags',1,'create_flags','acc74192563c4e1c99d742571fb778fd808249ce803418f237cd2e4affae0a73','2026-11-29T12:06:58.583Z');
INSERT INTO "plinth_migrations" VALUES('teams',1,'create_invitations','daf7239ec8d9df3acfa779b69a8a708bc720c48f5101f87bcba534b7c8304bff','2026-11-29T12:06:58.583Z');
INSERT INTO "plinth_migrations" VALUES('teams',2,'create_activity','011abdae6368f4ace2cf1839a30b645e629aeacf10c30d4c748317e9b2994b23','2026-11-29T12:06:58.583Z');
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    rotated_at TEXT
) STRICT;
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    -- Unix milliseconds, compared in SQL and in the session check.
    idle_expires_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip TEXT,
    user_agent TEXT,
    revoked_at TEXT,
    revoked_reason TEXT
, impersonator_id TEXT) STRICT;
CREATE TABLE tenant_activity (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    actor_id TEXT,
    action TEXT NOT NULL,
    subject_type TEXT,
    subject_id TEXT,
    summary TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
) STRICT;
INSERT INTO "tenant_activity" VALUES('01a22733-8978-777c-97ad-bdf4dd55c22b','01a22733-8978-777c-97ad-bdefe0e0dd7b',NULL,'org.created',NULL,NULL,'Acme was created with its demo team','{}','2026-11-29T12:06:58.680Z');
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
INSERT INTO "tenant_billing_accounts" VALUES('01a22733-8978-777c-97ad-bdefe0e0dd7b','pro','active',NULL,NULL,NULL,NULL,'2026-11-29T12:06:58.681134882Z','2026-12-29T12:06:58.681134882Z',0,NULL,NULL,0,'2026-11-29T12:06:58.681Z');
CREATE TABLE tenant_flag_overrides (
    flag_id TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, flag_id)
) STRICT;
CREATE TABLE tenant_invitations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    token_hash TEXT NOT NULL UNIQUE,
    invited_by TEXT,
    created_at TEXT NOT NULL,
    -- Unix milliseconds.
    expires_at INTEGER NOT NULL,
    accepted_at TEXT,
    accepted_by TEXT,
    revoked_at TEXT
) STRICT;
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
CREATE TABLE tenant_memberships (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (org_id, user_id)
) STRICT;
INSERT INTO "tenant_memberships" VALUES('01a22733-8978-777c-97ad-bdf0e4013d9f','01a22733-8978-777c-97ad-bdefe0e0dd7b','01a22733-892b-76f7-9965-f58adf24bb9b','owner','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
INSERT INTO "tenant_memberships" VALUES('01a22733-8978-777c-97ad-bdf1c44ae027','01a22733-8978-777c-97ad-bdefe0e0dd7b','01a22733-893d-7773-9205-c5ee34816ef5','admin','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
INSERT INTO "tenant_memberships" VALUES('01a22733-8978-777c-97ad-bdf22593ae52','01a22733-8978-777c-97ad-bdefe0e0dd7b','01a22733-8951-76d9-84d3-14b73ffedfdc','member','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
INSERT INTO "tenant_memberships" VALUES('01a22733-8978-777c-97ad-bdf337b85987','01a22733-8978-777c-97ad-bdefe0e0dd7b','01a22733-8964-707b-a076-548c8841aaa6','viewer','2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
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
CREATE TABLE tenant_usage_totals (
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period_start TEXT NOT NULL,
    metric TEXT NOT NULL,
    total INTEGER NOT NULL,
    PRIMARY KEY (org_id, period_start, metric)
) STRICT, WITHOUT ROWID;
CREATE TABLE user_tokens (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    created_at TEXT NOT NULL,
    -- Unix milliseconds.
    expires_at INTEGER NOT NULL,
    used_at TEXT
) STRICT;
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_platform_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_platform_admin IN (0, 1)),
    email_verified_at TEXT,
    disabled_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
INSERT INTO "users" VALUES('01a22733-892b-76f7-9965-f58adf24bb9b','owner@acme.test','Olivia Owner','$argon2id$v=19$m=19456,t=2,p=1$LxWiSh6QhhoPBWWS017J3Q$qlKo09GE1Sd+srh8ZMcSHMqK7cMvIewfo/BgJ+/8pPk',0,'2026-11-29T12:06:58.603Z',NULL,'2026-11-29T12:06:58.603Z','2026-11-29T12:06:58.603Z');
INSERT INTO "users" VALUES('01a22733-893d-7773-9205-c5ee34816ef5','admin@acme.test','Adam Admin','$argon2id$v=19$m=19456,t=2,p=1$ulXCYEcfN+9KjaeIWB36lg$4CmopK45I8ho1LviOjrWnu0q2WL9WRiUAvBC8VZEGLo',0,'2026-11-29T12:06:58.621Z',NULL,'2026-11-29T12:06:58.621Z','2026-11-29T12:06:58.621Z');
INSERT INTO "users" VALUES('01a22733-8951-76d9-84d3-14b73ffedfdc','member@acme.test','Mia Member','$argon2id$v=19$m=19456,t=2,p=1$rU8MbwBRuYLFCDPTKs5vUg$KnHPtA/qeqit2aHG1yRKUnnu5XIlpRMLxiVzNz83IRQ',0,'2026-11-29T12:06:58.641Z',NULL,'2026-11-29T12:06:58.641Z','2026-11-29T12:06:58.641Z');
INSERT INTO "users" VALUES('01a22733-8964-707b-a076-548c8841aaa6','viewer@acme.test','Victor Viewer','$argon2id$v=19$m=19456,t=2,p=1$bfA/fxxoLbnLbtp5ipwNcQ$BW5nPKqNm9W387sMhurUQnMlccd3ZMMa80G9P6CT0Fc',0,'2026-11-29T12:06:58.660Z',NULL,'2026-11-29T12:06:58.660Z','2026-11-29T12:06:58.660Z');
INSERT INTO "users" VALUES('01a22733-8978-777c-97ad-bdee8092a3e5','staff@plinth.test','Sam Staff','$argon2id$v=19$m=19456,t=2,p=1$42tegceOiOWhD8/e+NC50Q$X/ppwKL5IhSJB3kLAm9/e609j8XwBGAe/DQrhR79Pl4',1,'2026-11-29T12:06:58.680Z',NULL,'2026-11-29T12:06:58.680Z','2026-11-29T12:06:58.680Z');
CREATE UNIQUE INDEX billing_plans_one_default ON billing_plans (is_default) WHERE is_default = 1;
CREATE INDEX billing_webhook_events_received ON billing_webhook_events (received_at);
CREATE INDEX tenant_usage_events_period ON tenant_usage_events (org_id, period_start, metric);
CREATE INDEX tenant_invoices_org ON tenant_invoices (org_id, id);
CREATE INDEX jobs_due ON jobs (status, run_at);
CREATE INDEX sessions_user ON sessions (user_id, id);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE INDEX user_tokens_user ON user_tokens (user_id, purpose);
CREATE INDEX mail_outbox_to ON mail_outbox (to_address, id);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_org ON audit_log (org_id, id);
CREATE INDEX tenant_memberships_user ON tenant_memberships (user_id, org_id);
CREATE INDEX tenant_memberships_org_id ON tenant_memberships (org_id, id);
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);
CREATE INDEX tenant_flag_overrides_flag ON tenant_flag_overrides (flag_id);
CREATE INDEX tenant_invitations_org ON tenant_invitations (org_id, id);
CREATE INDEX tenant_invitations_email ON tenant_invitations (org_id, email);
CREATE INDEX tenant_activity_org ON tenant_activity (org_id, id);
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
CREATE TRIGGER usage_events_update INSTEAD OF UPDATE ON usage_events BEGIN
    SELECT RAISE(ABORT, 'usage events are immutable') WHERE NEW.quantity IS NOT OLD.quantity
        OR NEW.metric IS NOT OLD.metric OR NEW.org_id IS NOT OLD.org_id;
    UPDATE tenant_usage_events SET reported_at = NEW.reported_at WHERE org_id = current_org() AND id = OLD.id;
END;
CREATE TRIGGER usage_events_delete INSTEAD OF DELETE ON usage_events BEGIN
    SELECT RAISE(ABORT, 'usage events are immutable');
END;
CREATE TRIGGER tenant_invoices_number AFTER INSERT ON tenant_invoices WHEN NEW.source = 'local' BEGIN
    UPDATE billing_counters SET value = value + 1 WHERE name = 'invoice';
    UPDATE tenant_invoices SET
        seq = (SELECT value FROM billing_counters WHERE name = 'invoice'),
        number = 'INV-' || printf('%06d', (SELECT value FROM billing_counters WHERE name = 'invoice'))
    WHERE id = NEW.id;
END;
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
CREATE TRIGGER invoices_delete INSTEAD OF DELETE ON invoices BEGIN
    SELECT RAISE(ABORT, 'invoices are never deleted');
END;
CREATE VIEW plan_catalog AS
    SELECT id, name, description, price_cents, currency, interval, stripe_price_id, seat_limit, quotas, features,
        trial_days, is_default, archived, position
    FROM billing_plans;
CREATE TRIGGER tenant_usage_events_total AFTER INSERT ON tenant_usage_events BEGIN
    INSERT INTO tenant_usage_totals (org_id, period_start, metric, total)
    VALUES (NEW.org_id, NEW.period_start, NEW.metric, NEW.quantity)
    ON CONFLICT (org_id, period_start, metric) DO UPDATE SET total = total + excluded.total;
END;
CREATE VIEW usage_totals AS
    SELECT org_id, period_start, metric, total FROM tenant_usage_totals WHERE org_id = current_org();
CREATE TRIGGER usage_totals_insert INSTEAD OF INSERT ON usage_totals BEGIN
    SELECT RAISE(ABORT, 'usage totals are derived from usage events');
END;
CREATE TRIGGER usage_totals_update INSTEAD OF UPDATE ON usage_totals BEGIN
    SELECT RAISE(ABORT, 'usage totals are derived from usage events');
END;
CREATE TRIGGER usage_totals_delete INSTEAD OF DELETE ON usage_totals BEGIN
    SELECT RAISE(ABORT, 'usage totals are derived from usage events');
END;
CREATE VIEW org AS
    SELECT id, name, slug, created_at, updated_at, suspended_at FROM organizations WHERE id = current_org();
CREATE TRIGGER org_insert INSTEAD OF INSERT ON org BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.id IS NOT current_org();
    INSERT INTO organizations (id, name, slug, created_at, updated_at, suspended_at)
    VALUES (NEW.id, NEW.name, NEW.slug, NEW.created_at, NEW.updated_at, NEW.suspended_at);
END;
CREATE TRIGGER org_update INSTEAD OF UPDATE ON org BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.id IS NOT current_org();
    UPDATE organizations SET name = NEW.name, slug = NEW.slug, updated_at = NEW.updated_at,
        suspended_at = NEW.suspended_at
    WHERE id = OLD.id AND id = current_org();
END;
CREATE TRIGGER org_delete INSTEAD OF DELETE ON org BEGIN
    DELETE FROM organizations WHERE id = OLD.id AND id = current_org();
END;
CREATE VIEW memberships AS
    SELECT id, org_id, user_id, role, created_at, updated_at FROM tenant_memberships WHERE org_id = current_org();
CREATE TRIGGER memberships_insert INSTEAD OF INSERT ON memberships BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_memberships (id, org_id, user_id, role, created_at, updated_at)
    VALUES (NEW.id, NEW.org_id, NEW.user_id, NEW.role, NEW.created_at, NEW.updated_at);
END;
CREATE TRIGGER memberships_update INSTEAD OF UPDATE ON memberships BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    UPDATE tenant_memberships SET user_id = NEW.user_id, role = NEW.role, created_at = NEW.created_at,
        updated_at = NEW.updated_at
    WHERE id = OLD.id AND org_id = current_org();
END;
CREATE TRIGGER memberships_delete INSTEAD OF DELETE ON memberships BEGIN
    DELETE FROM tenant_memberships WHERE id = OLD.id AND org_id = current_org();
END;
CREATE VIEW org_users AS
    SELECT id, email, name, email_verified_at IS NOT NULL AS email_verified FROM users
    WHERE id IN (SELECT user_id FROM tenant_memberships WHERE org_id = current_org());
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_pruning WHERE active = 1) BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE VIEW org_audit_log AS
    SELECT a.id, a.at, a.actor_id, a.action, a.target_type, a.target_id, a.org_id, p.ip, p.user_agent, a.details,
        p.data AS personal
    FROM audit_log a LEFT JOIN audit_personal p ON p.entry_id = a.id
    WHERE a.org_id = current_org();
CREATE VIEW flag_overrides AS
    SELECT flag_id, org_id, value, created_at, updated_at FROM tenant_flag_overrides
    WHERE org_id = current_org();
CREATE TRIGGER flag_overrides_insert INSTEAD OF INSERT ON flag_overrides BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_flag_overrides (flag_id, org_id, value, created_at, updated_at)
    VALUES (NEW.flag_id, NEW.org_id, NEW.value, NEW.created_at, NEW.updated_at);
END;
CREATE TRIGGER flag_overrides_update INSTEAD OF UPDATE ON flag_overrides BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    UPDATE tenant_flag_overrides SET flag_id = NEW.flag_id, value = NEW.value, created_at = NEW.created_at,
        updated_at = NEW.updated_at
    WHERE org_id = current_org() AND flag_id = OLD.flag_id;
END;
CREATE TRIGGER flag_overrides_delete INSTEAD OF DELETE ON flag_overrides BEGIN
    DELETE FROM tenant_flag_overrides WHERE org_id = current_org() AND flag_id = OLD.flag_id;
END;
CREATE VIEW invitations AS
    SELECT id, org_id, email, role, token_hash, invited_by, created_at, expires_at, accepted_at, accepted_by,
        revoked_at
    FROM tenant_invitations WHERE org_id = current_org();
CREATE TRIGGER invitations_insert INSTEAD OF INSERT ON invitations BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at,
        accepted_at, accepted_by, revoked_at)
    VALUES (NEW.id, NEW.org_id, NEW.email, NEW.role, NEW.token_hash, NEW.invited_by, NEW.created_at,
        NEW.expires_at, NEW.accepted_at, NEW.accepted_by, NEW.revoked_at);
END;
CREATE TRIGGER invitations_update INSTEAD OF UPDATE ON invitations BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    UPDATE tenant_invitations SET email = NEW.email, role = NEW.role, token_hash = NEW.token_hash,
        invited_by = NEW.invited_by, created_at = NEW.created_at, expires_at = NEW.expires_at,
        accepted_at = NEW.accepted_at, accepted_by = NEW.accepted_by, revoked_at = NEW.revoked_at
    WHERE id = OLD.id AND org_id = current_org();
END;
CREATE TRIGGER invitations_delete INSTEAD OF DELETE ON invitations BEGIN
    DELETE FROM tenant_invitations WHERE id = OLD.id AND org_id = current_org();
END;
CREATE VIEW activity AS
    SELECT id, org_id, actor_id, action, subject_type, subject_id, summary, details, created_at
    FROM tenant_activity WHERE org_id = current_org();
CREATE TRIGGER activity_insert INSTEAD OF INSERT ON activity BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_activity (id, org_id, actor_id, action, subject_type, subject_id, summary, details,
        created_at)
    VALUES (NEW.id, NEW.org_id, NEW.actor_id, NEW.action, NEW.subject_type, NEW.subject_id, NEW.summary,
        NEW.details, NEW.created_at);
END;
CREATE TRIGGER activity_update INSTEAD OF UPDATE ON activity BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    UPDATE tenant_activity SET actor_id = NEW.actor_id, action = NEW.action, subject_type = NEW.subject_type,
        subject_id = NEW.subject_id, summary = NEW.summary, details = NEW.details, created_at = NEW.created_at
    WHERE id = OLD.id AND org_id = current_org();
END;
CREATE TRIGGER activity_delete INSTEAD OF DELETE ON activity BEGIN
    DELETE FROM tenant_activity WHERE id = OLD.id AND org_id = current_org();
END;
COMMIT;
