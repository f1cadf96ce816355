"""Operating on jobs in this process: wait, cancel, retry, purge, summary, and the worker's own pruning.

Every test that takes ``store`` runs on MemoryStore and on SqliteStore. Workers run in
threads (``run_worker`` with a stop Event). Nothing sleeps to wait for something: handlers
and tests meet on Events, stores run on a FakeClock where time matters, and conditions are
polled with a deadline. Real processes are in tests/chaos/test_control_processes.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

import jobkit
from jobkit.control import PURGE_BATCH, parse_duration
from jobkit.errors import JobFailed, JobNotFound, ValidationError
from jobkit.events import Event
from jobkit.model import CANCELLED_WHILE_LOST, JobRecord, JobStatus, Lease, Summary, new_id, utc_now
from jobkit.options import WorkerOptions
from jobkit.store import Store
from jobkit.worker import Report, run_worker, tick
from jobkit.worker import cli as worker_cli
from tests.conftest import T0, TIMEOUT, FakeClock, poll, wait_until

CANCEL_SEEN_WITHIN = 2.5  # the worker looks for cancellations every second
PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


# -- helpers --------------------------------------------------------------------------
def get(store: Store, job_id: str) -> JobRecord:
    found = store.get(job_id)
    assert found is not None, f"job {job_id} is gone"
    return found


class Background:
    """run_worker in a daemon thread, as a notebook runs it; stopped with its Event on exit."""

    def __init__(self, store: Store, registry: jobkit.Registry, **options: Any) -> None:
        self.stop = threading.Event()
        self.outcome: list[Report | BaseException] = []
        options.setdefault("poll_interval", 0.05)
        self.thread = threading.Thread(target=self._run, args=(store, registry, options), daemon=True)

    def _run(self, store: Store, registry: jobkit.Registry, options: dict[str, Any]) -> None:
        try:
            self.outcome.append(run_worker(store, registry, stop=self.stop, **options))
        except BaseException as exc:
            self.outcome.append(exc)

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the worker did not stop"

    def report(self) -> Report:
        """Stop the worker and return its report (re-raising what it raised)."""
        self.__exit__()
        (outcome,) = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def burst(store: Store, registry: jobkit.Registry, **options: Any) -> Report:
    """run_worker(burst=True) in a thread, bounded in time."""
    with Background(store, registry, burst=True, **options) as bg:
        bg.thread.join(TIMEOUT)
        assert not bg.thread.is_alive(), "the burst worker did not return"
    (outcome,) = bg.outcome
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def finished(
    store: Store, status: JobStatus, ended: datetime, *, name: str = "t:old", job_id: str | None = None
) -> str:
    """A job that finished at *ended*, as any writer could store it."""
    job = JobRecord(
        id=job_id or new_id(),
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
    job = JobRecord(
        id=new_id(),
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


# -- jobs -----------------------------------------------------------------------------
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


class Spinner:
    """A handler that runs until ``ctx.cancelled``, then stops the way it was told to."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.saw_cancel = threading.Event()
        self.saw_cancel_at = 0.0
        self.runs = 0

    def spin(self, ctx: jobkit.Context) -> bool:
        """Whether cancellation was seen before the deadline."""
        self.runs += 1
        self.started.set()
        if not poll(lambda: ctx.cancelled):
            return False
        self.saw_cancel_at = time.monotonic()
        self.saw_cancel.set()
        return True

    def stop(self, how: str) -> str:
        if how == "raises Cancelled":
            raise jobkit.Cancelled("stopping as asked")
        if how == "raises another error":
            raise RuntimeError("stopped with an unrelated error")
        return "returned normally"


def spinner_jobs(spinner: Spinner) -> tuple[jobkit.Registry, jobkit.JobSpec[str, str], jobkit.JobSpec[str, str]]:
    jobs = jobkit.Registry()

    @jobs.job(name="t:spin", max_attempts=3, retry_backoff=0)
    def spin(how: str, ctx: jobkit.Context) -> str:
        if not spinner.spin(ctx):
            return "never cancelled"
        return spinner.stop(how)

    @jobs.job(name="t:spin_async", max_attempts=3, retry_backoff=0)
    async def spin_async(how: str, ctx: jobkit.Context) -> str:
        spinner.runs += 1
        spinner.started.set()
        deadline = time.monotonic() + TIMEOUT
        while not ctx.cancelled:
            if time.monotonic() > deadline:
                return "never cancelled"
            await asyncio.sleep(0.002)  # a polling interval on the event loop
        spinner.saw_cancel_at = time.monotonic()
        spinner.saw_cancel.set()
        return spinner.stop(how)

    return jobs, spin, spin_async


# -- wait -----------------------------------------------------------------------------
def test_wait_returns_as_soon_as_the_worker_finishes_the_job(store: Store) -> None:
    gate = Gate()
    jobs, gated_total = gated_jobs(gate)
    recorded_at: list[float] = []
    jobs.on("completed")(lambda event: recorded_at.append(time.monotonic()))
    job_id = gated_total.later(Pair(40, 2), store)
    returned: list[tuple[jobkit.JobResult[Any], float]] = []
    waiter = threading.Thread(
        target=lambda: returned.append((jobkit.wait(store, job_id, timeout=TIMEOUT), time.monotonic())), daemon=True
    )
    with Background(store, jobs):
        waiter.start()
        assert gate.started.wait(TIMEOUT)
        assert waiter.is_alive() and not returned, "wait returned while the job was still running"
        gate.open.set()
        waiter.join(TIMEOUT)
    assert not waiter.is_alive(), "wait did not return after the job finished"
    (result, at), (committed_at,) = returned[0], recorded_at
    assert result.ok and result.status is COMPLETED and result.value == {"sum": 42}
    assert result.job_id == job_id and result.attempt_count == 1
    assert at - committed_at < 0.9, f"wait returned {at - committed_at:.3f}s after the job's outcome was written"


def test_wait_on_a_finished_job_returns_at_once_and_leaves_the_record(store: Store) -> None:
    gate = Gate()
    gate.open.set()
    _, gated_total = gated_jobs(gate)
    done = gated_total.now(Pair(1, 2), store)
    before = get(store, done.job_id)
    began = time.monotonic()
    first = jobkit.wait(store, done.job_id)
    second = jobkit.wait(store, done.job_id, timeout=0)
    assert time.monotonic() - began < 1.0
    assert first == second
    assert first.value == {"sum": 3} and first.status is COMPLETED
    assert first.completed_at == before.completed_at and first.duration is not None and first.duration >= 0
    assert get(store, done.job_id) == before, "reading a result changed the record"
    assert store.counts()[COMPLETED] == 1


def test_wait_returns_failed_and_cancelled_results_without_raising(store: Store) -> None:
    gate = Gate()
    gate.open.set()
    _, gated_total = gated_jobs(gate)
    failed = gated_total.now(Pair(-1), store)
    cancelled = jobkit.cancel(store, gated_total.later(Pair(1), store)).id
    bad = jobkit.wait(store, failed.job_id, timeout=TIMEOUT)
    assert not bad.ok and bad.status is FAILED and bad.value is None
    assert bad.error == "ValueError: negative: -1" and bad.traceback and "ValueError" in bad.traceback
    stopped = jobkit.wait(store, cancelled, timeout=TIMEOUT)
    assert not stopped.ok and stopped.status is CANCELLED and stopped.attempt_count == 0


def test_wait_sees_through_retries_to_the_final_outcome(store: Store) -> None:
    attempts: list[int] = []
    jobs = jobkit.Registry()

    @jobs.job(name="t:second_time_lucky", max_attempts=3, retry_backoff=0)
    def second_time_lucky(params: int, ctx: jobkit.Context) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("not this time")
        return params

    job_id = second_time_lucky.later(7, store)
    with Background(store, jobs):
        result = jobkit.wait(store, job_id, timeout=TIMEOUT)
    assert (result.ok, result.value, result.attempt_count) == (True, 7, 2)
    assert attempts == [1, 2]


@pytest.mark.parametrize("timeout", [0, 0.2])
def test_wait_raises_timeout_error_for_an_unfinished_job_and_changes_nothing(store: Store, timeout: float) -> None:
    _, gated_total = gated_jobs(Gate())
    job_id = gated_total.later(Pair(1), store)
    before = get(store, job_id)
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=f"job {job_id} is still pending"):
        jobkit.wait(store, job_id, timeout=timeout)
    assert timeout <= time.monotonic() - began < timeout + 1.5
    assert get(store, job_id) == before


def test_wait_for_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound) as caught:
        jobkit.wait(store, "no-such-job", timeout=5)
    assert isinstance(caught.value, LookupError) and "no-such-job" in str(caught.value)


def test_spec_wait_gives_the_typed_value(store: Store) -> None:
    gate = Gate()
    gate.open.set()
    jobs, gated_total = gated_jobs(gate)
    job_id = gated_total.later(Pair(2, 3), store)
    burst(store, jobs)
    assert gated_total.wait(job_id, store, timeout=TIMEOUT) == Total(5)
    assert jobkit.wait(store, job_id, spec=gated_total).value == Total(5)
    assert jobkit.wait(store, job_id).value == {"sum": 5}, "without a spec the value is plain JSON data"


def test_spec_wait_raises_job_failed_carrying_the_result(store: Store) -> None:
    gate = Gate()
    gate.open.set()
    jobs, gated_total = gated_jobs(gate)
    failing = gated_total.later(Pair(-4), store)
    cancelled = jobkit.cancel(store, gated_total.later(Pair(4), store)).id
    burst(store, jobs)
    with pytest.raises(JobFailed) as caught:
        gated_total.wait(failing, store, timeout=TIMEOUT)
    result = caught.value.result
    assert (result.job_id, result.ok, result.status, result.error) == (
        failing,
        False,
        FAILED,
        "ValueError: negative: -4",
    )
    with pytest.raises(JobFailed) as caught:
        gated_total.wait(cancelled, store, timeout=TIMEOUT)
    assert caught.value.result.status is CANCELLED
    with pytest.raises(TimeoutError):
        gated_total.wait(gated_total.later(Pair(1), store), store, timeout=0)


def test_wait_async_leaves_the_event_loop_free_while_it_waits(store: Store) -> None:
    gate = Gate()
    jobs, gated_total = gated_jobs(gate)
    job_id = gated_total.later(Pair(20, 1), store)

    async def main() -> tuple[jobkit.JobResult[Any], Total]:
        waiting = asyncio.create_task(jobkit.wait_async(store, job_id, timeout=TIMEOUT))
        typed = asyncio.create_task(gated_total.wait_async(job_id, store, timeout=TIMEOUT))
        # Only this coroutine opens the gate: if waiting blocked the loop, the job would never end.
        while not gate.started.is_set():
            await asyncio.sleep(0.005)  # a polling interval, on the loop the waits share
        assert not waiting.done() and not typed.done()
        gate.open.set()
        return await waiting, await typed

    with Background(store, jobs):
        result, value = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert result.ok and result.value == {"sum": 21}
    assert value == Total(21)


def test_wait_async_raises_timeout_error_and_job_not_found(store: Store) -> None:
    _, gated_total = gated_jobs(Gate())
    job_id = gated_total.later(Pair(1), store)
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="still pending"):
        asyncio.run(jobkit.wait_async(store, job_id, timeout=0.3))
    assert 0.3 <= time.monotonic() - began < 2.0
    with pytest.raises(JobNotFound):
        asyncio.run(jobkit.wait_async(store, "no-such-job", timeout=1))


def test_spec_wait_async_raises_job_failed(store: Store) -> None:
    gate = Gate()
    gate.open.set()
    _, gated_total = gated_jobs(gate)
    failed = gated_total.now(Pair(-2), store)
    with pytest.raises(JobFailed) as caught:
        asyncio.run(gated_total.wait_async(failed.job_id, store, timeout=TIMEOUT))
    assert caught.value.result.error == "ValueError: negative: -2"


def test_a_cancelled_wait_async_lets_its_thread_and_asyncio_run_go(store: Store) -> None:
    """asyncio.run waits for the loop's executor threads: a wait left running would hold it until the job ends."""
    _, gated_total = gated_jobs(Gate())
    job_id = gated_total.later(Pair(1), store)  # no worker: it never ends

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):  # on 3.10 not the builtin TimeoutError
            await asyncio.wait_for(jobkit.wait_async(store, job_id), 0.2)

    raised: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # shown by the assertion below, not lost in the thread
            raised.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    began = time.monotonic()
    runner.start()
    runner.join(5)
    assert not runner.is_alive(), "asyncio.run did not return: the cancelled wait kept its thread"
    assert time.monotonic() - began < 2.0
    assert raised == []


# -- cancel ---------------------------------------------------------------------------
def test_cancel_a_pending_job_ends_it_at_once_and_it_never_runs(store: Store) -> None:
    spinner = Spinner()
    jobs, spin, _ = spinner_jobs(spinner)
    job_id = spin.later("raises Cancelled", store)
    other = spin.later("raises Cancelled", store, delay=3600)
    before = get(store, job_id)
    asked = utc_now()
    record = jobkit.cancel(store, job_id)
    assert record == get(store, job_id)
    assert record.status is CANCELLED and record.completed_at == record.updated_at
    assert record.completed_at is not None and asked <= record.completed_at <= utc_now()
    assert record.attempt_count == 0 and record.error == "cancelled"
    assert attrs.evolve(record, status=PENDING, completed_at=None, updated_at=before.updated_at, error=None) == before
    assert burst(store, jobs).claimed == 0
    assert spinner.runs == 0
    assert get(store, job_id) == record
    assert get(store, other).status is PENDING, "cancelling one job touched another"


def test_cancel_of_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound, match="no-such-job"):
        jobkit.cancel(store, "no-such-job")
    assert store.counts() == dict.fromkeys(JobStatus, 0)


@pytest.mark.parametrize("status", [COMPLETED, FAILED, CANCELLED])
def test_cancel_of_a_finished_job_changes_nothing(store: Store, clock: FakeClock, status: JobStatus) -> None:
    job_id = finished(store, status, T0 - timedelta(hours=1))
    before = get(store, job_id)
    clock.advance(60)
    assert jobkit.cancel(store, job_id, clock=clock) == before
    assert get(store, job_id) == before
    assert store.cancelling() == []


@pytest.mark.parametrize(
    ("handler", "how"),
    [
        ("sync", "raises Cancelled"),
        ("sync", "returns normally"),
        ("sync", "raises another error"),
        ("async", "returns normally"),
    ],
)
def test_cancel_a_running_job_the_handler_sees_it_and_the_job_ends_cancelled(
    store: Store, handler: str, how: str
) -> None:
    spinner = Spinner()
    jobs, spin, spin_async = spinner_jobs(spinner)
    job_id = (spin if handler == "sync" else spin_async).later(how, store)
    with Background(store, jobs) as bg:
        assert spinner.started.wait(TIMEOUT)
        asked_at = time.monotonic()
        record = jobkit.cancel(store, job_id)
        assert record.status is RUNNING and record.cancel_requested
        assert store.cancelling() == [job_id]
        assert spinner.saw_cancel.wait(TIMEOUT), "the handler never saw ctx.cancelled"
        assert spinner.saw_cancel_at - asked_at < CANCEL_SEEN_WITHIN
        result = jobkit.wait(store, job_id, timeout=TIMEOUT)
        report = bg.report()
    assert result.status is CANCELLED and not result.ok
    assert result.attempt_count == 1
    assert report.cancelled == 1 and report.completed == report.failed == report.retried == 0
    record = get(store, job_id)
    assert record.status is CANCELLED and record.error == "cancelled" and record.worker_expires_at is None
    assert spinner.runs == 1, "a cancelled job ran again"
    assert store.cancelling() == []


def test_cancel_a_running_job_twice_asks_once(store: Store, clock: FakeClock) -> None:
    job_id = unfinished(store, PENDING, T0)
    assert store.claim_job(job_id, now=T0, token="w", lock_until=T0 + timedelta(minutes=5)) is not None
    first = jobkit.cancel(store, job_id, clock=clock)
    clock.advance(30)
    assert jobkit.cancel(store, job_id, clock=clock) == first == get(store, job_id)
    assert first.updated_at == T0 and first.status is RUNNING and first.cancel_requested
    assert store.heartbeat([Lease(job_id, "w")], now=clock.now, lock_until=clock.now + timedelta(minutes=5)) == {
        job_id: True
    }


@pytest.mark.parametrize("how", ["raises Cancelled", "returns normally"])
def test_cancel_a_job_run_by_execute_or_now(store: Store, how: str) -> None:
    """now() and execute() hold a job like a worker does: they see a cancellation too."""
    spinner = Spinner()
    jobs, spin, _ = spinner_jobs(spinner)
    job_id = spin.later(how, store)
    results: list[jobkit.JobResult[Any]] = []
    runner = threading.Thread(target=lambda: results.append(jobkit.execute(store, jobs, job_id)), daemon=True)
    runner.start()
    assert spinner.started.wait(TIMEOUT)
    asked_at = time.monotonic()
    jobkit.cancel(store, job_id)
    assert spinner.saw_cancel.wait(TIMEOUT), "the handler never saw ctx.cancelled"
    assert spinner.saw_cancel_at - asked_at < CANCEL_SEEN_WITHIN
    runner.join(TIMEOUT)
    assert not runner.is_alive()
    assert results[0].status is CANCELLED and get(store, job_id).status is CANCELLED


def test_a_cancelled_job_whose_worker_died_ends_cancelled_and_is_not_retried(store: Store) -> None:
    spinner = Spinner()
    jobs, spin, _ = spinner_jobs(spinner)
    job_id = spin.later("returns normally", store, max_attempts=5)
    # A worker claimed it, then died without a word: only its lock says it ever ran.
    (held,) = store.claim(limit=1, now=utc_now(), token="dead-worker", lock_until=utc_now() + timedelta(seconds=30))
    jobkit.cancel(store, job_id)
    later = utc_now() + timedelta(minutes=1)
    report = tick(store, jobs, now=later)
    assert report.cancelled == 1 and report.reset == 0 and report.claimed == 0
    record = get(store, job_id)
    assert record.status is CANCELLED and record.error == CANCELLED_WHILE_LOST
    assert record.completed_at == later and record.attempt_count == held.attempt_count == 1
    assert tick(store, jobs, now=later + timedelta(hours=1)).claimed == 0
    assert spinner.runs == 0
    # The dead worker's writes, should it wake, change nothing.
    assert store.heartbeat([Lease(job_id, "dead-worker")], now=later, lock_until=later) == {}
    assert get(store, job_id) == record


def test_reset_expired_reports_cancelled_for_a_lost_job_whose_cancellation_was_asked(store: Store) -> None:
    asked = unfinished(store, PENDING, T0, max_attempts=1)
    plain = unfinished(store, PENDING, T0)
    spent = unfinished(store, PENDING, T0, max_attempts=1)
    claimed = store.claim(limit=3, now=T0, token="w", lock_until=T0 + timedelta(seconds=10))
    assert len(claimed) == 3
    store.cancel(asked, now=T0 + timedelta(seconds=1))
    at = T0 + timedelta(seconds=10)
    report = store.reset_expired(now=at)
    assert (report.cancelled, report.retried, report.failed) == ([asked], [plain], [spent])
    assert get(store, asked).status is CANCELLED and get(store, asked).completed_at == at
    assert get(store, plain).status is PENDING and get(store, spent).status is FAILED


def test_giving_back_a_job_asked_to_cancel_ends_it_cancelled(store: Store) -> None:
    asked, plain = unfinished(store, PENDING, T0), unfinished(store, PENDING, T0)
    store.claim(limit=2, now=T0, token="w", lock_until=T0 + timedelta(minutes=5))
    store.cancel(asked, now=T0)
    at = T0 + timedelta(seconds=3)
    assert store.release([Lease(asked, "w"), Lease(plain, "w"), Lease(plain, "w")], now=at) == [True, True, False]
    record = get(store, asked)
    assert record.status is CANCELLED and record.completed_at == at and record.attempt_count == 1
    assert get(store, plain).status is PENDING and get(store, plain).attempt_count == 0


def test_a_worker_stopping_with_a_job_asked_to_cancel_ends_it_cancelled(store: Store) -> None:
    """The grace period runs out on a handler that ignores ctx.cancelled: given back, it ends cancelled."""
    stuck = threading.Event()
    let_go = threading.Event()
    jobs = jobkit.Registry()

    @jobs.job(name="t:stubborn")
    def stubborn(params: int, ctx: jobkit.Context) -> int:
        stuck.set()
        let_go.wait(TIMEOUT)
        return params

    job_id = stubborn.later(1, store)
    bg = Background(store, jobs, grace=0.0).__enter__()
    try:
        assert stuck.wait(TIMEOUT)
        jobkit.cancel(store, job_id)
        report = bg.report()
    finally:
        let_go.set()
    assert report.released == 1
    record = get(store, job_id)
    assert record.status is CANCELLED and record.attempt_count == 1


# -- retry ----------------------------------------------------------------------------
def test_retry_sends_failed_and_cancelled_jobs_back_with_fresh_attempts_and_the_worker_runs_them(
    store: Store,
) -> None:
    broken = threading.Event()
    broken.set()
    jobs = jobkit.Registry()

    @jobs.job(name="t:flaky", max_attempts=2, retry_backoff=0)
    def flaky(params: int, ctx: jobkit.Context) -> int:
        if broken.is_set():
            raise RuntimeError("broken for now")
        return params * 10

    failed = flaky.later(1, store)
    cancelled = jobkit.cancel(store, flaky.later(2, store)).id
    spinner = Spinner()
    spin_jobs, spin, _ = spinner_jobs(spinner)
    stopped = spin.later("raises Cancelled", store)
    with Background(store, spin_jobs):
        assert spinner.started.wait(TIMEOUT)
        jobkit.cancel(store, stopped)
        wait_until(lambda: get(store, stopped).status is CANCELLED, "the running job to end cancelled")
    burst(store, jobs)
    assert get(store, failed).status is FAILED and get(store, failed).attempt_count == 2
    assert get(store, stopped).cancel_requested

    broken.clear()
    at = utc_now()
    assert jobkit.retry(store, [failed, cancelled, stopped]) == [failed, cancelled, stopped]
    for job_id in (failed, cancelled, stopped):
        record = get(store, job_id)
        assert record.status is PENDING and record.attempt_count == 0
        assert record.error is record.traceback is record.completed_at is record.result is None
        assert record.worker_id is record.worker_started_at is record.worker_expires_at is None
        assert not record.cancel_requested and record.progress == 0
        assert at <= record.scheduled_for <= utc_now()
    assert store.cancelling() == []
    merged = jobkit.Registry().include(jobs).include(spin_jobs)
    spinner.started.clear()
    spinner.saw_cancel.clear()
    with Background(store, merged):
        for job_id in (failed, cancelled):
            assert jobkit.wait(store, job_id, timeout=TIMEOUT).value == (10 if job_id == failed else 20)
        assert spinner.started.wait(TIMEOUT), "the retried job that had been cancelled while running did not run"
        assert not spinner.saw_cancel.is_set()
        jobkit.cancel(store, stopped)
        assert jobkit.wait(store, stopped, timeout=TIMEOUT).status is CANCELLED
    assert [get(store, j).attempt_count for j in (failed, cancelled, stopped)] == [1, 1, 1]


def test_retry_ignores_pending_running_completed_and_unknown_jobs(store: Store, clock: FakeClock) -> None:
    failed = finished(store, FAILED, T0 - timedelta(hours=1))
    completed = finished(store, COMPLETED, T0 - timedelta(hours=1))
    pending = unfinished(store, PENDING, T0)
    running = unfinished(store, RUNNING, T0)
    untouched = [completed, pending, running]
    before = [get(store, j) for j in untouched]
    clock.advance(5)
    sent = jobkit.retry(store, [pending, "no-such-job", failed, running, completed, failed], clock=clock)
    assert sent == [failed]
    assert [get(store, j) for j in untouched] == before
    assert get(store, failed).scheduled_for == clock.now == get(store, failed).updated_at
    assert jobkit.retry(store, [failed], clock=clock) == [], "a job already sent back is pending now"
    assert jobkit.retry(store, [], clock=clock) == []


def test_retry_keeps_the_order_given_and_each_id_once(store: Store) -> None:
    a = finished(store, FAILED, T0)
    b = finished(store, CANCELLED, T0)
    assert jobkit.retry(store, [b, a, b, a]) == [b, a]


# -- purge ----------------------------------------------------------------------------
@pytest.fixture
def aged(store: Store) -> dict[str, str]:
    """Jobs of every status at several ages before T0; the keys say which."""
    hour = timedelta(hours=1)
    return {
        "completed 3h": finished(store, COMPLETED, T0 - 3 * hour),
        "completed 2h": finished(store, COMPLETED, T0 - 2 * hour),
        "completed 1h exactly": finished(store, COMPLETED, T0 - hour),
        "completed 10m": finished(store, COMPLETED, T0 - hour / 6),
        "failed 3h": finished(store, FAILED, T0 - 3 * hour),
        "failed 10m": finished(store, FAILED, T0 - hour / 6),
        "cancelled 3h": finished(store, CANCELLED, T0 - 3 * hour),
        "pending 1y": unfinished(store, PENDING, T0 - 365 * 24 * hour),
        "running 1y": unfinished(store, RUNNING, T0 - 365 * 24 * hour),
    }


def left(store: Store, aged: dict[str, str]) -> list[str]:
    return [key for key, job_id in aged.items() if store.get(job_id) is not None]


def test_purge_deletes_finished_jobs_older_than_the_cutoff_and_nothing_else(
    store: Store, clock: FakeClock, aged: dict[str, str]
) -> None:
    assert jobkit.purge(store, older_than=timedelta(hours=1), clock=clock) == 4
    assert left(store, aged) == ["completed 1h exactly", "completed 10m", "failed 10m", "pending 1y", "running 1y"]
    assert jobkit.purge(store, older_than=timedelta(hours=1), clock=clock) == 0
    assert jobkit.purge(store, older_than=timedelta(0), clock=clock) == 3
    assert left(store, aged) == ["pending 1y", "running 1y"]
    assert [get(store, aged[k]).status for k in ("pending 1y", "running 1y")] == [PENDING, RUNNING]


@pytest.mark.parametrize(
    ("statuses", "gone"),
    [
        (["failed"], ["failed 3h"]),
        ([COMPLETED], ["completed 3h", "completed 2h"]),
        (("cancelled", FAILED), ["failed 3h", "cancelled 3h"]),
        ([], []),
    ],
)
def test_purge_deletes_only_the_statuses_given(
    store: Store, clock: FakeClock, aged: dict[str, str], statuses: list[Any], gone: list[str]
) -> None:
    assert jobkit.purge(store, older_than=timedelta(hours=1), statuses=statuses, clock=clock) == len(gone)
    assert [key for key in aged if key not in left(store, aged)] == gone


def test_purge_works_in_batches_until_nothing_is_left(store: Store, clock: FakeClock) -> None:
    old = [finished(store, COMPLETED, T0 - timedelta(days=2, seconds=n)) for n in range(7)]
    recent = finished(store, COMPLETED, T0)
    spy = PurgeSpy(store)
    assert jobkit.purge(spy, older_than=timedelta(days=1), clock=clock, batch=3) == 7  # type: ignore[arg-type]
    assert spy.calls == [(3, 3), (3, 3), (3, 1)]
    assert all(store.get(j) is None for j in old) and store.get(recent) is not None

    for n in range(6):
        finished(store, FAILED, T0 - timedelta(days=3, seconds=n))
    spy.calls.clear()
    assert jobkit.purge(spy, older_than=timedelta(days=1), clock=clock, batch=3) == 6  # type: ignore[arg-type]
    assert spy.calls == [(3, 3), (3, 3), (3, 0)]
    spy.calls.clear()
    assert jobkit.purge(spy, older_than=timedelta(days=1), clock=clock) == 0  # type: ignore[arg-type]
    assert spy.calls == [(PURGE_BATCH, 0)]


def test_purge_deletes_the_oldest_first_within_a_batch(store: Store, clock: FakeClock) -> None:
    ages = [5, 1, 4, 2, 3]
    ids = {age: finished(store, COMPLETED, T0 - timedelta(days=age)) for age in ages}
    assert store.purge(statuses=[COMPLETED], before=T0, limit=2) == 2
    assert sorted(age for age, job_id in ids.items() if store.get(job_id) is not None) == [1, 2, 3]


@pytest.mark.parametrize(
    "statuses", [["pending"], [RUNNING], ["completed", "running"], ["done"], [COMPLETED, "finished"]]
)
def test_purge_refuses_unfinished_and_unknown_statuses(
    store: Store, clock: FakeClock, aged: dict[str, str], statuses: list[Any]
) -> None:
    with pytest.raises(ValidationError) as caught:
        jobkit.purge(store, older_than=timedelta(0), statuses=statuses, clock=clock)
    assert isinstance(caught.value, ValueError)
    assert left(store, aged) == list(aged), "a refused purge deleted something"


@pytest.mark.parametrize(
    "options",
    [
        {"older_than": timedelta(seconds=-1)},
        {"older_than": -timedelta(days=7)},
        {"older_than": timedelta(0), "batch": 0},
        {"older_than": timedelta(0), "batch": -5},
    ],
)
def test_purge_refuses_negative_durations_and_empty_batches(
    store: Store, clock: FakeClock, aged: dict[str, str], options: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        jobkit.purge(store, clock=clock, **options)
    assert left(store, aged) == list(aged)


def test_purge_with_a_cutoff_before_the_year_one_deletes_nothing(
    store: Store, clock: FakeClock, aged: dict[str, str]
) -> None:
    assert jobkit.purge(store, older_than=timedelta(days=999_999_999), clock=clock) == 0
    assert jobkit.purge(store, older_than=parse_duration("99999999d"), clock=clock) == 0
    assert left(store, aged) == list(aged)


def test_store_purge_never_deletes_unfinished_jobs_even_when_asked(store: Store, aged: dict[str, str]) -> None:
    assert store.purge(statuses=list(JobStatus), before=T0 + timedelta(days=999), limit=100) == 7
    assert left(store, aged) == ["pending 1y", "running 1y"]
    assert store.purge(statuses=[PENDING, RUNNING], before=T0 + timedelta(days=999), limit=100) == 0
    assert store.purge(statuses=[COMPLETED], before=T0, limit=0) == 0


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


def test_purge_under_load_leaves_unfinished_jobs_alone(store: Store) -> None:
    """Jobs are enqueued and worked while purge deletes every finished job it can: each job still runs once."""
    load = Load(store)
    purged = 0
    with Background(store, load.jobs, concurrency=4), Background(store, load.jobs, concurrency=2):
        load.start()
        deadline = time.monotonic() + 30
        while not load.finished():
            assert time.monotonic() < deadline, f"{len(load.completed)} of {load.total} completed after 30s"
            deleted = jobkit.purge(store, older_than=timedelta(0), batch=7)
            purged += deleted
            if deleted:
                load.first_deletion.set()
    load.check(purged)
    assert jobkit.purge(store, older_than=timedelta(0)) + purged == load.total
    assert store.counts() == dict.fromkeys(JobStatus, 0)


def test_the_workers_own_pruning_under_load_leaves_unfinished_jobs_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers that prune every few milliseconds (keep_completed=0) while they work and jobs arrive."""
    load = Load(store)
    options: dict[str, Any] = {
        "keep_completed": timedelta(0),
        "keep_failed": timedelta(0),
        "reap_every": 0.005,
        "prune_every": 0.005,
        "prune_batch": 7,
    }
    with (
        Background(store, load.jobs, concurrency=4, **options) as one,
        Background(store, load.jobs, concurrency=2, **options) as two,
    ):
        load.start()
        deadline = time.monotonic() + 30
        while not load.finished():
            assert time.monotonic() < deadline, f"{len(load.completed)} of {load.total} completed after 30s"
            if any(store.get(job_id) is None for job_id in list(load.completed)[:20]):
                load.first_deletion.set()
            time.sleep(0.002)  # a polling interval
        pruned = one.report().purged + two.report().purged
    load.check(pruned)
    assert pruned > 0


# -- parse_duration -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("45", timedelta(seconds=45)),
        ("1.5h", timedelta(minutes=90)),
        (" 7D ", timedelta(days=7)),
        ("0s", timedelta(0)),
        ("0", timedelta(0)),
        ("0.25s", timedelta(milliseconds=250)),
    ],
)
def test_parse_duration_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "s", "abc", "-5m", "-1", "5y", "1h30m", "30min", "inf", "nan", "infd", "1e20d", "1e300"]
)
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValidationError, match="bad duration") as caught:
        parse_duration(text)
    assert caught.value.value == text


# -- the worker prunes on its own -------------------------------------------------------
def test_the_worker_prunes_old_finished_jobs_as_it_starts(store: Store) -> None:
    clock = FakeClock(T0)
    gate = Gate()
    gate.open.set()
    jobs, gated_total = gated_jobs(gate)
    second = timedelta(seconds=1)
    old_completed = [finished(store, COMPLETED, T0 - second), finished(store, COMPLETED, T0 - 9 * second)]
    old_cancelled = finished(store, CANCELLED, T0 - second)
    old_failed = finished(store, FAILED, T0 - timedelta(days=365))
    pending = unfinished(store, PENDING, T0 - timedelta(days=365), name="t:elsewhere")
    running = unfinished(store, RUNNING, T0 - timedelta(days=365))
    fresh = gated_total.later(Pair(1), store, at=T0)

    report = burst(store, jobs, clock=clock, keep_completed=timedelta(0), keep_failed=None)
    assert report.purged == 3 and report.completed == 1
    assert all(store.get(j) is None for j in [*old_completed, old_cancelled])
    assert get(store, fresh).status is COMPLETED, "a job completed at the worker's now is not older than it"
    assert get(store, old_failed).status is FAILED, "keep_failed=None keeps failed jobs forever"
    assert get(store, pending).status is PENDING and get(store, running).status is RUNNING


def test_tick_far_ahead_prunes_by_the_default_retention(store: Store) -> None:
    jobs, _ = gated_jobs(Gate())
    now = utc_now()
    completed = finished(store, COMPLETED, now)
    cancelled = finished(store, CANCELLED, now)
    failed = finished(store, FAILED, now)
    running = unfinished(store, RUNNING, now)
    pending = unfinished(store, PENDING, now, name="t:elsewhere")
    assert tick(store, jobs, now=now + timedelta(days=6, hours=23)).purged == 0
    assert tick(store, jobs, now=now + timedelta(days=7, seconds=1)).purged == 2
    assert store.get(completed) is None and store.get(cancelled) is None
    assert get(store, failed).status is FAILED
    assert tick(store, jobs, now=now + timedelta(days=30, seconds=1)).purged == 1
    assert store.get(failed) is None
    # The lock of `running` outlives the tick, and `pending` belongs to another pool: both stay.
    assert get(store, running).status is RUNNING and get(store, pending).status is PENDING


def test_the_worker_prunes_in_batches_and_comes_back_soon_while_batches_are_full(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(T0)
    jobs, _ = gated_jobs(Gate())
    old = [finished(store, COMPLETED, T0 - timedelta(days=8, seconds=n)) for n in range(12)]
    old += [finished(store, FAILED, T0 - timedelta(days=31, seconds=n)) for n in range(3)]
    kept = [finished(store, COMPLETED, T0 - timedelta(days=6)), finished(store, FAILED, T0 - timedelta(days=29))]
    spy = PurgeSpy(store)
    with Background(spy, jobs, clock=clock, prune_batch=5, reap_every=0.02):  # type: ignore[arg-type]
        wait_until(lambda: len(spy.calls) >= 6, "the worker to prune three rounds")
    # Each round deletes one batch of each kind (completed and cancelled; failed) and comes back
    # a reaper's interval later while a batch was full, then not before PRUNE_EVERY.
    assert spy.calls == [(5, 5), (5, 3), (5, 5), (5, 0), (5, 2), (5, 0)]
    assert all(store.get(j) is None for j in old)
    assert all(store.get(j) is not None for j in kept)


def test_the_worker_does_not_prune_again_until_the_interval_passes_once_batches_run_short(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs, _ = gated_jobs(Gate())
    finished(store, COMPLETED, T0 - timedelta(days=8))
    spy = PurgeSpy(store)
    reaped = threading.Event()
    real_reset = store.reset_expired
    rounds = [0]

    def counting_reset(*, now: datetime) -> Any:
        rounds[0] += 1
        if rounds[0] >= 10:
            reaped.set()
        return real_reset(now=now)

    spy.reset_expired = counting_reset  # type: ignore[attr-defined]
    with Background(spy, jobs, clock=FakeClock(T0), reap_every=0.02):  # type: ignore[arg-type]
        assert reaped.wait(TIMEOUT), "the worker did not reap ten times"
    batch = WorkerOptions().prune_batch
    assert spy.calls == [(batch, 1), (batch, 0)]


def test_a_retention_longer_than_the_calendar_keeps_everything_and_the_worker_runs(store: Store) -> None:
    gate = Gate()
    gate.open.set()
    jobs, gated_total = gated_jobs(gate)
    old = finished(store, COMPLETED, T0 - timedelta(days=400))
    job_id = gated_total.later(Pair(1), store)
    report = burst(store, jobs, keep_completed=parse_duration("99999999d"), keep_failed=timedelta.max)
    assert report.completed == 1 and report.purged == 0
    assert get(store, job_id).status is COMPLETED and store.get(old) is not None


def test_run_worker_keeps_everything_with_none(store: Store) -> None:
    jobs, _ = gated_jobs(Gate())
    ids = [finished(store, status, T0 - timedelta(days=3650)) for status in (COMPLETED, FAILED, CANCELLED)]
    spy = PurgeSpy(store)
    assert burst(spy, jobs, keep_completed=None, keep_failed=None).purged == 0  # type: ignore[arg-type]
    assert spy.calls == []
    assert all(store.get(j) is not None for j in ids)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], (timedelta(days=7), timedelta(days=30))),
        (["--keep-completed", "12h", "--keep-failed", "2w"], (timedelta(hours=12), timedelta(weeks=2))),
        (["--keep-completed", "forever", "--keep-failed", " Forever "], (None, None)),
        (["--keep-completed", "0"], (timedelta(0), timedelta(days=30))),
    ],
)
def test_worker_command_retention_flags(flags: list[str], expected: tuple[timedelta | None, ...]) -> None:
    args = worker_cli._parser().parse_args(["jobs.sqlite", *flags])
    assert (args.keep_completed, args.keep_failed) == expected


@pytest.mark.parametrize("value", ["soon", "-1d", "1e20d", "never"])
def test_worker_command_refuses_a_bad_retention_in_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        worker_cli.main(["jobs.sqlite", f"--keep-failed={value}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--keep-failed" in err and "bad duration" in err and "Traceback" not in err


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_worker_with_a_long_poll_interval_still_sees_a_cancellation_within_seconds(store: Store) -> None:
    spinner = Spinner()
    jobs, spin, _ = spinner_jobs(spinner)
    job_id = spin.later("raises Cancelled", store)
    with Background(store, jobs, poll_interval=4.0, concurrency=1):
        assert spinner.started.wait(TIMEOUT)
        asked_at = time.monotonic()
        jobkit.cancel(store, job_id)
        assert spinner.saw_cancel.wait(TIMEOUT)
        assert spinner.saw_cancel_at - asked_at < CANCEL_SEEN_WITHIN


# -- summary --------------------------------------------------------------------------
def summary_scene(store: Store) -> dict[str, str]:
    hour = timedelta(hours=1)
    ids = {
        "alpha pending": unfinished(store, PENDING, T0 - 3 * hour, name="t:alpha"),
        "alpha pending later": unfinished(store, PENDING, T0 - hour, name="t:alpha", scheduled=T0 + hour),
        "alpha enqueued first, due later": unfinished(
            store, PENDING, T0 - 8 * hour, name="t:alpha", scheduled=T0 - 2 * hour
        ),
        "alpha completed": finished(store, COMPLETED, T0 - 2 * hour, name="t:alpha"),
        "alpha failed recently": finished(store, FAILED, T0 - hour / 2, name="t:alpha"),
        "alpha failed long ago": finished(store, FAILED, T0 - 2 * hour, name="t:alpha"),
        "beta pending oldest": unfinished(store, PENDING, T0 - 5 * hour, name="t:beta"),
        "beta failed at since": finished(store, FAILED, T0 - hour, name="t:beta"),
        "beta cancelled": finished(store, CANCELLED, T0 - hour / 4, name="t:beta"),
        "beta running": unfinished(store, PENDING, T0 - 4 * hour, name="t:beta"),
        "alpha running": unfinished(store, PENDING, T0 - 6 * hour, name="t:alpha"),
    }
    for key in ("beta running", "alpha running"):
        assert store.claim_job(ids[key], now=T0, token=key, lock_until=T0 + hour) is not None
    assert store.progress(Lease(ids["beta running"], "beta running"), 40, "halfway", now=T0)
    store.cancel(ids["alpha running"], now=T0)
    return ids


def test_summary_counts_names_oldest_pending_running_and_recent_failures(store: Store) -> None:
    ids = summary_scene(store)
    summary = store.summary(since=T0 - timedelta(hours=1))
    zero = dict.fromkeys(JobStatus, 0)
    assert summary.counts == {**zero, PENDING: 4, RUNNING: 2, COMPLETED: 1, FAILED: 3, CANCELLED: 1}
    assert summary.counts == store.counts()
    assert list(summary.by_name) == ["t:alpha", "t:beta"]
    assert summary.by_name["t:alpha"] == {**zero, PENDING: 3, RUNNING: 1, COMPLETED: 1, FAILED: 2}
    assert summary.by_name["t:beta"] == {**zero, PENDING: 1, RUNNING: 1, FAILED: 1, CANCELLED: 1}
    # The earliest time a pending job became due (how long the queue has kept someone waiting),
    # not when a delayed job was enqueued, and never a running job's.
    assert summary.oldest_pending == T0 - timedelta(hours=5)
    assert summary.running == sorted(
        [get(store, ids["beta running"]), get(store, ids["alpha running"])], key=lambda job: job.id
    )
    by_id = {job.id: job for job in summary.running}
    beta = by_id[ids["beta running"]]
    assert (beta.progress, beta.progress_message, beta.cancel_requested) == (40, "halfway", False)
    assert by_id[ids["alpha running"]].cancel_requested
    assert summary.failed_since == 2, "failures at or after `since` count; the one before does not"
    assert store.summary(since=T0).failed_since == 0
    assert store.summary(since=T0 - timedelta(days=1)).failed_since == 3


def test_summary_of_an_empty_store(store: Store) -> None:
    assert store.summary(since=T0) == Summary(
        counts=dict.fromkeys(JobStatus, 0), by_name={}, oldest_pending=None, running=[], failed_since=0
    )


def test_summary_refuses_a_naive_since(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.summary(since=datetime(2026, 1, 1))  # the naive time under test


def timestamps_are_utc(values: Sequence[datetime | None]) -> bool:
    return all(v is None or v.utcoffset() == timedelta(0) for v in values)


def test_summary_times_are_timezone_aware(store: Store) -> None:
    summary_scene(store)
    summary = store.summary(since=datetime(2025, 12, 31, 23, 0, tzinfo=timezone.utc))
    assert summary.oldest_pending is not None and timestamps_are_utc([summary.oldest_pending])
    assert all(timestamps_are_utc([j.worker_started_at, j.worker_expires_at]) for j in summary.running)
