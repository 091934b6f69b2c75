-- Jobs are leased while they run: a worker renews its lease, and a job whose
-- lease ran out (its node died) is claimed again. Unix milliseconds.
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE status = 'running';
