-- An invitation's role is a preset or a custom role's key. SQLite cannot drop a
-- CHECK: the table is rebuilt (core's isolation recreates its view afterwards).
DROP VIEW invitations;
CREATE TABLE tenant_invitations_new (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    invited_by TEXT,
    created_at TEXT NOT NULL,
    -- Unix milliseconds.
    expires_at INTEGER NOT NULL,
    accepted_at TEXT,
    accepted_by TEXT,
    revoked_at TEXT
) STRICT;
INSERT INTO tenant_invitations_new SELECT id, org_id, email, role, token_hash, invited_by, created_at,
    expires_at, accepted_at, accepted_by, revoked_at FROM tenant_invitations;
DROP TABLE tenant_invitations;
ALTER TABLE tenant_invitations_new RENAME TO tenant_invitations;
CREATE INDEX tenant_invitations_org ON tenant_invitations (org_id, id);
CREATE INDEX tenant_invitations_email ON tenant_invitations (org_id, email);
