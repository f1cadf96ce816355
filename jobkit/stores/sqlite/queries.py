"""The SQL a SqliteStore runs, and the small pure helpers that build and apply it.

Every value is bound; what is written into the text (a status, the number of names)
comes from an allow-list, so that the planner sees it (QPSG hides bound values).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal

from jobkit import lifecycle
from jobkit.model import (
    ATTEMPTS_KEPT,
    CANCELLED,
    FINISHED,
    Backlog,
    Cancel,
    Complete,
    Fail,
    JobRecord,
    JobStatus,
    Postpone,
    Retry,
    Transition,
)
from jobkit.stores import writes as fenced_writes
from jobkit.stores.refusals import chosen_names
from jobkit.stores.sqlite.codec import TIME_GLOB, UnreadableRow, records_of, ts
from jobkit.stores.sqlite.schema import COLUMNS, SCHEDULE_COLUMNS, SCHEDULE_SELECT, SELECT

if TYPE_CHECKING:  # only in annotations: no import of the port at run time
    pass

Step = tuple[str, Any, Literal["rows", "many", "count"]]
"""One statement of a write transaction: its SQL, its bindings (a list of them for
"many"), and what it gives: its rows ("rows"), the rows of an executemany over the
bindings ("many"), or how many rows it changed ("count")."""

PUT_SCHEDULE = f"""
INSERT INTO cron_jobs ({SCHEDULE_SELECT}) VALUES ({", ".join("?" * len(SCHEDULE_COLUMNS))})
ON CONFLICT (name) DO UPDATE SET job_name = excluded.job_name, cron_expression = excluded.cron_expression,
    params = excluded.params, timezone = excluded.timezone, enabled = excluded.enabled,
    next_run_at = CASE WHEN cron_jobs.enabled = 1 AND excluded.enabled = 1 AND cron_jobs.next_run_at IS NOT NULL
        AND cron_jobs.cron_expression = excluded.cron_expression AND cron_jobs.timezone = excluded.timezone
        THEN cron_jobs.next_run_at ELSE excluded.next_run_at END,
    updated_at = excluded.updated_at, declared = excluded.declared
RETURNING {SCHEDULE_SELECT}
"""
FIRE = """UPDATE cron_jobs SET next_run_at = ?, last_run_at = ?, last_job_id = ?, updated_at = ?
    WHERE name = ? AND enabled = 1 AND next_run_at = ?"""

_ROW = f"({', '.join('?' * len(COLUMNS))})"  # the values of one jobs row, in COLUMNS order
INSERT = f"INSERT INTO jobs ({SELECT}) VALUES {_ROW}"
SHARED_INSERT_ROWS = 64  # the most rows one INSERT of several calls' jobs holds (one statement for each count)


@functools.lru_cache(maxsize=SHARED_INSERT_ROWS)
def insert_rows(count: int) -> str:
    """One INSERT of *count* rows: one call into SQLite (one release of the GIL) and, alone, one transaction."""
    if not 0 < count <= SHARED_INSERT_ROWS:
        raise ValueError(f"a shared INSERT holds 1 to {SHARED_INSERT_ROWS} rows, not {count}")
    return f"INSERT INTO jobs ({SELECT}) VALUES {', '.join([_ROW] * count)}"


LIVE_KEY = "unique_key IS NOT NULL AND (status = 'pending' OR status = 'running')"  # jobs_unique_idx's rows
# Jobs with unique keys: HOLDERS reads, under the write lock, which job holds each key given
# (lifecycle.added then leaves out those it holds; jobs_unique_idx would refuse them anyway).
TAKEN = "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
PARENTS = "SELECT id, status FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
DEPEND = "INSERT OR IGNORE INTO job_deps (parent_id, child_id) VALUES (?, ?)"
HOLDERS = f"""SELECT j.job_name, j.unique_key, j.id FROM json_each(?) AS k
    JOIN jobs AS j INDEXED BY jobs_unique_idx
    ON j.job_name = json_extract(k.value, '$[0]') AND j.unique_key = json_extract(k.value, '$[1]')
    WHERE j.{LIVE_KEY.replace(" status", " j.status")}"""
# The run a FIRE just named as its schedule's last job: inserted only when that FIRE
# took effect, decided by SQLite rather than by Python inside the transaction.
INSERT_FIRED = f"""INSERT INTO jobs ({SELECT}) SELECT {", ".join("?" * len(COLUMNS))}
    WHERE EXISTS (SELECT 1 FROM cron_jobs WHERE name = ? AND last_job_id = ?)"""

PAUSED = "(SELECT name FROM queues WHERE paused = 1)"  # the queues no claim takes from

# A claim reads the head of each queue it may take from on its own (the pending index leads
# with the queue) and takes the first :limit of those heads; each arm checks the queue's
# pause itself, so a pause committed after the worker chose its queues still holds.
CLAIM_ARM = (
    """SELECT * FROM (SELECT id, priority, scheduled_for FROM jobs INDEXED BY jobs_pending_idx
    WHERE status = 'pending' AND waiting_for = 0 AND queue = :q{i} AND scheduled_for <= :now {{names}}
    AND :q{i} NOT IN """
    + PAUSED
    + """
    ORDER BY priority DESC, scheduled_for, id LIMIT :c{i})"""
)
CLAIM = f"""
UPDATE jobs SET status = 'running', worker_id = :token, worker_started_at = :now,
    worker_expires_at = :until, attempt_count = attempt_count + 1,
    progress = 0, progress_message = NULL, updated_at = :now
WHERE id IN (SELECT id FROM ({{arms}}) ORDER BY priority DESC, scheduled_for, id LIMIT :limit)
RETURNING {SELECT}
"""
# The queues a claim takes from, read before the write lock: the given ones, or those with
# pending jobs (found by skipping through the pending index, one probe a queue) and, after
# outcomes, those of the jobs being retried; less the paused; for a claim alone, only
# those with a job due, so that an idle worker's claim does not take the write lock.
SEEN = """WITH RECURSIVE seen(name) AS (
    SELECT min(queue) FROM jobs INDEXED BY jobs_pending_idx WHERE status = 'pending' AND waiting_for = 0
    UNION ALL
    SELECT (SELECT min(queue) FROM jobs INDEXED BY jobs_pending_idx
        WHERE status = 'pending' AND waiting_for = 0 AND queue > seen.name)
    FROM seen WHERE seen.name IS NOT NULL)"""
CANDIDATES = {
    "pending": "SELECT name FROM seen",
    "retried": "SELECT name FROM seen UNION SELECT queue FROM jobs WHERE id IN (SELECT value FROM json_each(:retried))",
    "given": "SELECT value FROM json_each(:among)",
}
QUEUES_TO_CLAIM = (
    """{seen}, candidates(name) AS ({candidates})
SELECT name FROM candidates WHERE name IS NOT NULL AND name NOT IN """
    + PAUSED
    + """ {due}
ORDER BY name"""
)
DUE_IN_QUEUE = """AND EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_pending_idx
    WHERE status = 'pending' AND waiting_for = 0 AND queue = candidates.name AND scheduled_for <= :now {names})"""


def queues_to_claim_sql(candidates: str, due: bool, count: int | None) -> str:
    """The read of the queues a claim takes from: from *candidates* (a key of CANDIDATES), only *due* ones."""
    text = QUEUES_TO_CLAIM.format(seen=SEEN, candidates=CANDIDATES[candidates], due=DUE_IN_QUEUE if due else "")
    return queue_sql(text, count)


MOST_ARMS = 200  # SQLite allows 500 arms to a compound SELECT; past this, one arm over them all
CLAIM_WIDE = (
    """SELECT id, priority, scheduled_for FROM jobs INDEXED BY jobs_pending_idx
    WHERE status = 'pending' AND waiting_for = 0 AND queue IN (SELECT value FROM json_each(:due))
    AND scheduled_for <= :now {names}
    AND queue NOT IN """
    + PAUSED
)

# Queue reads name the pending index: with a job-name filter the planner would rather use
# the name index, and scan every job of that name ever run.
# The jobs a claim may take once due: pending and waiting for no job they run after (the
# pending index holds these alone); a listing finds the waiting ones through their own index.
PENDING = "jobs INDEXED BY jobs_pending_idx WHERE status = 'pending' AND waiting_for = 0"
WAITING = "jobs INDEXED BY jobs_waiting_idx WHERE status = 'pending' AND waiting_for > 0"
NOT_PAUSED = f"AND queue NOT IN {PAUSED}"
BY_STATUS = (
    (PENDING, {JobStatus.PENDING}),
    (WAITING, {JobStatus.PENDING}),
    ("jobs INDEXED BY jobs_status_expires_idx WHERE status = 'running'", {JobStatus.RUNNING}),
    ("jobs WHERE completed_at IS NOT NULL", FINISHED),
)
NEXT_DUE = f"SELECT min(scheduled_for) FROM {PENDING} {NOT_PAUSED} {{among}} {{names}}"
OLDEST_PENDING = f"SELECT min(scheduled_for) FROM {PENDING}"
# Every queue that has jobs or a pause row, with its jobs by status (NULL for a queue with none).
QUEUES = """SELECT j.name, coalesce(q.paused, 0), j.status, j.n
    FROM (SELECT queue AS name, status, count(*) AS n FROM jobs GROUP BY queue, status) AS j
    LEFT JOIN queues AS q ON q.name = j.name
UNION ALL
SELECT q.name, q.paused, NULL, 0 FROM queues AS q WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE queue = q.name)
ORDER BY 1"""
PAUSE = """INSERT INTO queues (name, paused, updated_at) VALUES (?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at"""
# status: pending jobs due at :now and scheduled later (counts, then the first of each, ties by id)
BACKLOG = f"SELECT count(*), coalesce(sum(scheduled_for <= :now), 0) FROM {PENDING}"
OLDEST_DUE = f"SELECT {SELECT} FROM {PENDING} AND scheduled_for <= :now ORDER BY scheduled_for, id LIMIT 1"
NEXT_SCHEDULED = f"SELECT {SELECT} FROM {PENDING} AND scheduled_for > :now ORDER BY scheduled_for, id LIMIT 1"
BACKLOG_READS = (BACKLOG, OLDEST_DUE, NEXT_SCHEDULED)
# status: the running jobs, and the jobs that failed since a time
RUNNING_JOBS = f"SELECT {SELECT} FROM jobs INDEXED BY jobs_status_expires_idx WHERE status = 'running' ORDER BY id"
FAILED_SINCE = "SELECT count(*) FROM jobs WHERE status = 'failed' AND completed_at IS NOT NULL AND completed_at >= ?"


def backlog(counts: Sequence[int], oldest: Sequence[JobRecord], following: Sequence[JobRecord]) -> Backlog:
    """The backlog from what the backlog reads gave: the counts, and the first record of each kind."""
    pending, due = counts
    return Backlog.of(pending, due, oldest, following)


def readable_times(sql: str) -> str:
    """A ``min(scheduled_for)`` query of pending jobs, that passes over times not in jobkit's form."""
    return sql.replace(PENDING, f"{PENDING} AND scheduled_for GLOB '{TIME_GLOB}'", 1)


BOUND_NAMES = 100  # up to this many job names are bound one by one; more go as one JSON array


@functools.lru_cache(maxsize=64)
def queue_sql(template: str, count: int | None, among: str | None = None) -> str:
    """*template* for any job (*count* None) or for one of *count* names bound as :n0, :n1, ...

    A list of bound values, unlike a JSON array unpacked by json_each, is matched by the
    planner once per statement rather than once per row it looks at. Past BOUND_NAMES
    (and SQLite's limit on bound values) the names go as one array, :names. *among*
    names the column that must be one of the JSON array :among.
    """
    within = f"AND {among} IN (SELECT value FROM json_each(:among))" if among else ""
    if count is None:
        return template.format(names="", among=within)
    if count > BOUND_NAMES or count == 0:  # an empty IN () leaves an INDEXED BY query no plan at all
        return template.format(names="AND job_name IN (SELECT value FROM json_each(:names))", among=within)
    return template.format(names=f"AND job_name IN ({', '.join(f':n{i}' for i in range(count))})", among=within)


@functools.lru_cache(maxsize=64)
def claim_sql(arms: int, count: int | None) -> str:
    """The claim over *arms* queues (one arm each, or one over all past MOST_ARMS), for *count* names."""
    if arms > MOST_ARMS:
        return queue_sql(CLAIM.format(arms=CLAIM_WIDE), count)
    return queue_sql(CLAIM.format(arms=" UNION ALL ".join(CLAIM_ARM.format(i=i) for i in range(arms))), count)


def claim_bindings(
    due: Sequence[str], caps: dict[str, int] | None, limit: int, bindings: dict[str, Any]
) -> dict[str, Any]:
    """*bindings* with the claim's queues and the most each may give (*caps*, else *limit*)."""
    if len(due) > MOST_ARMS:
        if caps is not None and any(caps[name] < limit for name in due):
            raise ValueError(f"a claim with numbers per queue takes from at most {MOST_ARMS} queues, not {len(due)}")
        return {**bindings, "due": json.dumps(list(due)), "limit": limit}
    arms: dict[str, Any] = {f"q{i}": name for i, name in enumerate(due)}
    arms.update((f"c{i}", min(limit, caps[name]) if caps is not None else limit) for i, name in enumerate(due))
    return {**bindings, **arms, "limit": limit}


def queue_bindings(names: Collection[str] | None, **bindings: Any) -> tuple[int | None, dict[str, Any]]:
    """The name count for :func:`queue_sql`, and *bindings* with the names added."""
    chosen = chosen_names(names)
    if chosen is None:
        return None, bindings
    if len(chosen) > BOUND_NAMES or not chosen:
        bindings["names"] = json.dumps(chosen)
    else:
        bindings.update((f"n{i}", name) for i, name in enumerate(chosen))
    return len(chosen), bindings


CLAIM_ONE = f"""
UPDATE jobs SET status = 'running', worker_id = :token, worker_started_at = :now,
    worker_expires_at = :until, attempt_count = attempt_count + 1,
    progress = 0, progress_message = NULL, updated_at = :now
WHERE id = :id AND status = 'pending' AND waiting_for = 0
RETURNING {SELECT}
"""


def held(job_id: str = "?", token: str = "?", *, table: str = "") -> str:
    """The fence of every write for one attempt: job *job_id* still running under its claim's *token*
    (bound values or, for an UPDATE ... FROM, columns; *table* qualifies the jobs table's columns)."""
    return f"{table}id = {job_id} AND {table}status = 'running' AND {table}worker_id = {token}"


HELD = held()

# A completion binds (id, token, result, at): alone as ?1..?4, and in a batch as the columns
# of one row of VALUES each (:func:`complete_rows`), the same SET either way.
_COMPLETED = """status = 'completed', result = {result}, progress = 100, error = NULL, traceback = NULL,
    worker_expires_at = NULL, completed_at = {at}, updated_at = {at}"""
COMPLETE = f"""UPDATE jobs SET {_COMPLETED.format(result="?3", at="?4")}
    WHERE {held("?1", "?2")} RETURNING id"""
COMPLETE_ROWS = (128, 64, 32, 16, 8, 4, 2, 1)  # the row counts of complete_rows: a batch is a few of these


@functools.lru_cache(maxsize=len(COMPLETE_ROWS))
def complete_rows(count: int) -> str:
    """The completion of *count* jobs in one UPDATE ... FROM (VALUES ...): one statement where an
    executemany is *count*, each with its own RETURNING table (about 7% of a drained no-op job's CPU)."""
    if count not in COMPLETE_ROWS:
        raise ValueError(f"complete_rows takes one of {COMPLETE_ROWS}, not {count}")
    values = ", ".join(["(?, ?, ?, ?)"] * count)
    return f"""UPDATE jobs SET {_COMPLETED.format(result="o.column3", at="o.column4")}
    FROM (VALUES {values}) AS o
    WHERE {held("o.column1", "o.column2", table="jobs.")} RETURNING jobs.id"""


RETRY = f"""UPDATE jobs SET status = 'pending', error = ?, traceback = ?, scheduled_for = ?,
    worker_id = NULL, worker_started_at = NULL, worker_expires_at = NULL, updated_at = ? WHERE {HELD} RETURNING id"""
FAIL = f"""UPDATE jobs SET status = 'failed', error = ?, traceback = ?, worker_expires_at = NULL,
    completed_at = ?, updated_at = ? WHERE {HELD} RETURNING id"""
CANCEL = f"""UPDATE jobs SET status = 'cancelled', error = ?, worker_expires_at = NULL,
    completed_at = ?, updated_at = ? WHERE {HELD} RETURNING id"""
POSTPONE = f"""UPDATE jobs SET status = 'pending', attempt_count = attempt_count - 1, scheduled_for = ?,
    progress = 0, progress_message = NULL, worker_id = NULL, worker_started_at = NULL, worker_expires_at = NULL,
    updated_at = ? WHERE {HELD} RETURNING id"""

# -- attempt history: an attempt that ends (but by completing) leaves a row, written just
# before the write that ends it and fenced the same way; then the oldest past the cap go.
ATTEMPTS = """SELECT number, worker_id, started_at, ended_at, outcome, error, traceback
    FROM attempts WHERE job_id = ? ORDER BY number"""


def log_sql(fence: str, outcome: str = "?", error: str = "?") -> str:
    """The write of the ending attempt of the running job *fence* picks: bound ended_at, then *outcome*,
    *error* and traceback (each bound unless given as SQL), then the fence's values."""
    return f"""INSERT INTO attempts (job_id, number, worker_id, started_at, ended_at, outcome, error, traceback)
    SELECT id, coalesce((SELECT max(number) FROM attempts WHERE job_id = jobs.id), 0) + 1,
    worker_id, worker_started_at, ?, {outcome}, {error}, {"?" if outcome == "?" else "NULL"} FROM jobs WHERE {fence}"""


LOG_ENDED = log_sql(HELD)
LOG_RELEASED = log_sql(
    HELD,
    outcome="CASE cancel_requested WHEN 1 THEN 'cancelled' ELSE 'released' END",
    error=f"CASE cancel_requested WHEN 1 THEN '{CANCELLED}' END",
)
TRIM_ATTEMPTS = f"""DELETE FROM attempts WHERE job_id = ?1
    AND number <= (SELECT max(number) FROM attempts WHERE job_id = ?1) - {ATTEMPTS_KEPT}"""


def log_steps(logs: Sequence[tuple[str, tuple[Any, ...]]], sql: str = LOG_ENDED) -> list[Step]:
    """The history writes of *logs*, each a job id and the bindings of *sql* for it; then the trims."""
    if not logs:
        return []
    ids = list(dict.fromkeys(job_id for job_id, _ in logs))
    return [(sql, [values for _, values in logs], "many"), (TRIM_ATTEMPTS, [(job_id,) for job_id in ids], "many")]


# Both return the job and the token that held it (?3, ?4: the bound token), so that each
# lease of an executemany is told apart from another lease naming the same job.
RELEASE = f"""UPDATE jobs SET status = 'pending', attempt_count = attempt_count - 1, worker_id = NULL,
    worker_started_at = NULL, worker_expires_at = NULL, progress = 0, progress_message = NULL,
    updated_at = ? WHERE {HELD} AND cancel_requested = 0 RETURNING id, ?3"""
RELEASE_CANCELLED = f"""UPDATE jobs SET status = 'cancelled', error = '{CANCELLED}', worker_expires_at = NULL,
    completed_at = ?, updated_at = ? WHERE {HELD} AND cancel_requested = 1 RETURNING id, ?4"""
CANCEL_JOB = f"""UPDATE jobs SET
    status = CASE status WHEN 'pending' THEN 'cancelled' ELSE status END,
    error = CASE status WHEN 'pending' THEN '{CANCELLED}' ELSE error END,
    completed_at = CASE status WHEN 'pending' THEN :now ELSE completed_at END,
    cancel_requested = CASE status WHEN 'running' THEN 1 ELSE cancel_requested END,
    updated_at = :now
WHERE id = :id AND (status = 'pending' OR (status = 'running' AND cancel_requested = 0))"""
# A job whose unique key another live job holds is not retried (lifecycle.retry_by_hand).
RETRY_JOB = f"""UPDATE jobs SET status = 'pending', attempt_count = 0, result = NULL, progress = 0,
    progress_message = NULL, error = NULL, traceback = NULL, worker_id = NULL, worker_started_at = NULL,
    worker_expires_at = NULL, completed_at = NULL, cancel_requested = 0, scheduled_for = ?, updated_at = ?,
    waiting_for = (SELECT count(*) FROM job_deps AS d JOIN jobs AS p ON p.id = d.parent_id
        WHERE d.child_id = jobs.id AND p.status <> 'completed')
WHERE id = ? AND status IN ('failed', 'cancelled') AND NOT EXISTS (
    SELECT 1 FROM jobs AS live INDEXED BY jobs_unique_idx WHERE live.job_name = jobs.job_name
    AND live.unique_key = jobs.unique_key AND live.{LIVE_KEY.replace(" status", " live.status")})
RETURNING id"""
HEARTBEAT = f"UPDATE jobs SET worker_expires_at = ?, updated_at = ? WHERE {HELD} RETURNING id, cancel_requested"
PROGRESS = f"UPDATE jobs SET progress = ?, progress_message = ?, updated_at = ? WHERE {HELD}"


def transition_sql(t: Transition) -> tuple[str, tuple[Any, ...]]:
    match t:
        case Complete(job_id=job_id, token=token, result=result, at=at):
            return COMPLETE, (job_id, token, result, ts(at))
        case Retry(job_id=job_id, token=token, error=error, traceback=tb, at=at, run_at=run_at):
            return RETRY, (error, tb, ts(run_at), ts(at), job_id, token)
        case Fail(job_id=job_id, token=token, error=error, traceback=tb, at=at):
            return FAIL, (error, tb, ts(at), ts(at), job_id, token)
        case Cancel(job_id=job_id, token=token, reason=reason, at=at):
            return CANCEL, (reason, ts(at), ts(at), job_id, token)
        case Postpone(job_id=job_id, token=token, at=at, run_at=run_at):
            return POSTPONE, (ts(run_at), ts(at), job_id, token)
    raise TypeError(f"not a transition: {t!r}")  # pragma: no cover


Write = tuple[str, str, tuple[Any, ...], "tuple[Any, ...] | None"]
"""One transition to write: its job id, statement and values, and the bindings of its LOG_ENDED (None: no entry)."""


def writes_of(transitions: Sequence[Transition]) -> list[Write]:
    """Each transition as a :data:`Write`; TypeError for anything else."""
    writes: list[Write] = []
    for t in transitions:
        sql, values = transition_sql(t)  # first: it names what is not a transition
        ending = lifecycle.ending_of(t)
        log = None if ending is None else (ts(t.at), *ending, t.job_id, t.token)
        writes.append((t.job_id, sql, values, log))
    return writes


WritePlan = list[tuple[Step, list[str]]]


def write_plan(writes: Sequence[Write]) -> WritePlan:
    """*writes* (from :func:`writes_of`) as transaction steps, each with the job ids it ends (none for history).

    Each batch of :func:`jobkit.stores.writes.runs` is one executemany (one prepared
    statement, one call into SQLite), or for completions, the common end, a few
    UPDATE ... FROM (VALUES ...) (:func:`complete_rows`); any other span is one statement,
    each after the history writes of its attempts. Built before the transaction, so that
    inside it only the statements run.
    """
    plan: WritePlan = []
    for start, end, batch in fenced_writes.runs([(job_id, sql) for job_id, sql, _, _ in writes]):
        run = writes[start:end]
        ids = [job_id for job_id, _, _, _ in run]
        plan.extend((step, []) for step in log_steps([(job_id, log) for job_id, _, _, log in run if log is not None]))
        sql = run[0][1]
        if not batch:
            plan.append(((sql, run[0][2], "rows"), ids))
        elif sql == COMPLETE:
            plan.extend(_completions(run))
        else:
            plan.append(((sql, [values for _, _, values, _ in run], "many"), ids))
    return plan


def _completions(run: Sequence[Write]) -> WritePlan:
    """A batch of completions (distinct jobs) as the fewest statements of :data:`COMPLETE_ROWS` rows."""
    plan: WritePlan = []
    start = 0
    for count in COMPLETE_ROWS:
        while len(run) - start >= count:
            chunk = run[start : start + count]
            flat = [value for _, _, values, _ in chunk for value in values]
            plan.append(((complete_rows(count), flat, "rows"), [job_id for job_id, _, _, _ in chunk]))
            start += count
    return plan


def applied(plan: WritePlan, results: Sequence[list[Any]]) -> list[bool]:
    """For each write of *plan*, in order: True when its token still held the job (it returned its id)."""
    return fenced_writes.applied([ids for _, ids in plan], results)


def claimed(rows: list[Any]) -> tuple[list[JobRecord], list[UnreadableRow]]:
    """The records a claim returned, in queue order (RETURNING promises no order), and the rows it could not read."""
    records, unreadable = records_of(rows)
    records.sort(key=lambda j: (-j.priority, j.scheduled_for, j.id))
    return records, unreadable
