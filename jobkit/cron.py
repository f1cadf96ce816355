"""Cron arithmetic: when a schedule fires next, and what a tick owes it. Pure.

Expressions are the standard five fields (minute hour day-of-month month day-of-week) or
one of the aliases ``@yearly``/``@annually``, ``@monthly``, ``@weekly``,
``@daily``/``@midnight``, ``@hourly``; they are evaluated in the schedule's timezone by
cronsim, which treats daylight-saving changes as Debian's cron does: a fire time that a
spring-forward gap skips runs at the first valid moment after it; in a fall-back
overlap a job at a fixed hour runs once, while one with a wildcard hour runs in both
hours.

Misfire policy: a tick that finds a schedule late (because nothing ran for a while)
enqueues one run, for the latest missed fire time, and moves on to the next regular fire
time after now. It never replays a backlog.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from cronsim import CronSim, CronSimError

from jobkit.errors import ScheduleError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
SEARCH_YEARS = 10  # an expression that does not fire within this many years is refused


def zone(name: str) -> ZoneInfo:
    """The timezone called *name*, or ScheduleError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ScheduleError(
            f"unknown timezone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'", value=name
        ) from exc


def _fields(expression: str) -> str:
    text = " ".join(expression.split())
    return ALIASES.get(text.lower(), text)


def next_fire(expression: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after *after*, in UTC."""
    return _step(expression, tz, after, reverse=False)


def latest_fire(expression: str, tz: str, at_or_before: datetime) -> datetime:
    """The last fire time at or before *at_or_before*, in UTC."""
    return _step(expression, tz, at_or_before + timedelta(microseconds=1), reverse=True)


def _step(expression: str, tz: str, start: datetime, *, reverse: bool) -> datetime:
    if start.tzinfo is None:
        raise ValueError(f"naive datetime {start!r}: cron arithmetic needs timezone-aware times")
    local = start.astimezone(zone(tz))
    try:
        found = next(iter(CronSim(_fields(expression), local, reverse=reverse)))
    except CronSimError as exc:
        raise ScheduleError(f"invalid cron expression {expression!r}: {exc}", value=expression) from exc
    except StopIteration as exc:
        raise ScheduleError(f"cron expression {expression!r} never fires", value=expression) from exc
    limit = timedelta(days=366 * SEARCH_YEARS)
    if abs(found - local) > limit:
        raise ScheduleError(
            f"cron expression {expression!r} does not fire within {SEARCH_YEARS} years", value=expression
        )
    return found.astimezone(timezone.utc)


def validate(expression: str, tz: str, now: datetime) -> datetime:
    """Check that *expression* parses and fires within the search bound; return its next fire."""
    if not isinstance(expression, str) or not expression.strip():
        raise ScheduleError(f"a cron expression must be a non-empty str, not {expression!r}", value=expression)
    return next_fire(expression, tz, now)


@attrs.frozen
class Firing:
    """What a tick owes a due schedule: one run for ``fire_time``, then wait until ``next_run_at``."""

    fire_time: datetime
    next_run_at: datetime


def due(expression: str, tz: str, next_run_at: datetime | None, now: datetime) -> Firing | None:
    """The run a schedule owes at *now*, or None when it is not yet due.

    However many fire times were missed, one run is owed: for the latest of them.
    """
    if next_run_at is None or next_run_at > now:
        return None
    fire_time = max(next_run_at, latest_fire(expression, tz, now))
    return Firing(fire_time=fire_time, next_run_at=next_fire(expression, tz, now))
