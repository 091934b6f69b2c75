-- Feature flag definitions (platform-wide, managed by staff) and per-org overrides
-- (tenant table; see core's 0007 for the pattern).
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

-- No foreign key to flags: a system connection may not cascade into tenant tables,
-- so overrides of a deleted flag stay behind, unreachable (see ARCHITECTURE.md).
CREATE TABLE tenant_flag_overrides (
    flag_id TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, flag_id)
) STRICT;

CREATE INDEX tenant_flag_overrides_flag ON tenant_flag_overrides (flag_id);

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
