-- The per-org activity feed, written from domain events (tenant table).
CREATE TABLE tenant_activity (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    actor_id TEXT,
    action TEXT NOT NULL,
    subject_type TEXT,
    subject_id TEXT,
    summary TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
) STRICT;

CREATE INDEX tenant_activity_org ON tenant_activity (org_id, id);

CREATE VIEW activity AS
    SELECT id, org_id, actor_id, action, subject_type, subject_id, summary, details, created_at
    FROM tenant_activity WHERE org_id = current_org();

CREATE TRIGGER activity_insert INSTEAD OF INSERT ON activity BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    INSERT INTO tenant_activity (id, org_id, actor_id, action, subject_type, subject_id, summary, details,
        created_at)
    VALUES (NEW.id, NEW.org_id, NEW.actor_id, NEW.action, NEW.subject_type, NEW.subject_id, NEW.summary,
        NEW.details, NEW.created_at);
END;

CREATE TRIGGER activity_update INSTEAD OF UPDATE ON activity BEGIN
    SELECT RAISE(ABORT, 'tenant isolation: row of another org') WHERE NEW.org_id IS NOT current_org();
    UPDATE tenant_activity SET actor_id = NEW.actor_id, action = NEW.action, subject_type = NEW.subject_type,
        subject_id = NEW.subject_id, summary = NEW.summary, details = NEW.details, created_at = NEW.created_at
    WHERE id = OLD.id AND org_id = current_org();
END;

CREATE TRIGGER activity_delete INSTEAD OF DELETE ON activity BEGIN
    DELETE FROM tenant_activity WHERE id = OLD.id AND org_id = current_org();
END;
