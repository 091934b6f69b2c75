-- Org API keys (service accounts). The key is `plk_<prefix>_<secret>`: the prefix
-- finds the row, only a keyed hash of the secret is kept. Keys belong to the org
-- and outlive their creator's membership. Times are RFC 3339 text except
-- `expires_ms` (Unix ms, compared on every use).
CREATE TABLE tenant_api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    -- A JSON array of permission keys.
    permissions TEXT NOT NULL,
    -- Who created it: `user:<id>` or `api_key:<id>`.
    created_by TEXT NOT NULL,
    expires_at TEXT,
    expires_ms INTEGER,
    created_at TEXT NOT NULL,
    last_used_at TEXT
) STRICT;

CREATE INDEX tenant_api_keys_org ON tenant_api_keys (org_id, id);
