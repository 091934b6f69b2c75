-- Login sessions and their rotating refresh tokens (see core/src/identity/sessions.rs).
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    -- Unix milliseconds, compared in SQL and in the session check.
    idle_expires_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    revoked_at TEXT,
    revoked_reason TEXT
);

CREATE INDEX sessions_user ON sessions (user_id, id);

-- Only hashes are stored. A token with rotated_at set was already exchanged:
-- presenting it again revokes its session.
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    rotated_at TEXT
);

CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
