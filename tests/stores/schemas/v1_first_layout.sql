-- jobkit schema, version 1. Timestamps are UTC text, ISO 8601 with microseconds and a
-- trailing Z ('2026-11-29T23:11:19.123456Z'): they sort as they compare.
-- The jobs table is clustered on its UUIDv7 id (WITHOUT ROWID: new ids append). The
-- queue index holds pending jobs only, the lock index running ones, the finished index
-- the rest: a job's claim and its completion each move it between two small indexes.
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY NOT NULL,
    job_name          TEXT NOT NULL CHECK (length(job_name) > 0),
    params            TEXT NOT NULL,
    result            TEXT,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    progress          INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    progress_message  TEXT,
    error             TEXT,
    traceback         TEXT,
    worker_id         TEXT,
    worker_started_at TEXT,
    worker_expires_at TEXT,
    attempt_count     INTEGER NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_attempts      INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    priority          INTEGER NOT NULL DEFAULT 0,
    scheduled_for     TEXT NOT NULL,
    correlation_id    TEXT,
    cancel_requested  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    completed_at      TEXT,
    CHECK (status <> 'running' OR (worker_id IS NOT NULL AND worker_expires_at IS NOT NULL)),
    CHECK ((completed_at IS NOT NULL) = (status IN ('completed', 'failed', 'cancelled')))
) WITHOUT ROWID;
CREATE INDEX jobs_status_scheduled_idx ON jobs (priority DESC, scheduled_for, id) WHERE status = 'pending';
CREATE INDEX jobs_status_expires_idx ON jobs (worker_expires_at) WHERE status = 'running';
CREATE INDEX jobs_name_idx ON jobs (job_name);
CREATE INDEX jobs_correlation_idx ON jobs (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX jobs_finished_idx ON jobs (status, completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE cron_jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
    job_name        TEXT NOT NULL,
    cron_expression TEXT NOT NULL,
    params          TEXT NOT NULL,
    timezone        TEXT NOT NULL DEFAULT 'UTC',
    enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    last_run_at     TEXT,
    next_run_at     TEXT,
    last_job_id     TEXT,
    declared        INTEGER NOT NULL DEFAULT 0 CHECK (declared IN (0, 1)),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX cron_jobs_next_run_idx ON cron_jobs (enabled, next_run_at);
CREATE INDEX cron_jobs_name_idx ON cron_jobs (name);
