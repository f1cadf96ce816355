"""spec.now: run in the caller's thread, with a store or without; BaseException, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import attrs
import pytest

import jobkit
from jobkit import run
from jobkit.model import JobStatus
from jobkit.store import Store
from tests.support import (
    COMPLETED,
    FAILED,
    RUNNING,
    T0,
    FakeClock,
)
from tests.unit.run_jobs import Resize, Resized, _count, _is_uuid7, _spec, double, resize


# -- now, persisted ------------------------------------------------------------------------
def test_now_persisted_returns_a_full_result_and_a_completed_record(store: Store, clock: FakeClock) -> None:
    result = run.run_now(resize, {"url": "a.png", "width": 3}, store, clock=clock)
    assert result.ok
    assert result.value == Resized("thumbs/3.png")
    assert result.unwrap() == Resized("thumbs/3.png")
    assert result.error is None
    assert result.traceback is None
    assert _is_uuid7(result.job_id)
    assert result.status is COMPLETED
    assert result.attempt_count == 1
    assert isinstance(result.duration, float)
    assert result.duration >= 0
    assert (result.created_at, result.started_at, result.completed_at) == (T0, T0, T0)

    record = store.get(result.job_id)
    assert record is not None
    assert record.job_name == resize.name
    assert record.status is COMPLETED
    assert json.loads(record.params) == {"url": "a.png", "width": 3}
    assert json.loads(record.result or "") == {"path": "thumbs/3.png"}
    assert (record.progress, record.attempt_count, record.error, record.traceback) == (100, 1, None, None)
    assert (record.created_at, record.worker_started_at, record.completed_at) == (T0, T0, T0)
    assert _count(store) == 1


def test_now_takes_an_instance_or_plain_data(store: Store) -> None:
    by_instance = resize.now(Resize("a.png"), store=store)
    by_data = resize.now({"url": "a.png"}, store=store)
    assert by_instance.unwrap() == by_data.unwrap() == Resized("thumbs/100.png")
    first, second = store.get(by_instance.job_id), store.get(by_data.job_id)
    assert first is not None
    assert second is not None
    assert first.params == second.params


def test_now_failure_is_caught_and_recorded(store: Store) -> None:
    result = resize.now({"url": "boom"}, store=store)
    assert not result.ok
    assert result.value is None
    assert result.status is FAILED
    assert result.error == "RuntimeError: cannot fetch boom"
    assert result.traceback is not None
    assert "in resize" in result.traceback
    assert 'raise RuntimeError(f"cannot fetch {params.url}")' in result.traceback
    assert result.completed_at is not None

    record = store.get(result.job_id)
    assert record is not None
    assert record.status is FAILED  # max_attempts=5, but now() runs once
    assert record.attempt_count == 1
    assert record.error == result.error
    assert record.traceback == result.traceback
    assert record.completed_at is not None
    assert record.result is None


def test_exception_without_text_is_named_by_its_type(store: Store) -> None:
    def handler(params: int, ctx: jobkit.Context) -> int:
        raise LookupError

    assert _spec(handler).now(1, store=store).error == "LookupError"


@pytest.mark.parametrize(
    ("returned", "result_type", "error"),
    [
        ("x", int, "ValidationError: invalid result: invalid type (expected int, got str 'x') @ result"),
        ({"path": 3}, Resized, "ValidationError: invalid result: invalid value for type, expected str @ result.path"),
        (5, type(None), "ValidationError: result is 5, but the handler is declared to return None"),
        (math.nan, float, "ValidationError: result is nan; JSON cannot store NaN or infinity"),
        ({"a": b"x"}, dict[str, Any], "ValidationError: result.a is a bytes, which JSON cannot store; "),
    ],
)
def test_result_that_does_not_fit_its_type_fails_the_job(
    store: Store, returned: Any, result_type: Any, error: str
) -> None:
    def handler(params, ctx):  # type: ignore[no-untyped-def]
        return returned

    handler.__annotations__ = {"params": int, "return": result_type}
    result = _spec(handler).now(1, store=store)
    assert not result.ok
    assert result.status is FAILED
    assert result.error is not None
    assert result.error.startswith(error)
    record = store.get(result.job_id)
    assert record is not None
    assert (record.status, record.error, record.result) == (FAILED, result.error, None)


def test_result_given_as_plain_data_is_structured() -> None:
    def handler(params: int, ctx: jobkit.Context) -> Resized:
        return {"path": "p"}  # type: ignore[return-value]

    assert _spec(handler).now(1).unwrap() == Resized("p")


def test_unwrap_raises_job_failed_carrying_the_result(store: Store) -> None:
    result = double.now(-1, store=store)
    with pytest.raises(jobkit.JobFailed) as caught:
        result.unwrap()
    assert caught.value.result is result
    assert str(caught.value) == f"job {result.job_id} failed: ValueError: negative: -1"
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value, jobkit.JobkitError)


def test_job_result_is_frozen() -> None:
    result = double.now(1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.ok = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"url": "a", "width": "3"}, "invalid params: invalid value for type, expected int @ params.width"),
        ({"width": 3}, "invalid params: required field missing @ params.url"),
        ({"url": "a", "heigth": 3}, "invalid params: extra fields found (heigth) @ params"),
        ({"url": "a", "width": math.nan}, "invalid params: invalid value for type, expected int @ params.width"),
    ],
)
def test_invalid_params_raise_and_write_nothing(store: Store, params: Any, message: str) -> None:
    ran: list[int] = []

    @jobkit.Registry().job(name="strict")
    def strict(p: Resize, ctx: jobkit.Context) -> None:
        ran.append(1)

    with pytest.raises(jobkit.ValidationError) as caught:
        strict.now(params, store=store)
    assert str(caught.value) == message
    with pytest.raises(jobkit.ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        strict.later(params, store)
    assert _count(store) == 0
    assert ran == []


# -- now, not persisted -------------------------------------------------------------------
def test_now_without_a_store_runs_and_returns_a_result(clock: FakeClock) -> None:
    result = run.run_now(double, 4, None, clock=clock)
    assert (result.ok, result.value, result.status, result.attempt_count) == (True, 8, COMPLETED, 1)
    assert _is_uuid7(result.job_id)
    assert (result.created_at, result.started_at, result.completed_at) == (T0, T0, T0)
    assert result.duration is not None
    assert result.duration >= 0


def test_now_without_a_store_catches_failures() -> None:
    result = double.now(-2)
    assert (result.ok, result.status, result.error) == (False, FAILED, "ValueError: negative: -2")
    assert result.traceback is not None
    assert "ValueError: negative: -2" in result.traceback
    with pytest.raises(jobkit.JobFailed):
        result.unwrap()


# -- BaseException, timeouts, cancellation ------------------------------------------------
def _interrupting(params: int, ctx: jobkit.Context) -> int:
    raise KeyboardInterrupt


def test_keyboard_interrupt_is_recorded_as_failed_and_re_raised(store: Store) -> None:
    spec = _spec(_interrupting, name="ctrl-c", max_attempts=3)
    with pytest.raises(KeyboardInterrupt):
        spec.now(1, store=store)
    (record,) = store.list_jobs(name="ctrl-c")
    assert record.status is FAILED
    assert record.error == "KeyboardInterrupt"
    assert record.traceback is not None
    assert "_interrupting" in record.traceback
    assert store.counts()[RUNNING] == 0


def test_keyboard_interrupt_without_a_store_is_re_raised() -> None:
    with pytest.raises(KeyboardInterrupt):
        _spec(_interrupting).now(1)


def _cooperative(params: int, ctx: jobkit.Context) -> int:
    deadline = time.monotonic() + 10
    while not ctx.cancelled:
        if time.monotonic() > deadline:
            return -1  # the timeout never showed up: the result check below fails
    return params


async def _forever(params: int, ctx: jobkit.Context) -> int:
    await asyncio.Event().wait()
    return params


@pytest.mark.parametrize("fn", [_cooperative, _forever], ids=["sync", "async"])
def test_timeout_fails_the_job(store: Store, fn: Any) -> None:
    spec = _spec(fn, name="slow", timeout=0.05)
    result = spec.now(1, store=store)
    assert not result.ok
    assert result.status is FAILED
    assert result.error == "TimeoutError: the job ran past its timeout of 0.05s"
    record = store.get(result.job_id)
    assert record is not None
    assert (record.status, record.error) == (FAILED, result.error)


def test_async_timeout_without_a_store() -> None:
    result = _spec(_forever, name="slow", timeout=0.05).now(1)
    assert (result.ok, result.error) == (False, "TimeoutError: the job ran past its timeout of 0.05s")


def test_async_handler_that_finishes_in_time() -> None:
    async def quick(params: int, ctx: jobkit.Context) -> int:
        await asyncio.sleep(0)
        return params + 1

    assert _spec(quick, timeout=30).now(1).unwrap() == 2


def test_async_handler_runs_where_a_loop_already_runs() -> None:
    async def quick(params: int, ctx: jobkit.Context) -> int:
        await asyncio.sleep(0)
        return params + 1

    spec = _spec(quick)

    async def notebook_cell() -> int:
        return spec.now(41).unwrap()  # type: ignore[no-any-return]

    assert asyncio.run(notebook_cell()) == 42


def test_handler_raising_cancelled_ends_cancelled(store: Store) -> None:
    def handler(params: int, ctx: jobkit.Context) -> int:
        raise jobkit.Cancelled("asked to stop")

    result = _spec(handler).now(1, store=store)
    assert (result.ok, result.status, result.error) == (False, JobStatus.CANCELLED, "asked to stop")
    record = store.get(result.job_id)
    assert record is not None
    assert record.status is JobStatus.CANCELLED


def test_handler_stopping_with_cancelled_after_its_timeout_is_a_timeout(store: Store) -> None:
    def handler(params: int, ctx: jobkit.Context) -> int:
        deadline = time.monotonic() + 10
        while not ctx.cancelled and time.monotonic() < deadline:
            pass
        raise jobkit.Cancelled("stopping")

    result = _spec(handler, timeout=0.05).now(1, store=store)
    assert (result.status, result.error) == (FAILED, "TimeoutError: the job ran past its timeout of 0.05s")
