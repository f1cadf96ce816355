"""What a jobkit PostgreSQL schema holds, and the steps that build it and bring it up to date.

The tables live in a schema of their own (``jobkit`` by default) with the columns of the
SQLite store: text ids (UUIDv7 as jobkit mints them), params and results as the JSON text
jobkit wrote (``params::jsonb ->> 'order_id'`` queries them; a json column would refuse
at the store what the codec already vouches for, and jsonb would rewrite the text),
``timestamptz`` times. ``meta`` names
the schema as jobkit's and holds its version.

The hot table is built for a queue: partial indexes by status, as on SQLite, so that a
claim or a completion moves a job between small indexes; no index on the lease column
(``worker_expires_at``) nor on ``progress`` or ``updated_at``, so that heartbeats and
progress writes are HOT updates (a new row version on the same page, no index entry);
a fillfactor that leaves room on each page for them; and autovacuum thresholds by
fraction of a small table, since a queue's table churns while its live size stays small.

To add version N: raise :data:`VERSION` to N and append a step to :data:`STEPS`; a new
schema and an older one reach version N through the same steps.
"""

from __future__ import annotations

from typing import NamedTuple

VERSION = 4
MARK = "jobkit"  # meta.made_by: a schema whose meta says otherwise is not jobkit's

JOBS = """
CREATE TABLE {s}.jobs (
    id                text PRIMARY KEY,
    job_name          text NOT NULL CHECK (length(job_name) > 0),
    params            text NOT NULL,
    result            text,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    progress          integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    progress_message  text,
    error             text,
    traceback         text,
    worker_id         text,
    worker_started_at timestamptz,
    worker_expires_at timestamptz,
    attempt_count     bigint NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_attempts      bigint NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    priority          bigint NOT NULL DEFAULT 0,
    scheduled_for     timestamptz NOT NULL,
    correlation_id    text,
    cancel_requested  boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    completed_at      timestamptz,
    CHECK (status <> 'running' OR (worker_id IS NOT NULL AND worker_expires_at IS NOT NULL)),
    CHECK ((completed_at IS NOT NULL) = (status IN ('completed', 'failed', 'cancelled')))
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
        autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 1);
CREATE INDEX jobs_pending_idx ON {s}.jobs (priority DESC, scheduled_for, id) WHERE status = 'pending';
CREATE INDEX jobs_running_idx ON {s}.jobs (id) WHERE status = 'running';
CREATE INDEX jobs_finished_idx ON {s}.jobs (status, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX jobs_name_idx ON {s}.jobs (job_name) WHERE completed_at IS NOT NULL;
CREATE INDEX jobs_correlation_idx ON {s}.jobs (correlation_id) WHERE correlation_id IS NOT NULL;
"""
CRON = """
CREATE TABLE {s}.cron_jobs (
    id              text PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (length(name) > 0),
    job_name        text NOT NULL,
    cron_expression text NOT NULL,
    params          text NOT NULL,
    timezone        text NOT NULL DEFAULT 'UTC',
    enabled         boolean NOT NULL DEFAULT true,
    last_run_at     timestamptz,
    next_run_at     timestamptz,
    last_job_id     text,
    declared        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX cron_jobs_next_run_idx ON {s}.cron_jobs (next_run_at) WHERE enabled;
"""
META = """
CREATE TABLE {s}.meta (
    made_by    text NOT NULL,
    version    integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
"""
# Version 2: queues. Each job names its queue; the queues table holds the pauses (a row
# for each queue ever paused or resumed: nothing is written there at enqueue, so no
# producer waits on another's transaction). The pending index leads with the queue, so
# that a claim finds the queues with pending jobs by skipping through it, reads each
# one's head on its own, and never walks past a paused queue's backlog.
QUEUES = """
ALTER TABLE {s}.jobs ADD COLUMN queue text NOT NULL DEFAULT 'default' CHECK (length(queue) > 0);
CREATE TABLE {s}.queues (
    name       text PRIMARY KEY CHECK (length(name) > 0),
    paused     boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
DROP INDEX {s}.jobs_pending_idx;
CREATE INDEX jobs_pending_idx ON {s}.jobs (queue, priority DESC, scheduled_for, id) WHERE status = 'pending';
"""
# Version 3: unique jobs and attempt history. While a job is pending or running, the
# partial unique index holds its name and unique key, so that two sessions adding the
# same key at once leave one job (an INSERT that would make a second is skipped by its
# ON CONFLICT). The attempts table holds each job's ended attempts but a completion (which
# the job's row tells), the newest ATTEMPTS_KEPT; they go with their job (ON DELETE CASCADE).
# Dependencies: a job names the jobs it runs after (depends_on, JSON text) and counts those
# not completed (waiting_for); job_deps leads from each to its dependents, and a parent is
# marked (has_dependents, set as a dependent is added, under the parent's row lock) so that
# only its end fires the trigger that settles them (lifecycle.after_parent_ended), which
# fires again for the dependents it cancels. The pending index holds only jobs that wait
# for nothing.
UNIQUE_AND_ATTEMPTS = """
ALTER TABLE {s}.jobs ADD COLUMN unique_key text;
CREATE UNIQUE INDEX jobs_unique_idx ON {s}.jobs (job_name, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
CREATE TABLE {s}.attempts (
    job_id     text NOT NULL REFERENCES {s}.jobs (id) ON DELETE CASCADE,
    number     bigint NOT NULL CHECK (number >= 1),
    worker_id  text,
    started_at timestamptz,
    ended_at   timestamptz NOT NULL,
    outcome    text NOT NULL,
    error      text,
    traceback  text,
    PRIMARY KEY (job_id, number)
);
ALTER TABLE {s}.jobs ADD COLUMN depends_on text;
ALTER TABLE {s}.jobs ADD COLUMN waiting_for bigint NOT NULL DEFAULT 0 CHECK (waiting_for >= 0);
ALTER TABLE {s}.jobs ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;
CREATE TABLE {s}.job_deps (
    parent_id text NOT NULL REFERENCES {s}.jobs (id) ON DELETE CASCADE,
    child_id  text NOT NULL REFERENCES {s}.jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX job_deps_child_idx ON {s}.job_deps (child_id);
DROP INDEX {s}.jobs_pending_idx;
CREATE INDEX jobs_pending_idx ON {s}.jobs (queue, priority DESC, scheduled_for, id)
    WHERE status = 'pending' AND waiting_for = 0;
CREATE FUNCTION {s}.settle_dependents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'completed' THEN
        UPDATE {s}.jobs SET waiting_for = waiting_for - 1
        WHERE id IN (SELECT child_id FROM {s}.job_deps WHERE parent_id = NEW.id)
            AND status = 'pending' AND waiting_for > 0;
    ELSE
        UPDATE {s}.jobs SET status = 'cancelled',
            error = 'cancelled: job ' || NEW.id || ', which it runs after, ended ' || NEW.status,
            completed_at = coalesce(NEW.completed_at, NEW.updated_at),
            updated_at = coalesce(NEW.completed_at, NEW.updated_at)
        WHERE id IN (SELECT child_id FROM {s}.job_deps WHERE parent_id = NEW.id)
            AND status = 'pending' AND waiting_for > 0;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_settle_dependents AFTER UPDATE OF status ON {s}.jobs FOR EACH ROW
    WHEN (NEW.has_dependents AND NEW.status IN ('completed', 'failed', 'cancelled')
        AND OLD.status IN ('pending', 'running'))
    EXECUTE FUNCTION {s}.settle_dependents();
"""
# Version 4: an index of every job by (created_at, id), the order listings read newest first,
# so that a listing with no filter, or between two creation times, reads its page from the
# index instead of sorting the table. Neither column ever changes, so it is written once, as
# a job is added: claims, completions, heartbeats and progress stay as they were (HOT ones too).
CREATED = """
CREATE INDEX jobs_created_idx ON {s}.jobs (created_at, id);
"""
TABLES = frozenset({"jobs", "cron_jobs", "meta", "queues", "attempts", "job_deps"})
"""Every table a jobkit schema may hold: any other table means the schema is someone else's."""


class Step(NamedTuple):
    """One change that brings a schema older than *version* to *version*: its SQL, with ``{s}`` for the schema."""

    version: int
    description: str
    sql: str


STEPS = (
    Step(1, "the jobs, cron_jobs and meta tables", META + JOBS + CRON),
    Step(2, "queues", QUEUES),
    Step(3, "unique keys, attempt history and dependencies", UNIQUE_AND_ATTEMPTS),
    Step(4, "an index of jobs by creation time", CREATED),
)


def steps_after(version: int) -> list[Step]:
    """The steps a schema at *version* (0: none yet) lacks, in order."""
    return [step for step in STEPS if step.version > version]


def sql_of(step: Step, schema: str) -> str:
    """The step's SQL for *schema* (already quoted as an identifier)."""
    return step.sql.format(s=schema)
