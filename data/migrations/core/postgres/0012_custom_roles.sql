-- Custom roles per org, and memberships whose role is a preset or a custom role's key.
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
);

ALTER TABLE tenant_memberships DROP CONSTRAINT tenant_memberships_role_check;
CREATE INDEX tenant_memberships_role ON tenant_memberships (org_id, role);
