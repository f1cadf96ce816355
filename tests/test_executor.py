"""The executor: the stages called directly, and now / later / later_many / batch / execute."""

import asyncio
import json
import math
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

import jobkit
from jobkit import backoff, run, stages
from jobkit.model import Cancel, Complete, Fail, Failed, JobRecord, JobStatus, Retry, Stopped, Succeeded
from jobkit.store import Store
from tests.conftest import T0, FakeClock

COMPLETED, FAILED, PENDING, RUNNING = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.PENDING, JobStatus.RUNNING

jobs = jobkit.Registry()


@attrs.frozen
class Resize:
    url: str
    width: int = 100


@attrs.frozen
class Resized:
    path: str


@jobs.job(max_attempts=5, retry_backoff=10.0)
def resize(params: Resize, ctx: jobkit.Context) -> Resized:
    if params.url == "boom":
        raise RuntimeError(f"cannot fetch {params.url}")
    return Resized(path=f"thumbs/{params.width}.png")


@jobs.job(name="double")
def double(params: int, ctx: jobkit.Context) -> int:
    if params < 0:
        raise ValueError(f"negative: {params}")
    return params * 2


def _count(store: Store) -> int:
    return sum(store.counts().values())


def _is_uuid7(text: str) -> bool:
    return uuid.UUID(text).version == 7 and str(uuid.UUID(text)) == text


def _spec(fn: Any, name: str = "job", **options: Any) -> jobkit.JobSpec[Any, Any]:
    return jobkit.Registry().job(name=name, **options)(fn)


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


# -- later -------------------------------------------------------------------------------
def test_later_writes_one_pending_job(store: Store) -> None:
    job_id = resize.later(Resize("a.png", 3), store)
    assert _is_uuid7(job_id)
    record = store.get(job_id)
    assert record is not None
    assert record.status is PENDING
    assert record.job_name == resize.name
    assert json.loads(record.params) == {"url": "a.png", "width": 3}
    assert record.scheduled_for == record.created_at
    assert (record.max_attempts, record.priority, record.correlation_id, record.attempt_count) == (5, 0, None, 0)
    assert record.worker_id is None
    assert record.created_at.tzinfo is not None


def test_later_options_are_stored(store: Store) -> None:
    job_id = resize.later({"url": "a"}, store, delay=30, correlation_id="order-7", max_attempts=7, priority=4)
    record = store.get(job_id)
    assert record is not None
    assert record.scheduled_for - record.created_at == timedelta(seconds=30)
    assert (record.correlation_id, record.max_attempts, record.priority) == ("order-7", 7, 4)
    assert [r.id for r in store.list_jobs(correlation_id="order-7")] == [job_id]


def test_later_times_come_from_the_clock(store: Store, clock: FakeClock) -> None:
    (soon,) = run.enqueue(double, [1], store, delay=timedelta(minutes=2), clock=clock)
    (now,) = run.enqueue(double, [1], store, delay=0, clock=clock)
    record, immediate = store.get(soon), store.get(now)
    assert record is not None
    assert immediate is not None
    assert (record.created_at, record.scheduled_for) == (T0, T0 + timedelta(minutes=2))
    assert immediate.scheduled_for == T0


def test_later_at_a_given_time_in_any_timezone(store: Store) -> None:
    at = datetime(2030, 5, 17, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    record = store.get(double.later(1, store, at=at, priority=-3))
    assert record is not None
    assert record.scheduled_for == at
    assert record.scheduled_for.utcoffset() is not None
    assert record.priority == -3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": -1}, "delay must be seconds (>= 0) or a timedelta, not -1"),
        ({"delay": timedelta(seconds=-1)}, "delay must be seconds (>= 0) or a timedelta, not "),
        ({"delay": "30"}, "delay must be seconds (>= 0) or a timedelta, not '30'"),
        ({"delay": True}, "delay must be seconds (>= 0) or a timedelta, not True"),
        ({"at": datetime(2030, 1, 1)}, "at must be a timezone-aware datetime, not datetime.datetime(2030, 1, 1, 0, 0)"),
        ({"at": "2030-01-01T00:00:00Z"}, "at must be a timezone-aware datetime, not '2030-01-01T00:00:00Z'"),
        ({"at": T0, "delay": 5}, "give delay or at, not both"),
        ({"correlation_id": 7}, "correlation_id must be a str, not 7"),
        ({"max_attempts": 0}, "max_attempts must be an int of at least 1, not 0"),
        ({"max_attempts": 2.5}, "max_attempts must be an int of at least 1, not 2.5"),
        ({"max_attempts": True}, "max_attempts must be an int of at least 1, not True"),
        ({"priority": "high"}, "priority must be an int, not 'high'"),
        ({"priority": 1.0}, "priority must be an int, not 1.0"),
        ({"priority": None}, "priority must be an int, not None"),
    ],
)
def test_later_refuses_invalid_options_and_writes_nothing(store: Store, options: Any, message: str) -> None:
    with pytest.raises(jobkit.ValidationError) as caught:
        double.later(1, store, **options)
    assert str(caught.value).startswith(message)
    with pytest.raises(jobkit.ValidationError):
        double.later_many([1, 2], store, **options)
    assert _count(store) == 0


@pytest.mark.parametrize("delay", [math.nan, math.inf, 1e12])
def test_later_refuses_a_delay_that_is_not_a_finite_time(store: Store, delay: float) -> None:
    with pytest.raises(jobkit.ValidationError, match="delay must be"):
        double.later(1, store, delay=delay)
    assert _count(store) == 0


# -- later_many --------------------------------------------------------------------------
def test_later_many_enqueues_all_in_order(store: Store) -> None:
    ids = double.later_many([1, 2, 3], store, delay=5, correlation_id="batch-1", max_attempts=2, priority=1)
    assert len(ids) == len(set(ids)) == 3
    assert ids == sorted(ids)  # UUIDv7: sorted by creation
    records = [store.get(i) for i in ids]
    assert [json.loads(r.params) for r in records if r] == [1, 2, 3]
    for record in records:
        assert record is not None
        assert (record.status, record.correlation_id, record.max_attempts, record.priority) == (
            PENDING,
            "batch-1",
            2,
            1,
        )
        assert record.scheduled_for - record.created_at == timedelta(seconds=5)


def test_later_many_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(jobkit.ValidationError) as caught:
        resize.later_many([{"url": "a"}, Resize("b"), {"url": "c", "width": "wide"}, {"url": "d"}], store)
    assert str(caught.value) == "invalid params[2]: invalid value for type, expected int @ params[2].width"
    assert _count(store) == 0


def test_later_many_of_nothing_writes_nothing(store: Store) -> None:
    assert double.later_many([], store) == []
    assert _count(store) == 0


def test_later_many_of_one_still_names_the_index(store: Store) -> None:
    with pytest.raises(jobkit.ValidationError, match=r"@ params\[0\]"):
        double.later_many(["x"], store)


# -- __main__ jobs -------------------------------------------------------------------------
def _main_spec() -> jobkit.JobSpec[Any, Any]:
    def script_job(params: int, ctx: jobkit.Context) -> int:
        return params

    script_job.__module__ = "__main__"
    script_job.__qualname__ = "script_job"
    return jobkit.Registry().job()(script_job)


def test_main_job_is_refused_for_a_shared_store(tmp_path: Any) -> None:
    spec = _main_spec()
    assert spec.name == "__main__:script_job"
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as store:
        for enqueue in (lambda: spec.later(1, store), lambda: spec.later_many([1, 2], store)):
            with pytest.raises(jobkit.JobkitError) as caught:
                enqueue()
            assert str(caught.value) == (
                "job '__main__:script_job' is defined in a script run as __main__, which a worker process cannot "
                "import; define it in a module, or give it a name (jobs.job(name=...)) and start the worker with "
                "--jobs MODULE"
            )
        assert _count(store) == 0
        assert spec.now(5, store=store).unwrap() == 5  # running it here needs no import


def test_main_job_is_accepted_by_memory_store() -> None:
    spec = _main_spec()
    store = jobkit.MemoryStore()
    record = store.get(spec.later(1, store))
    assert record is not None
    assert record.job_name == "__main__:script_job"


def test_named_main_job_is_accepted_by_a_shared_store(tmp_path: Any) -> None:
    def script_job(params: int, ctx: jobkit.Context) -> int:
        return params

    script_job.__module__ = "__main__"
    spec = jobkit.Registry().job(name="scripts.nightly")(script_job)
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as store:
        assert store.get(spec.later(1, store)) is not None


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


# -- the stages, called directly -------------------------------------------------------------
def _running(attempt_count: int, max_attempts: int = 3) -> JobRecord:
    return JobRecord(
        id="job-1",
        job_name="double",
        params="1",
        status=RUNNING,
        scheduled_for=T0,
        created_at=T0,
        updated_at=T0,
        max_attempts=max_attempts,
        attempt_count=attempt_count,
        worker_id="token-1",
        worker_started_at=T0,
        worker_expires_at=T0 + timedelta(minutes=5),
    )


NOW = T0 + timedelta(seconds=42)


def test_decide_success_completes() -> None:
    transition = stages.decide(resize, _running(1), Succeeded(Resized("p"), '{"path":"p"}'), NOW)
    assert transition == Complete("job-1", "token-1", '{"path":"p"}', at=NOW)


def test_decide_stopped_cancels() -> None:
    assert stages.decide(resize, _running(3, 3), Stopped("asked"), NOW) == Cancel("job-1", "token-1", "asked", at=NOW)


@pytest.mark.parametrize(("attempt_count", "max_attempts"), [(1, 3), (2, 3), (1, 2), (4, 5)])
@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.99])
def test_decide_failure_with_attempts_left_retries_after_the_backoff(
    attempt_count: int, max_attempts: int, jitter: float
) -> None:
    outcome = Failed("RuntimeError: x", "Traceback ...")
    transition = stages.decide(resize, _running(attempt_count, max_attempts), outcome, NOW, jitter=jitter)
    wait = backoff.delay(10.0, attempt_count, jitter)
    assert transition == Retry("job-1", "token-1", "RuntimeError: x", "Traceback ...", at=NOW, run_at=NOW + wait)
    assert (
        timedelta(seconds=7.5) * 2 ** (attempt_count - 1) <= wait <= timedelta(seconds=12.5) * 2 ** (attempt_count - 1)
    )


@pytest.mark.parametrize(("attempt_count", "max_attempts"), [(3, 3), (1, 1), (5, 3)])
def test_decide_failure_with_attempts_used_up_fails(attempt_count: int, max_attempts: int) -> None:
    transition = stages.decide(resize, _running(attempt_count, max_attempts), Failed("E: x", "tb"), NOW)
    assert transition == Fail("job-1", "token-1", "E: x", "tb", at=NOW)


def test_decide_failure_that_is_not_retryable_fails_at_once() -> None:
    transition = stages.decide(resize, _running(1, 5), Failed("bad params", None, retryable=False), NOW)
    assert transition == Fail("job-1", "token-1", "bad params", None, at=NOW)


def test_decide_without_retry_or_without_a_spec_fails() -> None:
    assert isinstance(stages.decide(resize, _running(1, 5), Failed("e"), NOW, retry=False), Fail)
    assert isinstance(stages.decide(None, _running(1, 5), Failed("e"), NOW), Fail)


def test_decide_uses_a_callable_backoff() -> None:
    spec = _spec(lambda params, ctx: None, retry_backoff=lambda attempt: 100.0 * attempt)
    transition = stages.decide(spec, _running(2, 3), Failed("e"), NOW, jitter=0.0)
    assert isinstance(transition, Retry)
    assert transition.run_at == NOW + timedelta(seconds=200)


def test_validate_returns_the_typed_value_and_its_json() -> None:
    typed, text = stages.validate(resize, {"url": "u"})
    assert typed == Resize("u", 100)
    assert json.loads(text) == {"url": "u", "width": 100}


def test_check_result_turns_values_into_outcomes() -> None:
    assert stages.check_result(resize, Resized("p")) == Succeeded(Resized("p"), '{"path":"p"}')
    failed = stages.check_result(resize, "nope")
    assert isinstance(failed, Failed)
    assert failed.retryable
    assert failed.error.startswith("ValidationError: invalid result:")


def test_failure_keeps_text_and_traceback() -> None:
    try:
        raise OSError("disk full")
    except OSError as exc:
        failed = stages.failure(exc)
    assert failed.error == "OSError: disk full"
    assert failed.traceback is not None
    assert failed.traceback.endswith("OSError: disk full\n")
    assert 'raise OSError("disk full")' in failed.traceback


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
