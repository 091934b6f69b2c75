-- Feature flag definitions (platform-wide, managed by staff) and per-org overrides
-- (tenant table: its isolation is generated from the flags plugin's declaration).
CREATE TABLE flags (
    -- Overrides refer to the id, so a deleted and re-created key starts clean.
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    value_type TEXT NOT NULL CHECK (value_type IN ('boolean', 'string', 'number', 'json')),
    -- JSON values.
    default_value TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    -- JSON array of rules, evaluated in order; the first match wins.
    rules TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- No foreign key to flags: a system connection may not cascade into tenant tables,
-- so overrides of a deleted flag stay behind, unreachable (see ARCHITECTURE.md).
CREATE TABLE tenant_flag_overrides (
    flag_id TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, flag_id)
);

CREATE INDEX tenant_flag_overrides_flag ON tenant_flag_overrides (flag_id);
