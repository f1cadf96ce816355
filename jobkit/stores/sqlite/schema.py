"""What a jobkit SQLite file holds: its mark, its tables and indexes, and their columns in codec order.

SCHEMA is what the first migration step builds on a blank file (see :mod:`.migrations`).
"""

from __future__ import annotations

APPLICATION_ID = 0x4A4F424B  # "JOBK"
SCHEMA_VERSION = 6

JOBS_TABLE = """
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY NOT NULL,
    job_name          TEXT NOT NULL CHECK (length(job_name) > 0),
    params            TEXT NOT NULL,
    result            TEXT,
    status            TEXT NOT NULL DEFAULT 'pending' CHECK (status = 'pending' OR status = 'running'
                      OR status = 'completed' OR status = 'failed' OR status = 'cancelled'),
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
    cancel_requested  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested = 0 OR cancel_requested = 1),
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    completed_at      TEXT,
    CHECK (status <> 'running' OR (worker_id IS NOT NULL AND worker_expires_at IS NOT NULL)),
    CHECK ((completed_at IS NOT NULL) = (status = 'completed' OR status = 'failed' OR status = 'cancelled'))
) WITHOUT ROWID;
"""
JOBS_INDEXES = """
CREATE INDEX jobs_status_scheduled_idx ON jobs (priority DESC, scheduled_for, id) WHERE status = 'pending';
CREATE INDEX jobs_status_expires_idx ON jobs (worker_expires_at) WHERE status = 'running';
CREATE INDEX jobs_name_idx ON jobs (job_name) WHERE completed_at IS NOT NULL;
CREATE INDEX jobs_correlation_idx ON jobs (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX jobs_finished_idx ON jobs (status, completed_at) WHERE completed_at IS NOT NULL;
"""
CRON_TABLE = """
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
"""
# Version 2: queues. Each job names its queue; the queues table holds the pauses (a row
# for each queue ever paused or resumed). The pending index leads with the queue, so that
# a claim finds the queues with pending jobs by skipping through it, reads each one's
# head on its own, and never walks past a paused queue's backlog.
QUEUES_V2 = """
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default' CHECK (length(queue) > 0);
CREATE TABLE queues (
    name       TEXT PRIMARY KEY NOT NULL CHECK (length(name) > 0),
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused = 0 OR paused = 1),
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
DROP INDEX jobs_status_scheduled_idx;
CREATE INDEX jobs_pending_idx ON jobs (queue, priority DESC, scheduled_for, id) WHERE status = 'pending';
"""
# Version 3: unique jobs, attempt history and dependencies. While a job is pending or running, the
# partial unique index holds its name and unique key, so that no other process makes a
# second job with them (an INSERT that would is skipped by its ON CONFLICT). The attempts
# table holds each job's ended attempts but a completion (which the job's row tells),
# the newest ATTEMPTS_KEPT of them; a purge deletes them with their job. A job that runs
# after others names them (depends_on, JSON) and counts those not completed (waiting_for);
# job_deps leads from each to the jobs waiting on it, and two triggers settle those as it
# ends (lifecycle.after_parent_ended: one fewer to wait for, or cancelled, recursively).
# The pending index holds only jobs that wait for nothing, so a claim never sees the others.
UNIQUE_AND_ATTEMPTS_V3 = """
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX jobs_unique_idx ON jobs (job_name, unique_key)
    WHERE unique_key IS NOT NULL AND (status = 'pending' OR status = 'running');
CREATE TABLE attempts (
    job_id     TEXT NOT NULL,
    number     INTEGER NOT NULL CHECK (number >= 1),
    worker_id  TEXT,
    started_at TEXT,
    ended_at   TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT,
    traceback  TEXT,
    PRIMARY KEY (job_id, number)
) WITHOUT ROWID;
ALTER TABLE jobs ADD COLUMN depends_on TEXT;
ALTER TABLE jobs ADD COLUMN waiting_for INTEGER NOT NULL DEFAULT 0 CHECK (waiting_for >= 0);
CREATE TABLE job_deps (
    parent_id TEXT NOT NULL,
    child_id  TEXT NOT NULL,
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
DROP INDEX jobs_pending_idx;
CREATE INDEX jobs_pending_idx ON jobs (queue, priority DESC, scheduled_for, id)
    WHERE status = 'pending' AND waiting_for = 0;
CREATE INDEX jobs_waiting_idx ON jobs (id) WHERE status = 'pending' AND waiting_for > 0;
CREATE TRIGGER jobs_parent_completed AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'completed' AND (OLD.status = 'pending' OR OLD.status = 'running')
    AND EXISTS (SELECT 1 FROM job_deps WHERE parent_id = NEW.id)
BEGIN
    UPDATE jobs SET waiting_for = waiting_for - 1
    WHERE id IN (SELECT child_id FROM job_deps WHERE parent_id = NEW.id) AND status = 'pending' AND waiting_for > 0;
END;
CREATE TRIGGER jobs_parent_ended AFTER UPDATE OF status ON jobs
WHEN (NEW.status = 'failed' OR NEW.status = 'cancelled') AND (OLD.status = 'pending' OR OLD.status = 'running')
    AND EXISTS (SELECT 1 FROM job_deps WHERE parent_id = NEW.id)
BEGIN
    UPDATE jobs SET status = 'cancelled',
        error = 'cancelled: job ' || NEW.id || ', which it runs after, ended ' || NEW.status,
        completed_at = coalesce(NEW.completed_at, NEW.updated_at),
        updated_at = coalesce(NEW.completed_at, NEW.updated_at)
    WHERE id IN (SELECT child_id FROM job_deps WHERE parent_id = NEW.id) AND status = 'pending' AND waiting_for > 0;
END;
"""
# Version 4: an index of every job by (created_at, id), the order listings read newest first,
# so that a listing with no filter, or of completed jobs, or between two creation times, reads
# its page from the index instead of sorting the table. It is written once, as a job is added
# (neither column ever changes): a claim or a completion writes no entry of it.
CREATED_V4 = """
CREATE INDEX jobs_created_idx ON jobs (created_at, id);
"""
# Version 5: a listing of one name, or of failed or cancelled jobs, reads its page from an
# index in creation order instead of sorting every such job. The name index gains
# (created_at, id); failed and cancelled jobs get an index of their own (a completion, the
# common end, writes no entry in it). A listing names the index's whole WHERE so that the
# planner sees it applies (listing.py). And job_deps gets the index by child that
# PostgreSQL's has: a delete or a retry of a job that runs after others finds its rows
# without reading the whole table.
V5 = """
DROP INDEX jobs_name_idx;
CREATE INDEX jobs_name_idx ON jobs (job_name, created_at, id) WHERE completed_at IS NOT NULL;
CREATE INDEX jobs_unhappy_idx ON jobs (status, created_at, id) WHERE completed_at IS NOT NULL AND status <> 'completed';
CREATE INDEX job_deps_child_idx ON job_deps (child_id);
"""
# Version 6: a job others run after is marked (has_dependents, set by a trigger as a row of
# job_deps names it, so that whoever writes the dependency, an older jobkit still running
# through the upgrade too, marks the parent in the same statement), and only a marked job's
# end fires the settling of its dependents. A trigger's WHEN runs inside its program, whose
# registers SQLite sets up for every row the UPDATE writes: the two triggers of version 3,
# each a whole UPDATE of jobs, cost every ended job 7% of a drained no-op job's CPU, for the
# few jobs anything waits on. Now the one trigger on jobs is a small INSERT into the view
# ended_parents, whose INSTEAD OF trigger does what version 3's did
# (lifecycle.after_parent_ended; a cancelled child, itself marked, settles its own dependents
# in turn). The view holds no rows: it only hands the ended job over.
V6 = """
ALTER TABLE jobs ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0
    CHECK (has_dependents = 0 OR has_dependents = 1);
UPDATE jobs SET has_dependents = 1 WHERE id IN (SELECT parent_id FROM job_deps);
CREATE TRIGGER job_deps_mark_parent AFTER INSERT ON job_deps
BEGIN
    UPDATE jobs SET has_dependents = 1 WHERE id = NEW.parent_id AND has_dependents = 0;
END;
DROP TRIGGER jobs_parent_completed;
DROP TRIGGER jobs_parent_ended;
CREATE VIEW ended_parents (id, status, at) AS SELECT NULL, NULL, NULL WHERE 0;
CREATE TRIGGER ended_parents_settle INSTEAD OF INSERT ON ended_parents
BEGIN
    UPDATE jobs SET waiting_for = waiting_for - 1
    WHERE NEW.status = 'completed'
        AND id IN (SELECT child_id FROM job_deps WHERE parent_id = NEW.id) AND status = 'pending' AND waiting_for > 0;
    UPDATE jobs SET status = 'cancelled',
        error = 'cancelled: job ' || NEW.id || ', which it runs after, ended ' || NEW.status,
        completed_at = NEW.at,
        updated_at = NEW.at
    WHERE NEW.status <> 'completed'
        AND id IN (SELECT child_id FROM job_deps WHERE parent_id = NEW.id) AND status = 'pending' AND waiting_for > 0;
END;
CREATE TRIGGER jobs_parent_ended AFTER UPDATE OF status ON jobs
WHEN NEW.has_dependents = 1 AND (NEW.status = 'completed' OR NEW.status = 'failed' OR NEW.status = 'cancelled')
    AND (OLD.status = 'pending' OR OLD.status = 'running')
BEGIN
    INSERT INTO ended_parents (id, status, at) VALUES (NEW.id, NEW.status, coalesce(NEW.completed_at, NEW.updated_at));
END;
"""
SCHEMA = f"""
-- jobkit schema, version 1 (migrations.py's steps bring it up to date). Timestamps are UTC
-- text, ISO 8601 with microseconds and a trailing Z ('2026-11-29T23:11:19.123456Z'): they sort as they compare.
-- The jobs table is clustered on its UUIDv7 id (WITHOUT ROWID: new ids append). The
-- queue index holds pending jobs only, the lock index running ones, the finished and
-- name indexes the rest: an enqueue writes two b-trees, and a claim or a completion
-- moves a job between small indexes. CHECKs spell their lists out with OR: an IN list
-- in a CHECK builds a lookup table for every row written.
{JOBS_TABLE}{JOBS_INDEXES}{CRON_TABLE}"""


COLUMNS = (
    "id",
    "job_name",
    "params",
    "status",
    "scheduled_for",
    "created_at",
    "updated_at",
    "max_attempts",
    "attempt_count",
    "priority",
    "correlation_id",
    "result",
    "progress",
    "progress_message",
    "error",
    "traceback",
    "worker_id",
    "worker_started_at",
    "worker_expires_at",
    "completed_at",
    "cancel_requested",
    "queue",
    "unique_key",
    "depends_on",
    "waiting_for",
)
SELECT = ", ".join(COLUMNS)

ATTEMPT_COLUMNS = ("number", "worker_id", "started_at", "ended_at", "outcome", "error", "traceback")

SCHEDULE_COLUMNS = (
    "id",
    "name",
    "job_name",
    "cron_expression",
    "params",
    "timezone",
    "enabled",
    "next_run_at",
    "created_at",
    "updated_at",
    "last_run_at",
    "last_job_id",
    "declared",
)
SCHEDULE_SELECT = ", ".join(SCHEDULE_COLUMNS)
