-- Rate-limit buckets shared by every node (keyed by an HMAC of the limited
-- key, which names an email or an address): tokens left, when they were counted
-- (Unix ms), and whether the last request took one.
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_ms BIGINT NOT NULL,
    allowed INTEGER NOT NULL
);
