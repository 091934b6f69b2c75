-- Accounts. Emails are stored normalised (trimmed, lowercase) so uniqueness is
-- case-insensitive.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_platform_admin BIGINT NOT NULL DEFAULT 0 CHECK (is_platform_admin IN (0, 1)),
    email_verified_at TEXT,
    disabled_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
