-- Custom roles per org, and memberships whose role is a preset or a custom role's
-- key. SQLite cannot drop a CHECK, so the memberships table is rebuilt: the views
-- reading it go first (core's isolation recreates the `memberships` view after
-- the migrations; `org_users` is recreated here).
CREATE TABLE tenant_roles (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    -- A JSON array of permission keys.
    permissions TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (org_id, key)
) STRICT;

DROP VIEW org_users;
DROP VIEW memberships;

CREATE TABLE tenant_memberships_new (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (org_id, user_id)
) STRICT;
INSERT INTO tenant_memberships_new SELECT id, org_id, user_id, role, created_at, updated_at FROM tenant_memberships;
DROP TABLE tenant_memberships;
ALTER TABLE tenant_memberships_new RENAME TO tenant_memberships;
CREATE INDEX tenant_memberships_user ON tenant_memberships (user_id, org_id);
CREATE INDEX tenant_memberships_org_id ON tenant_memberships (org_id, id);
CREATE INDEX tenant_memberships_role ON tenant_memberships (org_id, role);

CREATE VIEW org_users AS
    SELECT id, email, name, email_verified_at IS NOT NULL AS email_verified FROM users
    WHERE id IN (SELECT user_id FROM tenant_memberships WHERE org_id = current_org());
