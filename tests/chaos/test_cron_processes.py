"""Several processes ticking one store at the same fake instants enqueue one job per fire time (SQLite, PostgreSQL).

Four real processes (multiprocessing, spawned) call ``jobkit.tick`` with the same chosen
``now`` values, meeting at a Barrier before every tick so that all four fire at the same
instant: every minute for half an hour of fake time, then a jump of hours (a misfire).
Two five-minute schedules are on the file: one made with ``jobkit.schedule()`` before the
processes start, and one declared in code, which every tick also syncs into the store.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import jobkit
from tests.support import collect

pytestmark = pytest.mark.slow

PROCESSES = 4
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
STEP_TIMEOUT = 30.0  # seconds any process may wait for the others at one step


def at(hours: int, minutes: int) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes)


# Every minute for 30 minutes (fire times 00:05 ... 00:30), then 05:47 after hours of nothing
# (one run owed, for 05:45), 05:48 (nothing) and 05:50 (the regular times again).
NOWS = [at(0, m) for m in range(31)] + [at(5, 47), at(5, 48), at(5, 50)]
FIRE_TIMES = [at(0, m) for m in range(5, 31, 5)] + [at(5, 45), at(5, 50)]

jobs = jobkit.Registry()


@jobs.job(max_attempts=1)
def ping(params: str, ctx: jobkit.Context) -> str:
    return params


def registry() -> jobkit.Registry:
    """What every process runs: ping, and a five-minute schedule declared in code."""
    declared = jobkit.Registry()
    declared.register(ping)
    declared.cron("*/5 * * * *", ping, "declared", name="declared-five")
    return declared


def tick_at_each_instant(target: str, options: dict[str, Any], barrier: Any, results: Any) -> None:
    """In a child process: tick the store *target* names at every instant of NOWS, in step with the others."""
    enqueued = []
    with jobkit.open_store(target, create=False, **options) as store:
        for now in NOWS:
            barrier.wait(STEP_TIMEOUT)
            enqueued.append(jobkit.tick(store, registry(), now=now, limit=2).cron_enqueued)
    results.put((os.getpid(), enqueued))


def stamp(name: str, fire_time: datetime) -> str:
    return f"cron:{name}@{fire_time:%Y-%m-%dT%H:%M:%SZ}"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_four_processes_ticking_the_same_instants_enqueue_one_job_per_fire_time(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    made: jobkit.Store
    if kind == "sqlite":
        target, options = str(tmp_path / "jobs.sqlite"), {}
        made = jobkit.SqliteStore(target)
    else:
        made = request.getfixturevalue("pg_schema_store")
        target, options = made.dsn, {"schema": made.schema}  # type: ignore[attr-defined]
    jobkit.schedule(made, ping, "*/5 * * * *", "made", name="made-five", clock=lambda: T0)

    context = multiprocessing.get_context("spawn")  # no fork of a process holding SQLite connections
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    procs = [
        context.Process(target=tick_at_each_instant, args=(target, options, barrier, results), name=f"ticker-{i}")
        for i in range(PROCESSES)
    ]
    try:
        for proc in procs:
            proc.start()
        reports = collect(results, procs)
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0, f"{proc.name} exited with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(10)

    assert len(reports) == PROCESSES and all(len(counts) == len(NOWS) for counts in reports.values())
    records = made.list_jobs(limit=1_000_000)
    schedules = {s.name: s for s in made.list_schedules()}
    if kind == "sqlite":
        made.close()

    found = Counter(record.correlation_id for record in records)
    duplicates = {stamp_: n for stamp_, n in found.items() if n > 1}
    assert duplicates == {}, f"fire times enqueued more than once: {duplicates}"
    expected = {stamp(name, t) for name in ("made-five", "declared-five") for t in FIRE_TIMES}
    assert set(found) == expected
    assert sum(sum(counts) for counts in reports.values()) == len(expected), "Report.cron_enqueued disagrees"

    # At each instant the four together enqueued what was due then, one job per schedule; after
    # the jump to 05:47, one run each (for 05:45), not the 63 fire times missed since 00:30.
    per_step = dict(zip(NOWS, (sum(c) for c in zip(*reports.values(), strict=True)), strict=True))
    due_at = {at(0, m) for m in range(5, 31, 5)} | {at(5, 47), at(5, 50)}
    assert per_step == {now: 2 if now in due_at else 0 for now in NOWS}
    catch_up = {r.correlation_id for r in records if r.created_at == at(5, 47)}
    assert catch_up == {stamp(name, at(5, 45)) for name in ("made-five", "declared-five")}

    for name in ("made-five", "declared-five"):
        assert schedules[name].last_run_at == FIRE_TIMES[-1]
        assert schedules[name].next_run_at == at(5, 55)
    assert schedules["declared-five"].declared and not schedules["made-five"].declared
