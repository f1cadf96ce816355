"""Records as JSON-ready values, and times and text for people: shared by the admin command and the dashboard.

Pure: values in, data out. Nothing here reads a clock (``now`` is passed in) or draws
(no rich): ``*_json`` give what ``--json`` prints (times as ISO 8601 strings, params and
results decoded), the ``format_*`` helpers the text of a table's cells.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from jobkit import lifecycle
from jobkit.model import Attempt, Backlog, JobRecord, JobStatus, QueueInfo, Schedule, Summary

OVERDUE = 0.5
"""A lease is overdue for renewal after this fraction of its length with none: its holder renews every third."""


def format_time(value: datetime | None) -> str:
    """``2026-01-01 12:00:03Z`` (UTC, to the second), or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def format_age(delta: timedelta) -> str:
    """A duration for people, two units at most: ``45s``, ``3m 12s``, ``2h 5m``, ``3d 4h``."""
    total = max(0, int(delta.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_relative(value: datetime, now: datetime) -> str:
    """``3m 12s ago``, or ``in 5m 0s`` for a time to come."""
    delta = now - value
    return f"{format_age(delta)} ago" if delta >= timedelta(0) else f"in {format_age(-delta)}"


def format_since(value: datetime | None, now: datetime) -> str:
    """``2026-01-01 12:00:03Z (3m 12s ago)``, or ``-``."""
    if value is None:
        return "-"
    return f"{format_time(value)} ({format_relative(value, now)})"


def first_line(text: str | None, width: int = 60) -> str:
    """The first line of *text*, cut to *width* characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def decoded(text: str | None) -> Any:
    """Stored JSON text as data; text that is not JSON stays text."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def pretty(text: str | None) -> str:
    """Stored JSON text indented for reading."""
    value = decoded(text)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, JobStatus):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def job_json(record: JobRecord) -> dict[str, Any]:
    """Every field of *record* as JSON data: ISO 8601 times, params and result decoded."""
    data = {field.name: _plain(getattr(record, field.name)) for field in attrs.fields(JobRecord)}
    data["params"] = decoded(record.params)
    data["result"] = decoded(record.result)
    return data


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    """One attempt as JSON data: its number, worker, ISO 8601 times, outcome, error and traceback."""
    return {field.name: _plain(getattr(attempt, field.name)) for field in attrs.fields(Attempt)}


def schedule_json(entry: Schedule) -> dict[str, Any]:
    """Every field of a schedule as JSON data, params decoded."""
    data = {field.name: _plain(getattr(entry, field.name)) for field in attrs.fields(Schedule)}
    data["params"] = decoded(entry.params)
    return data


def queue_json(info: QueueInfo) -> dict[str, Any]:
    """A queue as JSON data: its name, whether it is paused, its jobs by status."""
    return {"name": info.name, "paused": info.paused, "counts": {s.value: info.counts.get(s, 0) for s in JobStatus}}


def summary_json(
    summary: Summary, now: datetime, *, backlog: Backlog, queues: Sequence[QueueInfo] = ()
) -> dict[str, Any]:
    """What ``status --json`` prints: counts, what is due and scheduled, running jobs, leases, recent failures.

    ``oldest_pending`` (and its age, negative while it is not due yet) stays for scripts
    written before ``due`` and ``scheduled`` told the two apart.
    """
    oldest = summary.oldest_pending
    return {
        "at": now.isoformat(),
        "counts": {status.value: summary.counts.get(status, 0) for status in JobStatus},
        "by_name": {
            name: {status.value: counts.get(status, 0) for status in JobStatus}
            for name, counts in summary.by_name.items()
        },
        "oldest_pending": oldest.isoformat() if oldest else None,
        "oldest_pending_age": (now - oldest).total_seconds() if oldest else None,
        **backlog_json(backlog, now),
        "running": [job_json(job) for job in summary.running],
        "leases": [holder_json(holder, now) for holder in holders(summary.running)],
        "failed_last_hour": summary.failed_since,
        "queues": [queue_json(info) for info in queues],
    }


def backlog_json(backlog: Backlog, now: datetime) -> dict[str, Any]:
    """``due`` (how many, and the oldest: how long it has waited) and ``scheduled`` (how many, and the next)."""
    oldest, following = backlog.oldest_due, backlog.next_scheduled
    waited = (
        None if oldest is None else {**_pending_json(oldest), "waited_seconds": _seconds(now - oldest.scheduled_for)}
    )
    coming = (
        None
        if following is None
        else {**_pending_json(following), "in_seconds": _seconds(following.scheduled_for - now)}
    )
    return {
        "due": {"count": backlog.due, "oldest": waited},
        "scheduled": {"count": backlog.scheduled, "next": coming},
    }


def _pending_json(job: JobRecord) -> dict[str, Any]:
    return {"id": job.id, "job_name": job.job_name, "due_at": job.scheduled_for.isoformat()}


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


# -- leases -------------------------------------------------------------------------------
@attrs.frozen
class Holder:
    """One holder of leases (a worker, or one ``now()``/``execute()`` call), as its running jobs show it.

    ``renewed_at`` is its latest write to any of them (a claim, heartbeat or progress:
    each proves it was alive; a cancel request, written by someone else, also counts);
    ``expires_at`` the earliest lock among them, when reapers may first take one back;
    ``length`` how long the lease renewed last was written to last, from its expiry less
    that write (both times are the holder's, so a skewed clock cancels out).
    """

    worker: str
    jobs: tuple[str, ...]
    renewed_at: datetime
    expires_at: datetime | None
    length: timedelta


def holder_of(token: str) -> str:
    """Who holds a lease, from its token: a worker's tokens are ``<worker id>:<claim number>``.

    That is how :mod:`jobkit.worker.loop` writes them; any other token (a ``now()`` or
    ``execute()`` call's) names its holder by itself.
    """
    worker, _, claim = token.rpartition(":")
    return worker if worker and claim.isdigit() else token


def holders(running: Sequence[JobRecord]) -> list[Holder]:
    """The holders of *running* jobs' leases, by worker id."""
    held: dict[str, list[JobRecord]] = {}
    for job in running:
        if job.worker_id is not None:
            held.setdefault(holder_of(job.worker_id), []).append(job)
    found = []
    for worker, jobs in sorted(held.items()):
        last = max(jobs, key=lambda job: job.updated_at)
        expiries = [job.worker_expires_at for job in jobs if job.worker_expires_at is not None]
        mark = lifecycle.mark_of(last)
        length = lifecycle.stated_length(mark) if mark is not None else timedelta(0)
        found.append(
            Holder(
                worker=worker,
                jobs=tuple(sorted(job.id for job in jobs)),
                renewed_at=last.updated_at,
                expires_at=min(expiries, default=None),
                length=max(length, timedelta(0)),
            )
        )
    return found


def is_overdue(holder: Holder, now: datetime) -> bool:
    """Whether *holder* went longer without a renewal than a live one would (:data:`OVERDUE` of its lease).

    A hint for people, by this host's clock against the holder's: reapers decide by
    what they see happen, not by this.
    """
    expired = holder.expires_at is not None and holder.expires_at <= now
    return expired or now - holder.renewed_at > holder.length * OVERDUE


def lease_hint(holder: Holder, now: datetime) -> str | None:
    """``no renewal for 1m 35s; presumed lost at 2026-01-01 12:05:00Z``, or None while renewals come on time."""
    if not is_overdue(holder, now):
        return None
    silent = f"no renewal for {format_age(now - holder.renewed_at)}"
    if holder.expires_at is None:
        return f"{silent}; its lock expiry cannot be read"
    if holder.expires_at > now:
        return f"{silent}; presumed lost at {format_time(holder.expires_at)}"
    expired = format_relative(holder.expires_at, now)
    return f"{silent}; lock expired {expired}: presumed lost, the next reap gives its jobs back"


def holder_json(holder: Holder, now: datetime) -> dict[str, Any]:
    """One holder as ``status --json`` gives it: its jobs, last renewal, lock expiry and the hint when overdue."""
    overdue = is_overdue(holder, now)
    return {
        "worker": holder.worker,
        "jobs": list(holder.jobs),
        "renewed_at": holder.renewed_at.isoformat(),
        "silent_seconds": _seconds(now - holder.renewed_at),
        "expires_at": holder.expires_at.isoformat() if holder.expires_at else None,
        "lease_seconds": _seconds(holder.length),
        "overdue": overdue,
        "presumed_lost_at": holder.expires_at.isoformat() if overdue and holder.expires_at else None,
        "hint": lease_hint(holder, now),
    }
