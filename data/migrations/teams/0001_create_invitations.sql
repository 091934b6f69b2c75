-- Invitations to join an org (tenant table; see core's 0007 for the pattern).
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
    expires_at INTEGER NOT NULL,
    accepted_at TEXT,
    accepted_by TEXT,
    revoked_at TEXT
) STRICT;

CREATE INDEX tenant_invitations_org ON tenant_invitations (org_id, id);
CREATE INDEX tenant_invitations_email ON tenant_invitations (org_id, email);

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
