"""spec.later_async, later_many_async, now_async: what the sync forms do, from a coroutine, never blocking the loop."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import attrs
import pytest

import jobkit
from jobkit.model import JobRecord
from jobkit.store import Store
from tests.support import COMPLETED, FAILED, PENDING, TIMEOUT
from tests.unit.run_jobs import Resized, _count, _spec, double, resize

T = TypeVar("T")


def run(coroutine: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """Run *coroutine* on a loop of its own, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


def shape(record: JobRecord | None) -> dict[str, Any]:
    """What a caller chose of a record: everything but its id and the times it was made at."""
    assert record is not None
    fields = attrs.asdict(record, recurse=False)
    delay = record.scheduled_for - record.created_at
    for moment in ("id", "created_at", "updated_at", "scheduled_for"):
        del fields[moment]
    return {**fields, "delay": delay}


async def _sleepy(params: int, ctx: jobkit.Context) -> int:
    if params < 0:
        raise ValueError(f"negative: {params}")
    await asyncio.sleep(0)
    return params + 1


sleepy = _spec(_sleepy, name="sleepy", max_attempts=4)


# -- the same calls ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["later", "later_many", "now"])
def test_each_async_form_takes_the_sync_forms_parameters_and_is_a_coroutine_function(name: str) -> None:
    sync, asynchronous = getattr(resize, name), getattr(resize, f"{name}_async")
    assert inspect.signature(asynchronous).parameters == inspect.signature(sync).parameters
    assert inspect.iscoroutinefunction(asynchronous)
    assert asynchronous.__name__ == f"{name}_async"  # what tracebacks and logs show


def test_later_async_writes_what_later_writes_with_every_option(store: Store) -> None:
    options: dict[str, Any] = {"delay": timedelta(seconds=30), "correlation_id": "order-7", "max_attempts": 7}
    options["priority"] = 4
    sync_id = resize.later({"url": "a.png", "width": 3}, store, **options)
    async_id = run(resize.later_async({"url": "a.png", "width": 3}, store, **options))
    assert isinstance(async_id, str)
    assert async_id != sync_id
    assert shape(store.get(async_id)) == shape(store.get(sync_id))
    assert shape(store.get(async_id))["status"] is PENDING
    assert {r.id for r in store.list_jobs(correlation_id="order-7")} == {sync_id, async_id}


def test_later_async_at_a_given_time(store: Store) -> None:
    at = datetime(2030, 5, 17, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    record = store.get(run(double.later_async(1, store, at=at)))
    assert record is not None
    assert record.scheduled_for == at


def test_later_many_async_writes_what_later_many_writes_in_order(store: Store) -> None:
    sync_ids = double.later_many([1, 2, 3], store, priority=2, delay=5)
    async_ids = run(double.later_many_async([1, 2, 3], store, priority=2, delay=5))
    assert len(async_ids) == 3
    assert [shape(store.get(i)) for i in async_ids] == [shape(store.get(i)) for i in sync_ids]
    assert [json.loads(record.params) for record in map(store.get, async_ids) if record] == [1, 2, 3]
    assert run(double.later_many_async([], store)) == double.later_many([], store) == []


def test_later_async_tells_the_enqueued_listeners() -> None:
    heard: list[jobkit.Event] = []
    jobs = jobkit.Registry()
    spec = jobs.job(name="heard")(double.fn)
    jobs.on("enqueued")(heard.append)
    store = jobkit.MemoryStore()
    job_id = run(spec.later_async(1, store))
    [many] = run(spec.later_many_async([2], store))
    assert [(event.kind, event.job_id) for event in heard] == [("enqueued", job_id), ("enqueued", many)]


def same_result(first: jobkit.JobResult[Any], second: jobkit.JobResult[Any]) -> None:
    assert (first.ok, first.value, first.error, first.status, first.attempt_count) == (
        second.ok,
        second.value,
        second.error,
        second.status,
        second.attempt_count,
    )


@pytest.mark.parametrize("params", [{"url": "a.png", "width": 3}, {"url": "boom"}], ids=["completes", "fails"])
def test_now_async_returns_what_now_returns_persisted_and_not(store: Store, params: dict[str, Any]) -> None:
    persisted = run(resize.now_async(params, store))
    same_result(persisted, resize.now(params, store))
    same_result(run(resize.now_async(params)), resize.now(params))
    record = store.get(persisted.job_id)
    assert record is not None
    assert record.status is persisted.status is (COMPLETED if params["url"] != "boom" else FAILED)
    assert run(resize.now_async({"url": "a.png", "width": 3})).value == Resized("thumbs/3.png")


@pytest.mark.parametrize("params", [1, -1], ids=["completes", "fails"])
def test_now_async_runs_an_async_handler_as_now_does(store: Store, params: int) -> None:
    same_result(run(sleepy.now_async(params, store)), sleepy.now(params, store))
    same_result(run(sleepy.now_async(params)), sleepy.now(params))


def test_now_async_runs_an_async_handler_on_a_loop_of_its_own_in_a_worker_thread() -> None:
    seen: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []

    async def where(params: int, ctx: jobkit.Context) -> int:
        seen.append((asyncio.get_running_loop(), threading.current_thread()))
        return params

    async def caller() -> tuple[asyncio.AbstractEventLoop, jobkit.JobResult[int]]:
        return asyncio.get_running_loop(), await _spec(where).now_async(5)

    loop, result = run(caller())
    assert result.value == 5
    [(handler_loop, thread)] = seen
    assert handler_loop is not loop
    assert thread is not threading.main_thread()


def test_now_async_keeps_an_async_handlers_timeout() -> None:
    async def forever(params: int, ctx: jobkit.Context) -> int:
        await asyncio.Event().wait()
        return params

    slow = _spec(forever, timeout=0.05)
    store = jobkit.MemoryStore()
    result = run(slow.now_async(1, store))
    same_result(result, slow.now(1, store))
    assert result.status is FAILED
    assert result.error is not None
    assert "ran past its timeout of 0.05s" in result.error


# -- the same refusals, and nothing written ---------------------------------------------------------
LATER_REFUSALS: list[tuple[Any, dict[str, Any], type[Exception]]] = [
    ({"url": "a", "width": "wide"}, {}, jobkit.ValidationError),
    ({"url": "a", "height": 3}, {}, jobkit.ValidationError),
    ({"url": "a"}, {"delay": -1}, jobkit.ValidationError),
    ({"url": "a"}, {"at": datetime(2030, 1, 1)}, jobkit.ValidationError),
    ({"url": "a"}, {"at": datetime(2030, 1, 1, tzinfo=timezone.utc), "delay": 5}, jobkit.ValidationError),
    ({"url": "a"}, {"max_attempts": 0}, jobkit.ValidationError),
    ({"url": "a"}, {"priority": "high"}, jobkit.ValidationError),
    ({"url": "a"}, {"correlation_id": 7}, jobkit.ValidationError),
    ({"url": "a"}, {"no_such_option": 1}, TypeError),
]


def refusal(call: Callable[[], Any]) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as caught:  # any type: the caller compares it with the sync form's
        call()
    return caught.type, str(caught.value)


@pytest.mark.parametrize(("params", "options", "kind"), LATER_REFUSALS)
def test_later_async_refuses_what_later_refuses_and_writes_nothing(
    store: Store, params: Any, options: dict[str, Any], kind: type[Exception]
) -> None:
    sync = refusal(lambda: resize.later(params, store, **options))
    asynchronous = refusal(lambda: run(resize.later_async(params, store, **options)))
    assert asynchronous == sync
    assert issubclass(asynchronous[0], kind)
    many = refusal(lambda: run(resize.later_many_async([{"url": "ok"}, params], store, **options)))
    assert many == refusal(lambda: resize.later_many([{"url": "ok"}, params], store, **options))
    assert issubclass(many[0], kind)
    assert _count(store) == 0


def test_later_many_async_names_the_bad_params_and_writes_none_of_them(store: Store) -> None:
    kind, message = refusal(lambda: run(double.later_many_async([1, "two", 3], store)))
    assert kind is jobkit.ValidationError
    assert "params[1]" in message
    assert _count(store) == 0


@pytest.mark.parametrize("call", ["later_async", "later_many_async"])
def test_a_connection_on_a_store_that_cannot_take_one_is_the_same_type_error(call: str) -> None:
    store = jobkit.MemoryStore()
    params: Any = [1] if call == "later_many_async" else 1
    sync = refusal(lambda: getattr(double, call.removesuffix("_async"))(params, store, connection=object()))
    asynchronous = refusal(lambda: run(getattr(double, call)(params, store, connection=object())))
    assert asynchronous == sync
    assert asynchronous[0] is TypeError
    assert _count(store) == 0


@pytest.mark.parametrize("spec", [resize, sleepy], ids=["sync", "async"])
def test_now_async_refuses_bad_params_as_now_does_and_writes_nothing(
    store: Store, spec: jobkit.JobSpec[Any, Any]
) -> None:
    bad: Any = {"url": 3}
    sync = refusal(lambda: spec.now(bad, store))
    asynchronous = refusal(lambda: run(spec.now_async(bad, store)))
    assert asynchronous == sync
    assert asynchronous[0] is jobkit.ValidationError
    assert refusal(lambda: run(spec.now_async(bad))) == refusal(lambda: spec.now(bad))
    assert _count(store) == 0


# -- the loop runs while the store writes --------------------------------------------------------
class HeldAdd:
    """A MemoryStore whose ``add`` waits in its caller's thread until the test lets it go.

    Were ``add`` called on the loop, the loop could not see it begin nor let it go: the
    wait would end at its deadline with an error, not hang.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = jobkit.MemoryStore()
        self.loop = loop
        self.adding = asyncio.Event()  # set on the loop once add has begun
        self.go = threading.Event()

    def add(self, jobs: Sequence[JobRecord]) -> list[str]:
        self.loop.call_soon_threadsafe(self.adding.set)
        if not self.go.wait(TIMEOUT):
            raise AssertionError("add was never let go: the event loop did not run while it waited")
        return self.inner.add(jobs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _later(store: Any) -> list[str]:
    return [await double.later_async(1, store)]


async def _later_many(store: Any) -> list[str]:
    return await double.later_many_async([1, 2], store)


async def _now_sync_handler(store: Any) -> list[str]:
    return [(await double.now_async(1, store)).job_id]


async def _now_async_handler(store: Any) -> list[str]:
    return [(await sleepy.now_async(1, store)).job_id]


CALLS = {
    "later_async": _later,
    "later_many_async": _later_many,
    "now_async, sync handler": _now_sync_handler,
    "now_async, async handler": _now_async_handler,
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_the_loop_runs_while_the_store_write_waits(call: Callable[[Any], Awaitable[list[str]]]) -> None:
    async def scene() -> tuple[HeldAdd, list[str]]:
        store = HeldAdd(asyncio.get_running_loop())
        pending = asyncio.ensure_future(call(store))
        await asyncio.wait_for(store.adding.wait(), TIMEOUT)  # only a loop that runs gets here
        assert not pending.done()
        assert _count(store.inner) == 0
        store.go.set()
        return store, await asyncio.wait_for(pending, TIMEOUT)

    store, ids = run(scene(), timeout=3 * TIMEOUT)
    assert ids
    assert all(store.inner.get(job_id) is not None for job_id in ids)
    assert _count(store.inner) == len(ids)


# -- many at once ---------------------------------------------------------------------------------
def test_fifty_concurrent_later_async_calls_all_land(store: Store) -> None:
    async def fifty() -> list[str]:
        tasks = [asyncio.create_task(double.later_async(i, store, correlation_id=f"n{i}")) for i in range(50)]
        return await asyncio.gather(*tasks)

    ids = run(fifty(), timeout=6 * TIMEOUT)
    assert len(set(ids)) == 50
    records = [store.get(job_id) for job_id in ids]
    assert [json.loads(r.params) for r in records if r] == list(range(50))
    assert [r.correlation_id for r in records if r] == [f"n{i}" for i in range(50)]
    assert _count(store) == 50


def test_concurrent_later_many_async_and_now_async_calls_all_land(store: Store) -> None:
    async def mixed() -> tuple[list[list[str]], list[jobkit.JobResult[int]]]:
        batches = asyncio.gather(*(double.later_many_async([i, i + 100], store) for i in range(10)))
        runs = asyncio.gather(*(spec.now_async(i, store) for i in range(10) for spec in (double, sleepy)))
        return await asyncio.gather(batches, runs)

    batches, results = run(mixed(), timeout=6 * TIMEOUT)
    assert all(len(ids) == 2 for ids in batches)
    assert [r.value for r in results] == [v for i in range(10) for v in (i * 2, i + 1)]
    assert all(r.status is COMPLETED for r in results)
    assert _count(store) == 40
