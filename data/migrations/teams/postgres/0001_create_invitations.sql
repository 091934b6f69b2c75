-- Invitations to join an org (tenant table: its isolation is generated from the
-- teams plugin's declaration).
-- Only the token's keyed hash is stored.
CREATE TABLE tenant_invitations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    token_hash TEXT NOT NULL UNIQUE,
    invited_by TEXT,
    created_at TEXT NOT NULL,
    -- Unix milliseconds.
    expires_at BIGINT NOT NULL,
    accepted_at TEXT,
    accepted_by TEXT,
    revoked_at TEXT
);

CREATE INDEX tenant_invitations_org ON tenant_invitations (org_id, id);
CREATE INDEX tenant_invitations_email ON tenant_invitations (org_id, email);
