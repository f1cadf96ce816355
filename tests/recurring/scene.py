"""The jobs and helpers of the schedule tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs

import jobkit
from jobkit.model import JobRecord, Schedule
from jobkit.store import Store
from jobkit.worker import Report, tick
from tests.support import T0, FakeClock

FIVE = "*/5 * * * *"
DAY = {"period": "day"}


@attrs.frozen
class Period:
    period: str


jobs = jobkit.Registry()


@jobs.job(max_attempts=2)
def report(params: Period, ctx: jobkit.Context) -> str:
    return params.period


others = jobkit.Registry()


@others.job()
def cleanup(params: int, ctx: jobkit.Context) -> int:
    return params


# -- helpers ----------------------------------------------------------------------------
def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def stamp(name: str, fire_time: datetime) -> str:
    return f"cron:{name}@{fire_time:%Y-%m-%dT%H:%M:%SZ}"


def all_jobs(store: Store) -> list[JobRecord]:
    return store.list_jobs(limit=1_000_000)


def stamps(store: Store) -> list[str]:
    """The correlation ids of every job, sorted: a fire time enqueued twice shows twice."""
    return sorted(job.correlation_id or "" for job in all_jobs(store))


def make(
    store: Store, clock: FakeClock, expression: str = FIVE, params: Any = DAY, *, name: str = "five", **options: Any
) -> Schedule:
    return jobkit.schedule(store, report, expression, params, name=name, clock=clock, **options)


def stored(store: Store, name: str) -> Schedule:
    found = store.get_schedule(name)
    assert found is not None, name
    return found


def app(*declared: tuple[str, str], job: jobkit.JobSpec[Any, Any] = report, params: Any = DAY) -> jobkit.Registry:
    """A registry with *job* and the schedules ``(expression, name)`` declared for it."""
    registry = jobkit.Registry()
    registry.register(job)
    for expression, name in declared:
        registry.cron(expression, job, params, name=name)
    return registry


def quiet_tick(store: Store, registry: jobkit.Registry | None, now: datetime) -> Report:
    """One tick at *now* that syncs and fires schedules but runs no job (so jobs stay pending)."""
    return tick(store, registry, now=now, limit=0)


class Proxy:
    """Passes everything to *store*, except what a test overrides: a second worker's view at the same instant."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def read_earlier(store: Store, now: datetime) -> Proxy:
    """A worker on *store* that read the due schedules at *now* before another worker fired them."""
    seen = store.due_schedules(now)
    late = Proxy(store)
    late.due_schedules = lambda now: seen
    return late
