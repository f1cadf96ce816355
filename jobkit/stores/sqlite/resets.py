"""The SQL of a SqliteStore's reaper: which running jobs lost their worker, and the fenced writes that reset them.

A reset is decided in Python from a read made before the write lock, and each write is
fenced by what was read, so a job that changed in between is left for the next round.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobkit.model import CANCELLED_WHILE_LOST, LeaseMark, worker_lost
from jobkit.stores.sqlite.codec import TIME_GLOB, dt, ts
from jobkit.stores.sqlite.queries import Step, held, log_sql, log_steps

# A lock expiry that is not a time as jobkit writes it (a row another tool wrote) counts
# as run out: text such as 'never' would otherwise sort after every time, for good.
LOCK_RAN_OUT = f"(worker_expires_at <= ? OR worker_expires_at NOT GLOB '{TIME_GLOB}')"
EXPIRED = f"""SELECT id, attempt_count, max_attempts, cancel_requested FROM jobs INDEXED BY jobs_status_expires_idx
    WHERE status = 'running' AND {LOCK_RAN_OUT}"""
# Each reset is fenced by what EXPIRED read before the transaction (still expired, the
# same attempt, the same cancel request): a job that changed in between is left for the
# next round rather than reset on stale facts.
STILL_EXPIRED = f"""id = ? AND status = 'running' AND {LOCK_RAN_OUT}
    AND attempt_count = ? AND cancel_requested = ?"""
RESET_CANCELLED = f"""UPDATE jobs SET status = 'cancelled', error = ?, traceback = NULL,
    worker_expires_at = NULL, completed_at = ?, updated_at = ? WHERE {STILL_EXPIRED} RETURNING id"""
RESET_FAILED = f"""UPDATE jobs SET status = 'failed', error = ?, traceback = NULL,
    worker_expires_at = NULL, completed_at = ?, updated_at = ? WHERE {STILL_EXPIRED} RETURNING id"""
RESET_PENDING = f"""UPDATE jobs SET status = 'pending', error = ?, traceback = NULL, scheduled_for = ?,
    worker_id = NULL, worker_started_at = NULL, worker_expires_at = NULL,
    updated_at = ? WHERE {STILL_EXPIRED} RETURNING id"""

# What a reaper watches: every running job's lease as it stands (the raw texts: a row
# another tool wrote must not keep the others from being read).
LEASES = """SELECT id, worker_id, worker_expires_at, updated_at, attempt_count, max_attempts, cancel_requested
    FROM jobs INDEXED BY jobs_status_expires_idx WHERE status = 'running' ORDER BY id"""
# The same three resets, fenced instead by the lease the reaper watched go unrenewed:
# the holder's token and the expiry it last wrote, exactly as read, and the same attempt.
UNRENEWED = f"""{held()} AND worker_expires_at IS ?
    AND attempt_count = ? AND cancel_requested = ?"""
# Each tuple: the history write of the lost attempt (fenced the same), then the three resets.
EXPIRED_RESETS = (log_sql(STILL_EXPIRED), RESET_CANCELLED, RESET_FAILED, RESET_PENDING)
UNRENEWED_RESETS = tuple(sql.replace(STILL_EXPIRED, UNRENEWED) for sql in EXPIRED_RESETS)

Found = tuple[str, int, int, int, tuple[Any, ...]]
"""A running job a reaper decided to reset: id, attempts, max attempts, cancel asked, and its write's fence."""


def _time_or_none(value: object) -> datetime | None:
    """A stored time, or None when it is not one jobkit wrote (a row another tool wrote)."""
    try:
        return dt(value) if isinstance(value, str) else None
    except ValueError:
        return None


def lease_marks(rows: Sequence[Any]) -> list[tuple[LeaseMark, tuple[Any, ...]]]:
    """Each LEASES row as its mark, with the raw values a reset of it is fenced by and decided on."""
    return [
        (LeaseMark(job_id, token, _time_or_none(expires), _time_or_none(updated)), (expires, *rest))
        for job_id, token, expires, updated, *rest in rows
    ]


def check_marks(marks: Sequence[LeaseMark]) -> None:
    """Refuse marks with naive times (ValueError), as every write refuses them."""
    for mark in marks:
        for value in (mark.expires_at, mark.updated_at):
            if value is not None:
                ts(value)


def unrenewed(rows: Sequence[Any], marks: Sequence[LeaseMark]) -> list[Found]:
    """The running jobs (LEASES *rows*) still held as *marks* saw them, fenced by the token, raw expiry and attempt."""
    seen = {(m.job_id, m.token, m.expires_at) for m in marks}
    return [
        (mark.job_id, attempts, max_attempts, cancelling, (mark.job_id, mark.token, raw, attempts, cancelling))
        for mark, (raw, attempts, max_attempts, cancelling) in lease_marks(rows)
        if (mark.job_id, mark.token, mark.expires_at) in seen
    ]


def resets(found: Sequence[Found], at: str, statements: Sequence[str]) -> tuple[list[Step], dict[str, list[str]]]:
    """The resets of *found* jobs, as lifecycle.expire decides them, and the ids of each kind.

    Cancelled when asked to, failed when the attempts are spent, else pending again;
    *statements* are the history write and the three UPDATEs (EXPIRED_RESETS or
    UNRENEWED_RESETS), each fenced by the job's fence, so a job that changed since it
    was read is left alone.
    """
    log, *updates = statements
    kinds: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
        kind: (sql, []) for kind, sql in zip(("cancelled", "failed", "retried"), updates, strict=True)
    }
    logs: list[tuple[str, tuple[Any, ...]]] = []
    for job_id, attempts, max_attempts, cancelling, fence in found:
        kind = "cancelled" if cancelling else "failed" if attempts >= max_attempts else "retried"
        error = CANCELLED_WHILE_LOST if cancelling else worker_lost(attempts, max_attempts)
        kinds[kind][1].append((error, at, at, *fence))
        logs.append((job_id, (at, "lost", error, None, *fence)))
    steps = log_steps(logs, log) + [(sql, values, "many") for sql, values in kinds.values() if values]
    return steps, {kind: [values[3] for values in rows] for kind, (_, rows) in kinds.items()}
