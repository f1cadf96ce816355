"""The SQL a PostgresStore runs, and the pure helpers that shape its bindings and read its rows.

Every statement names its tables as ``{s}.jobs``: the store formats the text once with
its schema. Values are always bound. Writes for many jobs are one statement over
``unnest`` of arrays, one array a column, so that a batch costs one round trip and one
plan however many jobs it holds.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from jobkit import lifecycle
from jobkit.model import (
    ATTEMPTS_KEPT,
    CANCELLED,
    Backlog,
    Cancel,
    Complete,
    Fail,
    JobRecord,
    JobStatus,
    Postpone,
    Retry,
    Schedule,
    Transition,
)
from jobkit.stores import writes as fenced_writes

COLUMNS = tuple(field.name for field in attrs.fields(JobRecord))
SELECT = ", ".join(COLUMNS)
TYPES = {
    "progress": "integer",
    "max_attempts": "bigint",
    "attempt_count": "bigint",
    "priority": "bigint",
    "cancel_requested": "boolean",
    **{name: "timestamptz" for name in COLUMNS if name.endswith(("_for", "_at"))},
    "waiting_for": "bigint",  # not a time, for all its name
}
SCHEDULE_COLUMNS = tuple(field.name for field in attrs.fields(Schedule))
SCHEDULE_SELECT = ", ".join(SCHEDULE_COLUMNS)


def _unnest(columns: Sequence[str], types: dict[str, str], alias: str = "v") -> str:
    """``unnest`` of one bound array a column, as the rows *alias* with those column names."""
    arrays = ", ".join(f"%s::{types.get(name, 'text')}[]" for name in columns)
    return f"unnest({arrays}) AS {alias}({', '.join(columns)})"


def arrays(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as columns: the bindings of an :func:`_unnest` (one list a column)."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


_FIELDS = operator.attrgetter(*COLUMNS)
_STATUS = COLUMNS.index("status")


_DEPENDS = COLUMNS.index("depends_on")


def row_of(job: JobRecord) -> tuple[Any, ...]:
    """The record's values in :data:`COLUMNS` order: its status as text (psycopg would write an enum's name),
    the jobs it runs after as JSON text (NULL for none)."""
    values: list[Any] = list(_FIELDS(job))
    values[_STATUS] = values[_STATUS].value
    values[_DEPENDS] = json.dumps(job.depends_on) if job.depends_on else None
    return tuple(values)


STATUS = {status.value: status for status in JobStatus}


def record_of(row: Sequence[Any]) -> JobRecord:
    """The record a row of :data:`COLUMNS` holds, built by position (they are its fields, in order): keywords
    cost a claim a dict of 25 a row."""
    if len(row) != len(COLUMNS):
        raise ValueError(f"a jobs row has {len(COLUMNS)} columns, not {len(row)}")
    values = list(row)
    values[_STATUS] = STATUS[values[_STATUS]]
    depends = values[_DEPENDS]
    values[_DEPENDS] = json.loads(depends) if depends is not None else ()
    return JobRecord(*values)


def schedule_of(row: Sequence[Any]) -> Schedule:
    return Schedule(*row)


def schedule_row(schedule: Schedule) -> tuple[Any, ...]:
    return tuple(getattr(schedule, name) for name in SCHEDULE_COLUMNS)


# -- enqueue ---------------------------------------------------------------------------
# One statement: the rows, and (only when a row went in) one NOTIFY, sent at commit.
INSERT = f"""WITH added AS (INSERT INTO {{s}}.jobs ({SELECT}) SELECT * FROM {_unnest(COLUMNS, TYPES)} RETURNING 1)
SELECT pg_notify(%s, '') FROM (SELECT 1 FROM added LIMIT 1) AS one"""
INSERT_ONE = f"""WITH added AS (INSERT INTO {{s}}.jobs ({SELECT})
    VALUES ({", ".join(f"%s::{TYPES.get(name, 'text')}" for name in COLUMNS)}) RETURNING 1)
SELECT pg_notify(%s, '') FROM added"""


LIVE_KEY = "unique_key IS NOT NULL AND status IN ('pending', 'running')"  # the rows of jobs_unique_idx
# Jobs with unique keys: a job whose key a pending or running job of its name holds (or
# takes while this statement waits for its transaction) is skipped by the index, and
# HOLDERS then reads which job holds each key given.
INSERT_UNIQUE = f"""WITH added AS (INSERT INTO {{s}}.jobs ({SELECT}) SELECT * FROM {_unnest(COLUMNS, TYPES)}
    ON CONFLICT (job_name, unique_key) WHERE {LIVE_KEY} DO NOTHING RETURNING 1)
SELECT pg_notify(%s, '') FROM (SELECT 1 FROM added LIMIT 1) AS one"""
TAKEN = "SELECT id FROM {s}.jobs WHERE id = ANY(%s::text[])"  # looked for first: ON CONFLICT would skip them
# The jobs a new job runs after, marked as having dependents and locked until the add
# commits: none of them can end unseen between this read and the dependent's insert.
PARENTS = "UPDATE {s}.jobs SET has_dependents = true WHERE id = ANY(%s::text[]) RETURNING id, status"
DEPEND = """INSERT INTO {s}.job_deps (parent_id, child_id)
    SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING"""
HOLDERS = f"""SELECT j.job_name, j.unique_key, j.id FROM {{s}}.jobs AS j
    JOIN unnest(%s::text[], %s::text[]) AS k(job_name, unique_key)
    ON j.job_name = k.job_name AND j.unique_key = k.unique_key
    WHERE j.{LIVE_KEY.replace(" status", " j.status")}"""


def insert(jobs: Sequence[JobRecord], channel: str) -> tuple[str, list[Any]]:
    if any(job.unique_key is not None for job in jobs):
        return INSERT_UNIQUE, [*arrays(map(row_of, jobs), len(COLUMNS)), channel]
    if len(jobs) == 1:
        return INSERT_ONE, [*row_of(jobs[0]), channel]
    return INSERT, [*arrays(map(row_of, jobs), len(COLUMNS)), channel]


def holders(jobs: Sequence[JobRecord]) -> tuple[str, list[Any]] | None:
    """The read of who holds the unique keys of *jobs*; None when none has one."""
    keys = [(job.job_name, job.unique_key) for job in jobs if job.unique_key is not None]
    return (HOLDERS, arrays(keys, 2)) if keys else None


# Many jobs at once go by COPY: for a batch of a thousand, some three times the rows a
# second of one INSERT over unnest'ed arrays (the server parses no array literals).
COPY = f"COPY {{s}}.jobs ({SELECT}) FROM STDIN"
COPY_FROM = 20  # a batch of at least this many jobs is copied in


NOTIFY = "SELECT pg_notify(%s, '')"

# -- claims ----------------------------------------------------------------------------
_TAKE = """UPDATE {s}.jobs AS j SET status = 'running', worker_id = %(token)s, worker_started_at = %(now)s,
    worker_expires_at = %(until)s, attempt_count = j.attempt_count + 1,
    progress = 0, progress_message = NULL, updated_at = %(now)s"""
# The claimed rows, and one NOTIFY when there are any: the scalar subquery runs once, at
# the first row out, so a claim that takes nothing (an idle worker's) wakes no one.
_ANNOUNCED = "SELECT claimed.*, (SELECT pg_notify(%(channel)s, '')) FROM claimed"
PAUSED = "(SELECT name FROM {s}.queues WHERE paused)"  # the queues no claim takes from
# The queues with pending jobs, found by skipping through the pending index (one probe a
# queue), or the queues given with the most each may give; each queue's head is read on
# its own and the first %(limit)s of those heads taken; a paused queue is passed over.
PENDING_QUEUES = """RECURSIVE seen(name) AS (
    (SELECT queue FROM {s}.jobs WHERE status = 'pending' AND waiting_for = 0 ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM {s}.jobs WHERE status = 'pending' AND waiting_for = 0 AND queue > seen.name
        ORDER BY queue LIMIT 1)
    FROM seen WHERE seen.name IS NOT NULL),
chosen(name, most) AS (SELECT name, %(limit)s::bigint FROM seen WHERE name IS NOT NULL)"""
GIVEN_QUEUES = "chosen(name, most) AS (SELECT * FROM unnest(%(queues)s::text[], %(caps)s::bigint[]))"
CLAIM = f"""WITH {{chosen}}, picked AS (
    SELECT p.id FROM chosen CROSS JOIN LATERAL (
        SELECT id, priority, scheduled_for FROM {{s}}.jobs
        WHERE status = 'pending' AND waiting_for = 0 AND queue = chosen.name AND scheduled_for <= %(now)s {{names}}
        ORDER BY priority DESC, scheduled_for, id LIMIT least(chosen.most, %(limit)s) FOR UPDATE SKIP LOCKED) AS p
    WHERE chosen.name NOT IN {PAUSED}
    ORDER BY p.priority DESC, p.scheduled_for, p.id LIMIT %(limit)s),
claimed AS ({_TAKE} FROM picked WHERE j.id = picked.id RETURNING {", ".join(f"j.{c}" for c in COLUMNS)})
{_ANNOUNCED}"""
CLAIM_ONE = f"""WITH claimed AS (
{_TAKE} WHERE j.id = %(id)s AND j.status = 'pending' AND j.waiting_for = 0
RETURNING {", ".join(f"j.{c}" for c in COLUMNS)})
{_ANNOUNCED}"""
NAMES = "AND job_name = ANY(%(names)s::text[])"


def claim_sql(names: Sequence[str] | None, capped: bool) -> str:
    """The claim for any job name or for *names*, from every queue or (*capped*) the queues bound with their caps."""
    text = CLAIM.replace("{names}", "" if names is None else NAMES)
    return text.replace("{chosen}", GIVEN_QUEUES if capped else PENDING_QUEUES)


def claimed(rows: Sequence[Sequence[Any]]) -> list[JobRecord]:
    """A claim's records (its rows less the NOTIFY's column) in queue order (RETURNING promises none)."""
    records = [record_of(row[:-1]) for row in rows]
    return sorted(records, key=lambda j: (-j.priority, j.scheduled_for, j.id))


# -- outcomes of held jobs -----------------------------------------------------------------
_HELD = "j.id = v.id AND j.status = 'running' AND j.worker_id = v.token"
KEPT = ATTEMPTS_KEPT


def _logged(fence: str, outcome: str = "v.outcome", error: str = "v.error", traceback: str = "v.traceback") -> str:
    """The CTEs that write the history entry of each attempt *fence* picks (j: the job, v: its values), before
    the UPDATE they lead ends it, and drop that job's entries past the newest KEPT. All see the rows as they were."""
    return f"""logged AS (
    INSERT INTO {{s}}.attempts (job_id, number, worker_id, started_at, ended_at, outcome, error, traceback)
    SELECT j.id, coalesce((SELECT max(a.number) FROM {{s}}.attempts AS a WHERE a.job_id = j.id), 0) + 1,
        j.worker_id, j.worker_started_at, v.at, {outcome}, {error}, {traceback}
    FROM {{s}}.jobs AS j, v WHERE {fence} RETURNING job_id, number),
trimmed AS (DELETE FROM {{s}}.attempts AS a USING logged AS l
    WHERE a.job_id = l.job_id AND a.number <= l.number - {KEPT})"""


_FINISH = {
    Complete: (
        ("id", "token", "result", "at"),
        """status = 'completed', result = v.result, progress = 100, error = NULL, traceback = NULL,
        worker_expires_at = NULL, completed_at = v.at, updated_at = v.at""",
    ),
    Retry: (
        ("id", "token", "error", "traceback", "at", "run_at"),
        """status = 'pending', error = v.error, traceback = v.traceback, scheduled_for = v.run_at,
        worker_id = NULL, worker_started_at = NULL, worker_expires_at = NULL, updated_at = v.at""",
    ),
    Fail: (
        ("id", "token", "error", "traceback", "at"),
        """status = 'failed', error = v.error, traceback = v.traceback, worker_expires_at = NULL,
        completed_at = v.at, updated_at = v.at""",
    ),
    Cancel: (
        ("id", "token", "error", "at"),
        "status = 'cancelled', error = v.error, worker_expires_at = NULL, completed_at = v.at, updated_at = v.at",
    ),
    Postpone: (
        ("id", "token", "at", "run_at"),
        """status = 'pending', attempt_count = j.attempt_count - 1, scheduled_for = v.run_at, progress = 0,
        progress_message = NULL, worker_id = NULL, worker_started_at = NULL, worker_expires_at = NULL,
        updated_at = v.at""",
    ),
}
_FINISH_TYPES = {"at": "timestamptz", "run_at": "timestamptz"}


def _finish_sql(kind: type, columns: tuple[str, ...], sets: str) -> str:
    """The UPDATE of one kind of outcome over unnest'ed values; led by the history write but for a completion."""
    if kind is Complete:
        return f"UPDATE {{s}}.jobs AS j SET {sets} FROM {_unnest(columns, _FINISH_TYPES)} WHERE {_HELD} RETURNING j.id"
    logged = _logged(
        _HELD,
        error="v.error" if "error" in columns else "NULL",
        traceback="v.traceback" if "traceback" in columns else "NULL",
    )
    values = f"v AS (SELECT * FROM {_unnest((*columns, 'outcome'), _FINISH_TYPES, 'x')})"
    return f"WITH {values}, {logged} UPDATE {{s}}.jobs AS j SET {sets} FROM v WHERE {_HELD} RETURNING j.id"


FINISH = {kind: _finish_sql(kind, columns, sets) for kind, (columns, sets) in _FINISH.items()}


def values_of(t: Transition) -> tuple[Any, ...]:
    """The values of :data:`FINISH`'s statement for *t*: its columns, then the outcome its history entry says."""
    match t:
        case Complete(job_id=job_id, token=token, result=result, at=at):
            return job_id, token, result, at
        case Retry(job_id=job_id, token=token, error=error, traceback=tb, at=at, run_at=run_at):
            values: tuple[Any, ...] = (job_id, token, error, tb, at, run_at)
        case Fail(job_id=job_id, token=token, error=error, traceback=tb, at=at):
            values = (job_id, token, error, tb, at)
        case Cancel(job_id=job_id, token=token, reason=reason, at=at):
            values = (job_id, token, reason, at)
        case Postpone(job_id=job_id, token=token, at=at, run_at=run_at):
            values = (job_id, token, at, run_at)
        case _:
            raise TypeError(f"not a transition: {t!r}")
    ending = lifecycle.ending_of(t)
    assert ending is not None  # only a completion leaves none
    return (*values, ending[0])


Batch = tuple[str, list[Any], list[str]]
"""One statement of outcomes: its SQL (unformatted), its bindings, the job ids it writes in order."""


def batches(transitions: Sequence[Transition]) -> list[Batch]:
    """*transitions* as statements, one a span of :func:`jobkit.stores.writes.runs`.

    TypeError for anything not a transition, before anything is sent.
    """
    writes = [(type(t), values_of(t)) for t in transitions]
    plan: list[Batch] = []
    for start, end, _ in fenced_writes.runs([(values[0], kind) for kind, values in writes]):
        run = [values for _, values in writes[start:end]]
        plan.append((FINISH[writes[start][0]], arrays(run, len(run[0])), [values[0] for values in run]))
    return plan


def applied(plan: Sequence[Batch], results: Sequence[Sequence[Any]]) -> list[bool]:
    """For each write of *plan*, in order: True when its token still held the job (it returned its id)."""
    return fenced_writes.applied([ids for _, _, ids in plan], results)


HEARTBEAT = f"""UPDATE {{s}}.jobs AS j SET worker_expires_at = %s, updated_at = %s
    FROM {_unnest(("id", "token"), {})} WHERE {_HELD} RETURNING j.id, j.cancel_requested"""
PROGRESS = """UPDATE {s}.jobs SET progress = %s, progress_message = %s, updated_at = %s
    WHERE id = %s AND status = 'running' AND worker_id = %s"""
# A lease given back: pending again without its attempt, or cancelled when that was asked.
RELEASE = f"""WITH v AS (SELECT DISTINCT *, %s::timestamptz AS at FROM {_unnest(("id", "token"), {}, "x")}),
{
    _logged(
        _HELD,
        outcome="CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'released' END",
        error=f"CASE WHEN j.cancel_requested THEN '{CANCELLED}' END",
        traceback="NULL",
    )
}
UPDATE {{s}}.jobs AS j SET
    status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'pending' END,
    attempt_count = CASE WHEN j.cancel_requested THEN j.attempt_count ELSE j.attempt_count - 1 END,
    worker_id = CASE WHEN j.cancel_requested THEN j.worker_id END,
    worker_started_at = CASE WHEN j.cancel_requested THEN j.worker_started_at END,
    worker_expires_at = NULL,
    progress = CASE WHEN j.cancel_requested THEN j.progress ELSE 0 END,
    progress_message = CASE WHEN j.cancel_requested THEN j.progress_message END,
    error = CASE WHEN j.cancel_requested THEN '{CANCELLED}' ELSE j.error END,
    completed_at = CASE WHEN j.cancel_requested THEN %s::timestamptz END,
    updated_at = %s
    FROM v WHERE {_HELD} RETURNING j.id, v.token"""

# -- the reaper: resets of running jobs whose lease ran out or went unrenewed -------------
RUNNING = f"SELECT {SELECT} FROM {{s}}.jobs WHERE status = 'running'"
EXPIRED = f"{RUNNING} AND worker_expires_at <= %s ORDER BY id"
LEASES = "SELECT id, worker_id, worker_expires_at, updated_at FROM {s}.jobs WHERE status = 'running' ORDER BY id"
RUNNING_BY_ID = f"{RUNNING} AND id = ANY(%s::text[]) ORDER BY id"
_FENCE = ("fence_token", "fence_expires", "fence_attempts", "fence_cancel")
_FENCE_TYPES = {**TYPES, "fence_expires": "timestamptz", "fence_attempts": "bigint", "fence_cancel": "boolean"}
# Each reset writes the record lifecycle.expire made, fenced by the lease as it was read:
# a job renewed, claimed again or changed in between is left for the next round.
_AS_READ = """j.id = v.id AND j.status = 'running' AND j.worker_id = v.fence_token
    AND j.worker_expires_at IS NOT DISTINCT FROM v.fence_expires
    AND j.attempt_count = v.fence_attempts AND j.cancel_requested = v.fence_cancel"""
# The lost attempt's history entry says "lost", with the error its job got ("at" is v.updated_at).
RESET = f"""WITH v AS (SELECT *, updated_at AS at FROM {_unnest((*COLUMNS, *_FENCE), _FENCE_TYPES, "x")}),
{_logged(_AS_READ, outcome="'lost'", traceback="NULL")}
UPDATE {{s}}.jobs AS j SET ({SELECT}) = ({", ".join(f"v.{c}" for c in COLUMNS)})
    FROM v WHERE {_AS_READ}
    RETURNING j.id"""


def reset_bindings(pairs: Sequence[tuple[JobRecord, JobRecord]]) -> list[Any]:
    """The bindings of :data:`RESET` for (as read, as reset) pairs of records."""
    rows = [
        (*row_of(after), before.worker_id, before.worker_expires_at, before.attempt_count, before.cancel_requested)
        for before, after in pairs
    ]
    return arrays(rows, len(COLUMNS) + len(_FENCE))


# -- operating ---------------------------------------------------------------------------
CANCEL_JOB = f"""UPDATE {{s}}.jobs SET
    status = CASE status WHEN 'pending' THEN 'cancelled' ELSE status END,
    error = CASE status WHEN 'pending' THEN '{CANCELLED}' ELSE error END,
    completed_at = CASE status WHEN 'pending' THEN %(now)s ELSE completed_at END,
    cancel_requested = CASE status WHEN 'running' THEN true ELSE cancel_requested END,
    updated_at = %(now)s
WHERE id = %(id)s AND (status = 'pending' OR (status = 'running' AND NOT cancel_requested))"""
GET = f"SELECT {SELECT} FROM {{s}}.jobs WHERE id = %s"
CANCELLING = "SELECT id FROM {s}.jobs WHERE status = 'running' AND cancel_requested ORDER BY id"
# A job whose unique key another live job holds is not retried (lifecycle.retry_by_hand), and of
# jobs given that share a key only the first named is: two live jobs never share one.
RETRY_JOBS = f"""UPDATE {{s}}.jobs AS j SET status = 'pending', attempt_count = 0, result = NULL, progress = 0,
    progress_message = NULL, error = NULL, traceback = NULL, worker_id = NULL, worker_started_at = NULL,
    worker_expires_at = NULL, completed_at = NULL, cancel_requested = false, scheduled_for = %(now)s,
    updated_at = %(now)s, waiting_for = (SELECT count(*) FROM {{s}}.job_deps AS d JOIN {{s}}.jobs AS p
        ON p.id = d.parent_id WHERE d.child_id = j.id AND p.status <> 'completed')
WHERE j.id = ANY(%(ids)s::text[]) AND j.status IN ('failed', 'cancelled')
    AND (j.unique_key IS NULL OR (j.id IN (
        SELECT DISTINCT ON (f.job_name, f.unique_key) f.id FROM {{s}}.jobs AS f
        WHERE f.id = ANY(%(ids)s::text[]) AND f.status IN ('failed', 'cancelled') AND f.unique_key IS NOT NULL
        ORDER BY f.job_name, f.unique_key, array_position(%(ids)s::text[], f.id))
    AND NOT EXISTS (SELECT 1 FROM {{s}}.jobs AS live WHERE live.job_name = j.job_name
        AND live.unique_key = j.unique_key AND live.{LIVE_KEY.replace(" status", " live.status")})))
RETURNING j.id"""
PURGE = """DELETE FROM {s}.jobs WHERE id IN (
    SELECT id FROM {s}.jobs WHERE completed_at IS NOT NULL AND status = ANY(%s::text[]) AND completed_at < %s
    ORDER BY completed_at, id LIMIT %s)"""
# Store.delete: the finished jobs among the ids given; their attempts and job_deps rows cascade.
DELETE = "DELETE FROM {s}.jobs WHERE id = ANY(%s::text[]) AND completed_at IS NOT NULL RETURNING id"

# -- reading -----------------------------------------------------------------------------
# A job's record beside each of its history rows (or none), in one snapshot.
TIMELINE = f"""SELECT {", ".join(f"j.{c}" for c in COLUMNS)}, a.number, a.worker_id, a.started_at, a.ended_at,
    a.outcome, a.error, a.traceback
    FROM {{s}}.jobs AS j LEFT JOIN {{s}}.attempts AS a ON a.job_id = j.id WHERE j.id = %s ORDER BY a.number"""
COUNTS = "SELECT status, count(*) FROM {s}.jobs GROUP BY status"
BY_NAME = "SELECT job_name, status, count(*) FROM {s}.jobs GROUP BY job_name, status"
NEXT_DUE = f"""SELECT min(scheduled_for) FROM {{s}}.jobs WHERE status = 'pending' AND waiting_for = 0
    {{names}} {{among}} AND queue NOT IN {PAUSED}"""
OLDEST_PENDING = "SELECT min(scheduled_for) FROM {s}.jobs WHERE status = 'pending' AND waiting_for = 0"
# Every queue that has jobs or a pause row, with its jobs by status (NULL for a queue with none).
QUEUES = """SELECT j.name, coalesce(q.paused, false), j.status, j.n
    FROM (SELECT queue AS name, status, count(*) AS n FROM {s}.jobs GROUP BY queue, status) AS j
    LEFT JOIN {s}.queues AS q ON q.name = j.name
UNION ALL
SELECT q.name, q.paused, NULL, 0 FROM {s}.queues AS q WHERE NOT EXISTS (SELECT 1 FROM {s}.jobs WHERE queue = q.name)
ORDER BY 1"""
PAUSE = """WITH paused AS (INSERT INTO {s}.queues (name, paused, updated_at) VALUES (%(name)s, %(paused)s, %(now)s)
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at RETURNING 1)
SELECT pg_notify(%(channel)s, '') FROM paused"""
RUNNING_JOBS = f"{RUNNING} ORDER BY id"
FAILED_SINCE = "SELECT count(*) FROM {s}.jobs WHERE status = 'failed' AND completed_at >= %s"
BACKLOG = """SELECT count(*), count(*) FILTER (WHERE scheduled_for <= %(now)s)
    FROM {s}.jobs WHERE status = 'pending' AND waiting_for = 0"""
OLDEST_DUE = f"""SELECT {SELECT} FROM {{s}}.jobs WHERE status = 'pending' AND waiting_for = 0
    AND scheduled_for <= %(now)s ORDER BY scheduled_for, id LIMIT 1"""
NEXT_SCHEDULED = f"""SELECT {SELECT} FROM {{s}}.jobs WHERE status = 'pending' AND waiting_for = 0
    AND scheduled_for > %(now)s ORDER BY scheduled_for, id LIMIT 1"""


def next_due_sql(names: Sequence[str] | None, among: Sequence[str] | None) -> str:
    text = NEXT_DUE.replace("{names}", "" if names is None else NAMES)
    return text.replace("{among}", "" if among is None else "AND queue = ANY(%(among)s::text[])")


def backlog(counts: Sequence[int], oldest: Sequence[JobRecord], following: Sequence[JobRecord]) -> Backlog:
    """The backlog from what the backlog reads gave: the counts, and the first record of each kind."""
    pending, due = counts
    return Backlog.of(pending, due, oldest, following)


# -- recurring jobs ----------------------------------------------------------------------
PUT_SCHEDULE = f"""
INSERT INTO {{s}}.cron_jobs ({SCHEDULE_SELECT}) VALUES ({", ".join(["%s"] * len(SCHEDULE_COLUMNS))})
ON CONFLICT (name) DO UPDATE SET job_name = excluded.job_name, cron_expression = excluded.cron_expression,
    params = excluded.params, timezone = excluded.timezone, enabled = excluded.enabled,
    next_run_at = CASE WHEN cron_jobs.enabled AND excluded.enabled AND cron_jobs.next_run_at IS NOT NULL
        AND cron_jobs.cron_expression = excluded.cron_expression AND cron_jobs.timezone = excluded.timezone
        THEN cron_jobs.next_run_at ELSE excluded.next_run_at END,
    updated_at = excluded.updated_at, declared = excluded.declared
RETURNING {SCHEDULE_SELECT}
"""
GET_SCHEDULE = f"SELECT {SCHEDULE_SELECT} FROM {{s}}.cron_jobs WHERE name = %s"
LIST_SCHEDULES = f"SELECT {SCHEDULE_SELECT} FROM {{s}}.cron_jobs ORDER BY name"
REMOVE_SCHEDULE = "DELETE FROM {s}.cron_jobs WHERE name = %s"
DUE_SCHEDULES = f"""SELECT {SCHEDULE_SELECT} FROM {{s}}.cron_jobs WHERE enabled AND next_run_at <= %s
    ORDER BY next_run_at, name"""
# One statement: the compare-and-set of the schedule, and the job only when it took effect.
FIRE = f"""WITH fired AS (
    UPDATE {{s}}.cron_jobs SET next_run_at = %s, last_run_at = %s, last_job_id = %s, updated_at = %s
    WHERE name = %s AND enabled AND next_run_at = %s RETURNING 1),
added AS (
    INSERT INTO {{s}}.jobs ({SELECT})
    SELECT {", ".join(f"%s::{TYPES.get(name, 'text')}" for name in COLUMNS)} FROM fired RETURNING 1)
SELECT pg_notify(%s, '') FROM added"""
