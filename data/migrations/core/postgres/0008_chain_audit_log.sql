-- A tamper-evident, append-only audit log (see core/src/audit.rs): the chain
-- columns, personal data outside the chain, the retention anchor, and triggers
-- refusing UPDATE and DELETE (but for core's retention transaction).
ALTER TABLE audit_log ADD COLUMN seq BIGINT;
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
);

-- Where the chain continues after older entries were archived and pruned.
CREATE TABLE audit_anchor (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    archived_at TEXT NOT NULL,
    archive_file TEXT NOT NULL
);

-- Set only inside core's retention transaction.
CREATE TABLE audit_pruning (active BIGINT NOT NULL);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_pruning WHERE active = 1) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Where the next entry attaches, for any writer: the tenant role sees only its
-- org's entries, so the head is read with the owner's rights (SECURITY DEFINER),
-- and under a transaction-scoped lock, so that concurrent writers take turns
-- instead of forking the chain (SQLite's single writer gives this for free).
CREATE FUNCTION audit_chain_head(OUT seq BIGINT, OUT hash TEXT) LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('plinth.audit_chain'));
    SELECT a.seq, a.hash INTO seq, hash FROM audit_log a WHERE a.seq IS NOT NULL ORDER BY a.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        SELECT n.seq, n.hash INTO seq, hash FROM audit_anchor n WHERE n.id = 1;
        IF NOT FOUND THEN
            seq := 0;
            hash := repeat('0', 64);
        END IF;
    END IF;
END
$$;

-- The bound org's part of the audit log.
CREATE VIEW org_audit_log WITH (security_invoker = true) AS
    SELECT a.id, a.at, a.actor_id, a.action, a.target_type, a.target_id, a.org_id, p.ip, p.user_agent, a.details,
        p.data AS personal
    FROM audit_log a LEFT JOIN audit_personal p ON p.entry_id = a.id
    WHERE a.org_id = current_org();

-- Impersonation sessions name the staff member behind them.
ALTER TABLE sessions ADD COLUMN impersonator_id TEXT;
