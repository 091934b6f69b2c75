-- Single-use tokens mailed to users (email verification, password reset). Only
-- hashes are stored; a token is redeemed by one atomic UPDATE.
CREATE TABLE user_tokens (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    created_at TEXT NOT NULL,
    -- Unix milliseconds.
    expires_at BIGINT NOT NULL,
    used_at TEXT
);

CREATE INDEX user_tokens_user ON user_tokens (user_id, purpose);
