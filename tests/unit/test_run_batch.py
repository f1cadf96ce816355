"""spec.batch: many inputs in the caller's threads, in order, with a concurrency and stop_on_error."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import jobkit
from jobkit.store import Store
from tests.support import (
    COMPLETED,
    FAILED,
)
from tests.unit.run_jobs import _count, _spec, double


# -- batch -------------------------------------------------------------------------------
def test_batch_returns_one_result_per_input_in_order(store: Store) -> None:
    results = double.batch([1, -2, 3, 4], store=store, concurrency=3)
    assert [r.value for r in results] == [2, None, 6, 8]
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].error == "ValueError: negative: -2"
    counts = store.counts()
    assert (counts[COMPLETED], counts[FAILED], _count(store)) == (3, 1, 4)
    for result in results:
        record = store.get(result.job_id)
        assert record is not None
        assert record.status is result.status


def test_batch_keeps_input_order_when_jobs_finish_out_of_order() -> None:
    second_done = threading.Event()
    finished: list[int] = []
    lock = threading.Lock()

    def handler(params: int, ctx: jobkit.Context) -> int:
        if params == 0:
            assert second_done.wait(10), "the second job never finished"
        with lock:
            finished.append(params)
        if params == 1:
            second_done.set()
        return params

    results = _spec(handler).batch([0, 1], concurrency=2)
    assert finished == [1, 0]
    assert [r.value for r in results] == [0, 1]


@pytest.mark.parametrize(("concurrency", "count"), [(1, 4), (3, 9), (4, 8)])
def test_batch_runs_exactly_concurrency_at_a_time(store: Store, concurrency: int, count: int) -> None:
    # Each job waits at a barrier for `concurrency` peers: the batch cannot finish unless that
    # many run at once, and a counter shows whether more ever did.
    barrier = threading.Barrier(concurrency, timeout=10)
    lock = threading.Lock()
    active = 0
    most = 0

    def handler(params: int, ctx: jobkit.Context) -> int:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            barrier.wait()
        finally:
            with lock:
                active -= 1
        return params

    results = _spec(handler).batch(list(range(count)), store=store, concurrency=concurrency)
    assert [r.error for r in results] == [None] * count
    assert [r.value for r in results] == list(range(count))
    assert most == concurrency


def test_batch_stop_on_error_starts_nothing_after_the_first_failure(store: Store) -> None:
    ran: list[int] = []

    def handler(params: int, ctx: jobkit.Context) -> int:
        ran.append(params)
        if params < 0:
            raise ValueError("bad")
        return params

    results = _spec(handler).batch([1, 2, -3, 4, 5], store=store, concurrency=1, stop_on_error=True)
    assert [r.ok for r in results] == [True, True, False]
    assert ran == [1, 2, -3]
    assert _count(store) == 3


def test_batch_stop_on_error_with_concurrency_stops_starting_jobs(store: Store) -> None:
    # Every job but the failing first one waits until that failure is in the store, so the
    # failure is known before most jobs could start.
    spec_ref: list[str] = []

    def handler(params: int, ctx: jobkit.Context) -> int:
        if params == 0:
            spec_ref.append(ctx.job_id)
            raise ValueError("first fails")
        deadline = time.monotonic() + 10
        pause = threading.Event()
        while time.monotonic() < deadline:
            record = store.get(spec_ref[0]) if spec_ref else None
            if record is not None and record.status is FAILED:
                return params
            pause.wait(0.001)
        raise AssertionError("the first job's failure never reached the store")

    results = _spec(handler).batch(list(range(20)), store=store, concurrency=3, stop_on_error=True)
    assert results[0].ok is False
    assert all(r.ok for r in results[1:])
    assert len(results) < 20
    assert _count(store) == len(results)  # what did not start left no record either


def test_batch_without_stop_on_error_runs_everything() -> None:
    results = double.batch([-1, -2, 3], concurrency=1)
    assert [r.ok for r in results] == [False, False, True]


def test_batch_validates_everything_before_running_anything(store: Store) -> None:
    ran: list[int] = []

    def handler(params: int, ctx: jobkit.Context) -> int:
        ran.append(params)
        return params

    with pytest.raises(jobkit.ValidationError) as caught:
        _spec(handler).batch([1, 2, "three"], store=store)
    assert str(caught.value) == "invalid params[2]: invalid type (expected int, got str 'three') @ params[2]"
    assert ran == []
    assert _count(store) == 0


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "2"])
def test_batch_refuses_a_bad_concurrency(concurrency: Any) -> None:
    with pytest.raises(jobkit.ValidationError, match="concurrency must be an int of at least 1"):
        double.batch([1], concurrency=concurrency)


def test_batch_of_nothing() -> None:
    assert double.batch([]) == []


def test_batch_without_a_store_persists_nothing() -> None:
    results = double.batch([1, 2])
    assert [r.unwrap() for r in results] == [2, 4]
    assert len({r.job_id for r in results}) == 2
