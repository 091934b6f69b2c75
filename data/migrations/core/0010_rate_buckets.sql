-- Rate-limit buckets shared by every node (PostgreSQL; a SQLite server keeps
-- its buckets in memory): tokens left, when they were counted (Unix ms), and
-- whether the last request took one.
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_ms INTEGER NOT NULL,
    allowed INTEGER NOT NULL
) STRICT;
