-- Organizations (tenants) and memberships, and the views through which tenant
-- connections reach them. See core/src/tenancy.rs and ARCHITECTURE.md.
--
-- The pattern for every tenant table: the base table `tenant_<name>` carries
-- `org_id` (foreign key to organizations, ON DELETE CASCADE); the view `<name>` shows
-- only the rows of `current_org()`; INSTEAD OF triggers refuse rows of another org
-- and touch only the bound org's rows.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    suspended_at TEXT
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

CREATE INDEX tenant_memberships_user ON tenant_memberships (user_id, org_id);
CREATE INDEX tenant_memberships_org_id ON tenant_memberships (org_id, id);

-- The bound org itself.
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

-- Profiles of the bound org's members only (tenant code never reads `users`).
CREATE VIEW org_users AS
    SELECT id, email, name, email_verified_at IS NOT NULL AS email_verified FROM users
    WHERE id IN (SELECT user_id FROM tenant_memberships WHERE org_id = current_org());

-- The bound org's part of the audit log.
CREATE VIEW org_audit_log AS
    SELECT id, at, actor_id, action, target_type, target_id, org_id, ip, user_agent, details
    FROM audit_log WHERE org_id = current_org();
