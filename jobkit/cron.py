"""Cron arithmetic: when a schedule fires next, and what a tick owes it. Pure.

Expressions are the standard five fields (minute hour day-of-month month day-of-week) or
one of the aliases ``@yearly``/``@annually``, ``@monthly``, ``@weekly``,
``@daily``/``@midnight``, ``@hourly``; they are evaluated in the schedule's timezone by
cronsim, which treats daylight-saving changes as Debian's cron does. A job at a fixed
time (neither the minute nor the hour field starts with ``*``): a fire time that a
spring-forward gap skips runs at the first valid moment after it, and one in a fall-back
overlap runs once. Any other job follows the wall clock: it has no runs in the skipped
hour and runs in both passes of the repeated one (so ``*/20 2 * * *`` in Europe/Berlin
has no runs on the spring-forward night and six on the fall-back night).

Misfire policy: a tick that finds a schedule late (because nothing ran for a while)
enqueues one run, for the latest missed fire time, and moves on to the next regular fire
time after now. It never replays a backlog.
"""

from __future__ import annotations

import itertools
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
_SETTLE_TRIES = 8  # reverse walks latest_fire may take before a forward walk confirms one


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
    fields = ALIASES.get(text.lower(), text)
    # cronsim also takes six fields, the first being seconds: "* * * * * *" would fire every second.
    if len(fields.split()) != 5 and not fields.startswith("@"):
        raise ScheduleError(
            f"invalid cron expression {expression!r}: use five fields (minute hour day-of-month month "
            "day-of-week) or an alias such as @hourly",
            value=expression,
        )
    return fields


def next_fire(expression: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after *after*, in UTC."""
    return _step(expression, tz, after, reverse=False)


def latest_fire(expression: str, tz: str, at_or_before: datetime) -> datetime:
    """The last fire time at or before *at_or_before*, in UTC: the last one :func:`next_fire` steps onto."""
    # cronsim walks backwards in wall-clock time, which around a DST change can miss a fire time
    # (in Berlin at 02:10 CET on the fall-back night, "30 2 * * *" ran at 02:30 CEST, 40 minutes
    # before, but the reverse walk finds the day before) or find one that forward walks never
    # fire. The forward walk defines the schedule, so the reverse answer is only a starting point.
    micro = timedelta(microseconds=1)
    bound = at_or_before
    for _ in range(_SETTLE_TRIES):
        start = _step(expression, tz, bound + micro, reverse=True)
        found = next_fire(expression, tz, start - micro)  # the first real fire time at or after start
        if found <= at_or_before:
            break
        bound = start - micro  # no real fire time in [start, at_or_before]: look before start
    else:  # pragma: no cover - would need a zone changing its clocks several times a day
        raise ScheduleError(f"cannot find the latest fire time of {expression!r} in {tz}", value=expression)
    while (later := next_fire(expression, tz, found)) <= at_or_before:
        found = later
    return found


def _step(expression: str, tz: str, start: datetime, *, reverse: bool) -> datetime:
    if start.tzinfo is None:
        raise ValueError(f"naive datetime {start!r}: cron arithmetic needs timezone-aware times")
    local = start.astimezone(zone(tz))
    try:
        # cronsim compares wall-clock times, so in a fall-back overlap a fixed-hour job can come
        # back on the wrong side of *start*: at 02:10 CET on Berlin's fall-back night, "30 2 * * *"
        # gives 02:30 CEST, 40 minutes earlier. Taken as the next fire, that time is due at once,
        # and again after every fire. Skip such times; there are at most a few.
        for found in itertools.islice(CronSim(_fields(expression), local, reverse=reverse), 8):
            instant = found.astimezone(timezone.utc)
            if instant < start if reverse else instant > start:
                break
        else:
            raise ScheduleError(f"cron expression {expression!r} never fires", value=expression)
    except CronSimError as exc:
        raise ScheduleError(f"invalid cron expression {expression!r}: {exc}", value=expression) from exc
    limit = timedelta(days=366 * SEARCH_YEARS)
    if abs(found - local) > limit:
        raise ScheduleError(
            f"cron expression {expression!r} does not fire within {SEARCH_YEARS} years", value=expression
        )
    return instant


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


def check_name(name: object) -> str:
    """A schedule's name, refused unless it is a non-empty str."""
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(f"a schedule needs a name (a non-empty str), not {name!r}", value=name)
    return name
