"""jobkit.wait and wait_async, and a spec's wait: until a job ends, in this process.

Every test that takes ``store`` runs on MemoryStore and on SqliteStore. Workers run in
threads (``run_worker`` with a stop Event). Nothing sleeps to wait for something: handlers
and tests meet on Events, stores run on a FakeClock where time matters, and conditions are
polled with a deadline. Real processes are in tests/chaos/test_control_processes.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import jobkit
from jobkit.errors import JobFailed, JobNotFound
from jobkit.store import Store
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    TIMEOUT,
    Background,
    Gate,
    Pair,
    Total,
    burst,
    gated_jobs,
)
from tests.support import record as get


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
