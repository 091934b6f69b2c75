-- A tamper-evident, append-only audit log (see core/src/audit.rs).
--
-- Each entry gets a sequence number and the SHA-256 of its predecessor's hash and
-- its own content; any edit or deletion outside the application breaks the chain
-- at that entry. Personal data (IP, user agent, emails) moves to audit_personal,
-- outside the chain but committed to by a salted digest, so that erasing a person
-- deletes it without breaking the chain.
ALTER TABLE audit_log ADD COLUMN seq INTEGER;
ALTER TABLE audit_log ADD COLUMN personal_digest TEXT;
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);

CREATE TABLE audit_personal (
    entry_id TEXT PRIMARY KEY,
    salt TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    data TEXT NOT NULL DEFAULT '{}'
) STRICT;

-- Where the chain continues after older entries were archived and pruned.
CREATE TABLE audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    archived_at TEXT NOT NULL,
    archive_file TEXT NOT NULL
) STRICT;

-- Set only inside core's retention transaction.
CREATE TABLE audit_pruning (active INTEGER NOT NULL) STRICT;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_pruning WHERE active = 1) BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

DROP VIEW org_audit_log;
CREATE VIEW org_audit_log AS
    SELECT a.id, a.at, a.actor_id, a.action, a.target_type, a.target_id, a.org_id, p.ip, p.user_agent, a.details,
        p.data AS personal
    FROM audit_log a LEFT JOIN audit_personal p ON p.entry_id = a.id
    WHERE a.org_id = current_org();

-- Impersonation sessions name the staff member behind them.
ALTER TABLE sessions ADD COLUMN impersonator_id TEXT;
