"""Recurring jobs: create, change and list schedules, and fire the ones that are due.

A schedule is a row of ``cron_jobs``: a job name, its params, a cron expression and a
timezone. Workers (and :func:`jobkit.tick`) call :func:`fire_due` to enqueue each due
run; the store's compare-and-set makes that exactly once however many workers run.
Schedules declared in code with :meth:`Registry.cron` are written by :func:`sync` when a
worker starts, and those removed from code are disabled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

import attrs

from jobkit import codec, cron
from jobkit.errors import ScheduleError, UnknownScheduleError
from jobkit.model import Clock, JobRecord, JobStatus, Schedule, new_id
from jobkit.spec import JobSpec, Registry
from jobkit.stages import validate
from jobkit.store import Store, clock_of

logger = logging.getLogger("jobkit")


def schedule(
    store: Store,
    spec: JobSpec[Any, Any],
    cron_expression: str,
    params: Any,
    *,
    name: str,
    timezone: str = "UTC",
    enabled: bool = True,
    clock: Clock | None = None,
) -> Schedule:
    """Create or update the schedule called *name*: run *spec* with *params* on *cron_expression*.

    Idempotent, so a program can call it at every start: when the expression and timezone
    are unchanged the next fire time is kept (a due run is not skipped by a restart).
    Invalid params, expressions, timezones, and expressions that never fire are refused
    with :class:`ScheduleError` or :class:`ValidationError`, and nothing is written.
    """
    chosen = clock_of(store, clock)
    return _put(store, spec, cron_expression, params, name=name, timezone=timezone, enabled=enabled, clock=chosen)


def _put(
    store: Store,
    spec: JobSpec[Any, Any],
    cron_expression: str,
    params: Any,
    *,
    name: str,
    timezone: str,
    enabled: bool,
    clock: Clock,
    declared: bool = False,
) -> Schedule:
    codec.check_text(cron.check_name(name), what="schedule name")  # every schedule written passes here
    now = clock()
    upcoming = cron.validate(cron_expression, timezone, now)
    _, encoded = validate(spec, params)
    old = store.get_schedule(name)
    keep = (
        old is not None
        and old.enabled
        and enabled
        and old.cron_expression == cron_expression
        and old.timezone == timezone
        and old.next_run_at is not None
    )
    new = Schedule(
        id=old.id if old is not None else new_id(),
        name=name,
        job_name=spec.name,
        cron_expression=cron_expression,
        params=encoded,
        timezone=timezone,
        enabled=enabled,
        next_run_at=old.next_run_at if keep and old is not None else (upcoming if enabled else None),
        created_at=old.created_at if old is not None else now,
        updated_at=now,
        last_run_at=old.last_run_at if old is not None else None,
        last_job_id=old.last_job_id if old is not None else None,
        declared=declared,
    )
    if old is not None and attrs.evolve(new, updated_at=old.updated_at) == old:
        return old  # nothing changed: write nothing (a worker syncs its declared schedules at every tick)
    # When keep is true, the store keeps its own next_run_at: a worker may have fired the
    # schedule since it was read here, and writing old.next_run_at back would fire it again.
    return store.put_schedule(new)


def unschedule(store: Store, name: str) -> bool:
    """Delete the schedule called *name*; False when there was none. Jobs it enqueued stay."""
    return store.remove_schedule(cron.check_name(name))


def schedules(store: Store) -> list[Schedule]:
    """Every schedule, by name, with its next and last run."""
    return store.list_schedules()


def enable(store: Store, name: str, *, clock: Clock | None = None) -> Schedule:
    """Turn a schedule on; it next fires at its first fire time after now (no catch-up)."""
    return _switch(store, name, True, clock_of(store, clock))


def disable(store: Store, name: str, *, clock: Clock | None = None) -> Schedule:
    """Turn a schedule off; it keeps its settings and history."""
    return _switch(store, name, False, clock_of(store, clock))


def _switch(store: Store, name: str, on: bool, clock: Clock) -> Schedule:
    old = store.get_schedule(cron.check_name(name))
    if old is None:
        raise UnknownScheduleError(name)
    if old.enabled == on:
        return old
    now = clock()
    upcoming = cron.next_fire(old.cron_expression, old.timezone, now) if on else None
    return store.put_schedule(attrs.evolve(old, enabled=on, next_run_at=upcoming, updated_at=now))


def run_now(store: Store, name: str, *, clock: Clock | None = None) -> str:
    """Enqueue one run of a schedule now, outside its timetable (its next fire stays as it was); return the job id.

    The job is the one a fire would make, its correlation id ``cron:NAME@TIME+now``; it
    runs whether the schedule is enabled or not, with 3 attempts (the spec, which may
    say otherwise, is the worker's to know).
    """
    entry = store.get_schedule(cron.check_name(name))
    if entry is None:
        raise UnknownScheduleError(name)
    now = clock_of(store, clock)()
    job = cron_job(entry, None, now, now)
    (job_id,) = store.add([attrs.evolve(job, correlation_id=f"{job.correlation_id}+now")])
    return job_id


def cron_job(entry: Schedule, spec: JobSpec[Any, Any] | None, fire_time: datetime, now: datetime) -> JobRecord:
    """The job one fire of *entry* enqueues: its correlation id names the schedule and fire time."""
    stamp = fire_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    return JobRecord(
        id=new_id(),
        job_name=entry.job_name,
        params=entry.params,
        status=JobStatus.PENDING,
        scheduled_for=now,
        created_at=now,
        updated_at=now,
        max_attempts=spec.max_attempts if spec is not None else 3,
        correlation_id=f"cron:{entry.name}@{stamp}",
    )


def fire_due(
    store: Store,
    now: datetime,
    *,
    names: Collection[str] | None = None,
    resolve: Callable[[str], JobSpec[Any, Any] | None] = lambda name: None,
) -> list[str]:
    """Enqueue one run of every due schedule (of *names*, when given); return the new job ids.

    *resolve* finds a job name's spec, whose ``max_attempts`` the job gets (3 without).

    A schedule that several workers fire at once yields one job: the store's
    compare-and-set on ``next_run_at`` lets one of them through.
    """
    fired = []
    for entry in store.due_schedules(now):
        if names is not None and entry.job_name not in names:
            continue
        try:
            firing = cron.due(entry.cron_expression, entry.timezone, entry.next_run_at, now)
        except ScheduleError as exc:
            # A row this jobkit cannot read (written by hand or by another version, or a timezone
            # this host lacks) must not stop the other schedules, or the reaping that follows.
            logger.error(
                "schedule %r cannot fire: %s; fix it with jobkit.schedule() or remove it with jobkit.unschedule()",
                entry.name,
                exc,
            )
            continue
        if firing is None or entry.next_run_at is None:  # pragma: no cover - due_schedules said due
            continue
        job = cron_job(entry, resolve(entry.job_name), firing.fire_time, now)
        if store.fire_schedule(
            entry.name, expected=entry.next_run_at, fire_time=firing.fire_time, next_run_at=firing.next_run_at, job=job
        ):
            fired.append(job.id)
    return fired


def sync(store: Store, registry: Registry, *, clock: Clock | None = None) -> tuple[list[str], list[str]]:
    """Write the schedules declared in *registry*; disable declared ones it no longer has.

    A declared schedule someone disabled (``jobkit.disable``, ``python -m jobkit
    schedules disable``) stays disabled. One dropped from the code is disabled and
    marked undeclared, so that declaring it again turns it back on. Only schedules of
    the registry's own job names are disabled, so worker pools with different
    registries leave each other's schedules alone. Returns the names written and the
    names disabled.
    """
    clock = clock_of(store, clock)
    written = []
    for entry in registry.crons():
        before = store.get_schedule(entry.name)
        after = _put(
            store,
            entry.spec,
            entry.expression,
            entry.params,
            name=entry.name,
            timezone=entry.timezone,
            enabled=before.enabled if before is not None and before.declared else True,
            clock=clock,
            declared=True,
        )
        if after != before:
            written.append(entry.name)
    declared = {entry.name for entry in registry.crons()}
    own = set(registry.names())
    disabled = []
    for stored in store.list_schedules():
        if stored.declared and stored.job_name in own and stored.name not in declared:
            store.put_schedule(
                attrs.evolve(stored, enabled=False, next_run_at=None, declared=False, updated_at=clock())
            )
            disabled.append(stored.name)
    return written, disabled
