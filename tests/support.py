"""What tests share: the clock and bounded waits, record builders, a worker in a thread, and small job scenes.

Nothing here sleeps to wait for something: :func:`poll` and :func:`wait_until` check a
condition every :data:`POLL` seconds until a deadline. conftest.py holds the fixtures.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

import jobkit
from jobkit.events import Event
from jobkit.model import JobRecord, JobStatus, new_id, utc_now
from jobkit.store import Store
from jobkit.worker import Report, run_worker

T = TypeVar("T")

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TIMEOUT = 10.0  # the longest any single wait in a test may take
ROOT = Path(__file__).resolve().parent.parent  # the checkout: commands run from here
COMMAND_TIMEOUT = 60  # seconds one command may take; those the tests run end in well under one
POLL = 0.01  # the interval of every poll: a pace for looking, not a wait for something to happen
PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


# -- time and waits -------------------------------------------------------------------
class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def command(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m module ARGS`` from the checkout, to its end (bounded), with no JOBKIT_ settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBKIT_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _first_true(condition: Callable[[], T], timeout: float) -> T | None:
    """What *condition* returned once it returned something true within *timeout* seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL)


def poll(condition: Callable[[], Any], timeout: float = TIMEOUT) -> bool:
    """Whether *condition* became true within *timeout* seconds."""
    return _first_true(condition, timeout) is not None


def wait_until(
    condition: Callable[[], T],
    what: str,
    timeout: float = TIMEOUT,
    *,
    describe: Callable[[], str] | None = None,
) -> T:
    """What *condition* returned once true; fail the test (with *describe*'s scene) unless it is within *timeout*."""
    value = _first_true(condition, timeout)
    if value is None:
        scene = f"\n{describe()}" if describe is not None else ""
        pytest.fail(f"timed out after {timeout:g}s waiting for {what}{scene}")
    return value


def counted(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[tuple[Any, ...]]:
    """Patch *module*.*name* to record each call's arguments, then call through; the list of them."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(module, name)

    def counting(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(module, name, counting)
    return calls


# -- records --------------------------------------------------------------------------
def record(store: Store, job_id: str) -> JobRecord:
    """The stored record of *job_id*, which must still be there."""
    found = store.get(job_id)
    assert found is not None, f"job {job_id} is gone"
    return found


def status_is(store: Store, job_id: str, status: JobStatus) -> Callable[[], bool]:
    """A condition to wait for: that *job_id* has *status*."""
    return lambda: record(store, job_id).status is status


def make_job(job_id: str, **fields: Any) -> JobRecord:
    """A pending job, due and created at T0, unless *fields* say otherwise."""
    values: dict[str, Any] = {
        "id": job_id,
        "job_name": "shop.tasks:resize",
        "params": '{"url": "a.png"}',
        "status": PENDING,
        "scheduled_for": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return JobRecord(**values)


def raw_job(name: str, params: str = "{}", **fields: Any) -> JobRecord:
    """A pending record due now, as any writer could store it: no spec needed, so names and params can be wrong."""
    now = utc_now()
    values: dict[str, Any] = {"scheduled_for": now, "created_at": now, "updated_at": now, **fields}
    return make_job(new_id(), job_name=name, params=params, **values)


def finished(
    store: Store, status: JobStatus, ended: datetime, *, name: str = "t:old", job_id: str | None = None
) -> str:
    """A job that finished at *ended*, as any writer could store it."""
    job = make_job(
        job_id or new_id(),
        job_name=name,
        params="1",
        status=status,
        scheduled_for=ended - timedelta(seconds=2),
        created_at=ended - timedelta(seconds=2),
        updated_at=ended,
        attempt_count=1,
        worker_started_at=ended - timedelta(seconds=1),
        result="2" if status is COMPLETED else None,
        error=None if status is COMPLETED else f"{status.value} long ago",
        completed_at=ended,
    )
    store.add([job])
    return job.id


def unfinished(
    store: Store,
    status: JobStatus,
    created: datetime,
    *,
    name: str = "t:old",
    scheduled: datetime | None = None,
    **more: Any,
) -> str:
    """A pending job (due at *scheduled*, or as it is created), or one running under a lock that outlives every test."""
    fields: dict[str, Any] = {}
    if status is RUNNING:
        fields = {
            "worker_id": "elsewhere",
            "worker_started_at": created,
            "worker_expires_at": created + timedelta(days=3650),
            "attempt_count": 1,
        }
    job = make_job(
        new_id(),
        job_name=name,
        params="1",
        status=status,
        scheduled_for=scheduled or created,
        created_at=created,
        updated_at=created,
        **fields,
        **more,
    )
    store.add([job])
    return job.id


# -- a worker in a thread -------------------------------------------------------------
class Background:
    """run_worker in a daemon thread, as a notebook runs it; stopped with its Event on exit.

    It looks for due jobs every 0.05 s unless told otherwise (``poll_interval=``).
    """

    def __init__(self, store: Store, registry: jobkit.Registry | None = None, **options: Any) -> None:
        self.stop_event = threading.Event()
        self._outcome: list[Report | BaseException] = []
        options.setdefault("poll_interval", 0.05)
        self.thread = threading.Thread(target=self._run, args=(store, registry, options), daemon=True)

    def _run(self, store: Store, registry: jobkit.Registry | None, options: dict[str, Any]) -> None:
        try:
            self._outcome.append(run_worker(store, registry, stop=self.stop_event, **options))
        except BaseException as exc:
            self._outcome.append(exc)

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the worker did not stop"

    def returned(self, timeout: float = TIMEOUT) -> Report:
        """The report, once the worker returns by itself within *timeout* (re-raising what it raised)."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.stop_event.set()
            self.thread.join(TIMEOUT)
            pytest.fail(f"the worker did not return within {timeout}s")
        (outcome,) = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def stop(self) -> Report:
        """Stop the worker and return its report."""
        self.stop_event.set()
        return self.returned()


def burst(store: Store, registry: jobkit.Registry | None = None, *, within: float = TIMEOUT, **options: Any) -> Report:
    """run_worker(burst=True) in a thread, bounded in time."""
    with Background(store, registry, burst=True, **options) as bg:
        return bg.returned(within)


# -- scenes ---------------------------------------------------------------------------
class PurgeSpy:
    """A store that notes every purge call (limit, deleted) and passes everything through."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[tuple[int, int]] = []

    def purge(self, *, statuses: Any, before: datetime, limit: int) -> int:
        deleted = self.store.purge(statuses=statuses, before=before, limit=limit)
        self.calls.append((limit, deleted))
        return deleted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@attrs.frozen
class Pair:
    a: int
    b: int = 0


@attrs.frozen
class Total:
    sum: int


class Gate:
    """A handler that waits to be let through: ``started`` when it runs, ``open`` lets it return."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.open = threading.Event()
        self.runs = 0

    def enter(self) -> None:
        self.runs += 1
        self.started.set()
        assert self.open.wait(TIMEOUT), "the test never opened the gate"


def gated_jobs(gate: Gate) -> tuple[jobkit.Registry, jobkit.JobSpec[Pair, Total]]:
    jobs = jobkit.Registry()

    @jobs.job(name="t:gated_total", max_attempts=1)
    def gated_total(params: Pair, ctx: jobkit.Context) -> Total:
        gate.enter()
        if params.a < 0:
            raise ValueError(f"negative: {params.a}")
        return Total(params.a + params.b)

    return jobs, gated_total


class Load:
    """A quick job, enqueued from a thread in two halves, heard by listeners: the scene of the tests under load."""

    total = 300

    def __init__(self, store: Store) -> None:
        self.store = store
        self.jobs = jobkit.Registry()
        self.ran: list[int] = []
        self.completed: list[str] = []
        self.troubles: list[Event] = []
        self.enqueued: list[str] = []
        self.done = threading.Event()
        self.first_deletion = threading.Event()  # the second half waits for it, so deleting overlaps the work

        @self.jobs.job(name="t:quick", retry_backoff=0)
        def quick(params: int, ctx: jobkit.Context) -> int:
            self.ran.append(params)
            return params

        self.quick = quick
        self.jobs.on("completed")(lambda event: self.completed.append(event.job_id))
        self.jobs.on("failed", "retried", "lease_lost", "cancelled")(self.troubles.append)

    def start(self) -> None:
        threading.Thread(target=self._enqueue, daemon=True).start()

    def _enqueue(self) -> None:
        for n in range(0, self.total, 3):
            if n == self.total // 2:
                assert self.first_deletion.wait(TIMEOUT), "nothing was deleted of the first half"
            self.enqueued.append(self.quick.later(n, self.store))
            self.enqueued.extend(self.quick.later_many([n + 1, n + 2], self.store))
        self.done.set()

    def finished(self) -> bool:
        return self.done.is_set() and len(self.completed) == self.total

    def check(self, deleted: int) -> None:
        """Every job ran once and completed; each was deleted only once finished, or is still there."""
        assert self.troubles == [], "a job failed, was cancelled or lost its lease"
        assert sorted(self.completed) == sorted(self.enqueued) and len(set(self.enqueued)) == self.total
        assert sorted(self.ran) == list(range(self.total)), "a job was lost or ran twice"
        left = self.store.list_jobs(limit=10**6)
        assert all(job.status is COMPLETED for job in left)
        assert deleted + len(left) == self.total, "a job vanished without being purged after it finished"


def collect(results: Any, procs: list[Any], timeout: float = 120) -> dict[int, Any]:
    """What each child process put on *results* as ``(pid, report)``, as it arrives; fail as soon as one dies,
    or after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    reports: dict[int, Any] = {}
    while len(reports) < len(procs):
        try:
            pid, report = results.get(timeout=0.1)
            reports[pid] = report
        except queue.Empty:
            died = [f"{p.name}: exit {p.exitcode}" for p in procs if p.exitcode not in (None, 0)]
            assert not died, f"a child process died: {died}"
            assert time.monotonic() < deadline, f"timed out after {timeout:g}s; {len(reports)} of {len(procs)} done"
    return reports
