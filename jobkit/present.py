"""Records as JSON-ready values, and times and text for people: shared by the admin command and the dashboard.

Pure: values in, data out. Nothing here reads a clock (``now`` is passed in) or draws
(no rich): ``*_json`` give what ``--json`` prints (times as ISO 8601 strings, params and
results decoded), the ``format_*`` helpers the text of a table's cells.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from jobkit.model import JobRecord, JobStatus, Schedule, Summary


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
    return value


def job_json(record: JobRecord) -> dict[str, Any]:
    """Every field of *record* as JSON data: ISO 8601 times, params and result decoded."""
    data = {field.name: _plain(getattr(record, field.name)) for field in attrs.fields(JobRecord)}
    data["params"] = decoded(record.params)
    data["result"] = decoded(record.result)
    return data


def schedule_json(entry: Schedule) -> dict[str, Any]:
    """Every field of a schedule as JSON data, params decoded."""
    data = {field.name: _plain(getattr(entry, field.name)) for field in attrs.fields(Schedule)}
    data["params"] = decoded(entry.params)
    return data


def summary_json(summary: Summary, now: datetime) -> dict[str, Any]:
    """What ``status --json`` prints: counts, counts by name, oldest pending, running jobs, recent failures."""
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
        "running": [job_json(job) for job in summary.running],
        "failed_last_hour": summary.failed_since,
    }
