"""How a worker runs, as one frozen value: every default is written here and nowhere else.

``python -m jobkit.worker``, :func:`jobkit.run_worker` and :func:`jobkit.tick` all build
a :class:`WorkerOptions`; the CLI's flags and help texts read their defaults from it.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Literal

import attrs

from jobkit.model import check_queue

Durability = Literal["full", "normal"]
Isolation = Literal["thread", "process"]

DEFAULT_LOCK_TIMEOUT = timedelta(seconds=300)
"""How long a claim holds a job without a heartbeat before another worker may take it."""

UNRESOLVED_BACKOFF = 60.0
"""Seconds (doubling per attempt) before a job whose name a worker cannot resolve is tried again."""

BATCH = 500
PRUNE_FRACTION = 0.1  # retention comes round at least every tenth of the shortest keep
"""Rows one short transaction deletes or sends back (pruning, purge, retry --failed): workers wait little."""


def _at_least_one(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an int of at least 1, not {value!r}")


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


def _not_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{attribute.name} must be seconds, 0 or more, not {value!r}")


def _names(value: str | Iterable[str]) -> tuple[str, ...]:
    """One name or many, as a tuple (a lone string is one name, not its letters)."""
    return (value,) if isinstance(value, str) else tuple(value)


def _packages(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for package in value:
        if not isinstance(package, str) or not package.isidentifier():
            raise ValueError(f"{attribute.name} must list top-level package names such as 'shop', not {package!r}")


def _keep(_: object, attribute: attrs.Attribute[Any], value: timedelta | None) -> None:
    if value is not None and (not isinstance(value, timedelta) or value < timedelta(0)):
        raise ValueError(f"{attribute.name} must be a timedelta of 0 or more, or None to keep forever, not {value!r}")


QueueLimits = Mapping[str, "int | None"]
"""The queues a worker serves, each with the most of its jobs it runs at once (None: no limit of its own)."""


def parse_queues(text: str) -> dict[str, int | None]:
    """``--queues``: ``emails=2,default=8`` or ``emails,default`` (a queue without a number shares the slots)."""
    limits: dict[str, int | None] = {}
    for part in text.split(","):
        name, sep, number = part.strip().partition("=")
        if sep and not (number.strip().isdigit() and int(number) >= 1):
            raise ValueError(f"queue {name.strip()!r}: the number after = must be an int of at least 1, not {number!r}")
        limits[check_queue(name.strip(), what="each of --queues")] = int(number) if sep else None
    return limits


def _queues(value: QueueLimits | Iterable[str] | None) -> dict[str, int | None] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_queues(value)
    if not isinstance(value, Mapping):
        value = dict.fromkeys(value)
    limits = {check_queue(name, what="a queue of queues"): most for name, most in value.items()}
    for name, most in limits.items():
        if most is not None and (type(most) is not int or most < 1):
            raise ValueError(f"queues: queue {name!r} must map to an int of at least 1 or None, not {most!r}")
    if not limits:
        raise ValueError("queues must name at least one queue, or be None for every queue")
    return limits


@attrs.frozen
class WorkerOptions:
    """Settings of one worker process.

    - ``concurrency``: handlers run at once (sync ones on threads, async ones on a loop)
    - ``lock_timeout``: seconds a claim holds a job without a heartbeat
    - ``poll_interval``: the longest wait between looks for due jobs (new jobs wake it sooner)
    - ``grace``: on SIGTERM/SIGINT, how long running jobs may take before they are given back
    - ``keep_completed`` / ``keep_failed``: retention of finished jobs (None keeps them)
    - ``durability``: SQLite's synchronous mode for the worker's own store
    - ``enforce_timeouts``: end the process when a sync handler overruns its timeout
      (for children of a supervisor, which starts another)
    - ``reap_every``: seconds between looks for expired locks, due cron runs and cancellations
    - ``prune_every``, ``prune_batch``: how often retention runs, and how many jobs a
      transaction deletes
    - ``isolation``: where sync handlers run: ``"thread"`` (default), or ``"process"``, a
      child process each, so that a handler that holds the GIL or overruns its
      ``timeout`` cannot stall the worker (the child is killed at the timeout)
    - ``import_from``: without a registry, the top-level packages whose modules a job
      name may import (empty: any module; whoever writes the database chooses)
    - ``unresolved_backoff``: the base delay in seconds (doubling per attempt) before a
      job whose name this worker cannot resolve is tried again; it spends attempts as a
      raising handler does, never faster than this
    - ``queues``: the queues served (None: every queue), each with the most of its jobs
      run at once, or None to share ``concurrency`` (``"emails=2,default"`` parses as the
      CLI's ``--queues``); ``concurrency`` stays the limit of them all
    """

    concurrency: int = attrs.field(default=5, validator=_at_least_one)
    lock_timeout: float = attrs.field(default=DEFAULT_LOCK_TIMEOUT.total_seconds(), validator=_positive)
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    grace: float = attrs.field(default=30.0, validator=_not_negative)
    keep_completed: timedelta | None = attrs.field(default=timedelta(days=7), validator=_keep)
    keep_failed: timedelta | None = attrs.field(default=timedelta(days=30), validator=_keep)
    durability: Durability = attrs.field(default="full", validator=attrs.validators.in_(("full", "normal")))
    enforce_timeouts: bool = False
    reap_every: float = attrs.field(default=1.0, validator=_positive)
    prune_every: float = attrs.field(default=600.0, validator=_positive)
    prune_batch: int = attrs.field(default=BATCH, validator=_at_least_one)
    isolation: Isolation = attrs.field(default="thread", validator=attrs.validators.in_(("thread", "process")))
    import_from: tuple[str, ...] = attrs.field(default=(), converter=_names, validator=_packages)
    unresolved_backoff: float = attrs.field(default=UNRESOLVED_BACKOFF, validator=_not_negative)
    queues: dict[str, int | None] | None = attrs.field(default=None, converter=_queues)

    def claim_limits(self, held: Iterable[str], want: int) -> dict[str, int] | None:
        """What a claim of *want* jobs may take from each queue, the worker holding jobs of the queues *held*.

        None for every queue. A queue with a number of its own gets what is left of it,
        one without gets *want*: so a worker runs at most that many of the queue's jobs.
        """
        if self.queues is None:
            return None
        holding = collections.Counter(held)
        return {name: want if most is None else max(0, most - holding[name]) for name, most in self.queues.items()}

    @property
    def lock(self) -> timedelta:
        return timedelta(seconds=self.lock_timeout)

    @property
    def prune_period(self) -> float:
        """Seconds between retention passes: ``prune_every``, or a tenth of the shortest keep when that is sooner.

        So a job kept 60 s is deleted within about 6 s of becoming old enough (passes run
        with the reaper, so never more often than ``reap_every``), while the default keeps
        of days prune every ``prune_every``.
        """
        keeps = (keep for keep in (self.keep_completed, self.keep_failed) if keep is not None)
        return min([self.prune_every, *(keep.total_seconds() * PRUNE_FRACTION for keep in keeps)])
