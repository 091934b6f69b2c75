-- Organizations (tenants) and memberships. On PostgreSQL the isolation of tenant
-- tables (row-level security, views) is generated from their declarations at the
-- end of every migration run; this file creates the tables and core's own views.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    suspended_at TEXT
);

CREATE TABLE tenant_memberships (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (org_id, user_id)
);

CREATE INDEX tenant_memberships_user ON tenant_memberships (user_id, org_id);
CREATE INDEX tenant_memberships_org_id ON tenant_memberships (org_id, id);

-- The bound org's binding, as the generated isolation defines it (created here as
-- well so the views below can name it).
CREATE OR REPLACE FUNCTION current_org() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('plinth.org', true), '') $$;

-- The bound org itself. security_invoker: a plain view would run with its owner's
-- rights and show every org.
CREATE VIEW org WITH (security_invoker = true) AS
    SELECT id, name, slug, created_at, updated_at, suspended_at FROM organizations WHERE id = current_org()
    WITH LOCAL CHECK OPTION;

-- Profiles of the bound org's members only (tenant code never reads `users`).
CREATE VIEW org_users WITH (security_invoker = true) AS
    SELECT id, email, name, email_verified_at IS NOT NULL AS email_verified FROM users
    WHERE id IN (SELECT user_id FROM tenant_memberships WHERE org_id = current_org());
