-- When each periodic task is next due (Unix ms). Every node polls; the one whose
-- update moves `due_at` forward takes the turn, so a task runs once a period
-- however many nodes serve, and a restart does not reset its period.
CREATE TABLE schedules (
    kind TEXT PRIMARY KEY,
    due_at BIGINT NOT NULL
);
