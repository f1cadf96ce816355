"""jobkit.execute: run one stored pending job in the caller's thread, as a worker would."""

from __future__ import annotations

import json
from datetime import timedelta

import attrs
import pytest

import jobkit
from jobkit import run
from jobkit.model import JobStatus
from jobkit.store import Store
from tests.support import (
    COMPLETED,
    FAILED,
    PENDING,
    T0,
    FakeClock,
)
from tests.unit.run_jobs import Resized, double, jobs, resize


# -- execute -----------------------------------------------------------------------------
def test_execute_runs_a_pending_job_like_a_worker(store: Store, clock: FakeClock) -> None:
    job_id = resize.later({"url": "a.png", "width": 9}, store)
    clock.advance(5)
    result = run.execute(store, jobs, job_id, clock=clock)
    assert (result.ok, result.status, result.attempt_count) == (True, COMPLETED, 1)
    assert result.value == Resized("thumbs/9.png")
    record = store.get(job_id)
    assert record is not None
    assert (record.status, record.attempt_count, record.worker_started_at) == (COMPLETED, 1, clock.now)
    assert json.loads(record.result or "") == {"path": "thumbs/9.png"}


def test_execute_public_entry_point(store: Store) -> None:
    job_id = double.later(21, store)
    assert jobkit.execute(store, jobs, job_id).unwrap() == 42


def test_execute_failure_is_retried_with_backoff_until_attempts_are_used(store: Store, clock: FakeClock) -> None:
    attempts: list[int] = []

    @jobkit.Registry().job(name="flaky", max_attempts=2, retry_backoff=10.0)
    def flaky(params: int, ctx: jobkit.Context) -> int:
        attempts.append(ctx.attempt)
        raise RuntimeError(f"attempt {ctx.attempt}")

    registry = jobkit.Registry().register(flaky)
    (job_id,) = run.enqueue(flaky, [1], store, clock=clock)

    first = run.execute(store, registry, job_id, clock=clock)
    assert (first.ok, first.status, first.error, first.attempt_count) == (False, PENDING, "RuntimeError: attempt 1", 1)
    record = store.get(job_id)
    assert record is not None
    assert record.status is PENDING
    assert timedelta(seconds=7.5) <= record.scheduled_for - T0 <= timedelta(seconds=12.5)
    assert record.error == "RuntimeError: attempt 1"
    assert record.traceback is not None

    clock.advance(60)
    second = run.execute(store, registry, job_id, clock=clock)
    assert (second.status, second.error, second.attempt_count) == (FAILED, "RuntimeError: attempt 2", 2)
    assert attempts == [1, 2]
    with pytest.raises(jobkit.JobStateError):
        run.execute(store, registry, job_id, clock=clock)


def test_execute_with_zero_backoff_retries_at_once(store: Store, clock: FakeClock) -> None:
    @jobkit.Registry().job(name="again", max_attempts=3, retry_backoff=0)
    def again(params: int, ctx: jobkit.Context) -> int:
        raise RuntimeError("no")

    (job_id,) = run.enqueue(again, [1], store, clock=clock)
    run.execute(store, jobkit.Registry().register(again), job_id, clock=clock)
    record = store.get(job_id)
    assert record is not None
    assert (record.status, record.scheduled_for) == (PENDING, T0)


def test_execute_refuses_a_job_that_is_not_pending(store: Store) -> None:
    job_id = double.now(1, store=store).job_id
    before = store.get(job_id)
    with pytest.raises(jobkit.JobStateError) as caught:
        jobkit.execute(store, jobs, job_id)
    assert str(caught.value) == f"job {job_id} is completed, not pending; only a pending job can be executed"
    assert (caught.value.job_id, caught.value.status) == (job_id, "completed")
    assert isinstance(caught.value, RuntimeError)
    assert store.get(job_id) == before


def test_execute_refuses_a_running_job(store: Store, clock: FakeClock) -> None:
    job_id = double.later(1, store)
    store.claim_job(job_id, now=clock(), token="someone-else", lock_until=clock.advance(300))
    before = store.get(job_id)
    with pytest.raises(jobkit.JobStateError, match="is running, not pending"):
        jobkit.execute(store, jobs, job_id)
    assert store.get(job_id) == before


def test_execute_unknown_id(store: Store) -> None:
    double.later(1, store)
    before = store.counts()
    with pytest.raises(jobkit.JobNotFound) as caught:
        jobkit.execute(store, jobs, "no-such-id")
    assert str(caught.value) == "no job with id 'no-such-id'"
    assert isinstance(caught.value, LookupError)
    assert store.counts() == before


def test_execute_unknown_name_changes_nothing(store: Store) -> None:
    job_id = double.later(1, store)
    before = store.get(job_id)
    with pytest.raises(jobkit.UnknownJobError) as caught:
        jobkit.execute(store, jobkit.Registry(), job_id)
    assert str(caught.value) == "no job named 'double': it is not in the registry given to execute()"
    assert caught.value.name == "double"
    assert isinstance(caught.value, LookupError)
    assert store.get(job_id) == before


@pytest.mark.parametrize(
    ("stored", "error"),
    [
        (
            "{not json",
            "stored params no longer decode: not valid JSON (Expecting property name enclosed in double quotes",
        ),
        ('"seven"', "stored params no longer decode: invalid params: invalid type (expected int, got str 'seven')"),
        ("NaN", "stored params no longer decode: invalid params: invalid type (expected int, got float nan)"),
    ],
)
def test_corrupt_stored_params_fail_that_job_alone(store: Store, clock: FakeClock, stored: str, error: str) -> None:
    good = double.later(2, store)
    template = store.get(good)
    assert template is not None
    bad = attrs.evolve(template, id=jobkit.model.new_id(), params=stored)
    store.add([bad])

    result = run.execute(store, jobs, bad.id, clock=clock)
    assert (result.ok, result.status) == (False, FAILED)
    assert result.error is not None
    assert result.error.startswith(error)
    record = store.get(bad.id)
    assert record is not None
    assert (record.status, record.attempt_count, record.error) == (FAILED, 1, result.error)  # not retried

    assert run.execute(store, jobs, good, clock=clock).unwrap() == 4


def test_execute_after_a_failed_attempt_reports_no_stale_traceback(store: Store) -> None:
    """The record execute() reports is the one the store holds: a success clears the first failure's traceback."""
    registry = jobkit.Registry()
    calls: list[int] = []

    @registry.job(name="t:flaky", max_attempts=3, retry_backoff=0)
    def flaky(n: int, ctx: jobkit.Context) -> int:
        calls.append(n)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return n

    job_id = flaky.later(7, store)
    first = run.execute(store, registry, job_id)
    assert (first.ok, first.status) == (False, JobStatus.PENDING) and first.traceback is not None
    second = run.execute(store, registry, job_id)
    stored = store.get(job_id)
    assert stored is not None
    assert (second.ok, second.value, second.error, second.traceback) == (True, 7, None, None)
    assert (stored.error, stored.traceback) == (second.error, second.traceback)
