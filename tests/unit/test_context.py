"""Context: progress (clamped, NaN refused, live in the store), the job's log, cancellation, the clock."""

import logging
import math
import threading
import time
from typing import Any

import pytest

import jobkit
from jobkit import run
from jobkit.store import Store
from tests.support import T0, FakeClock


def _sink() -> tuple[list[tuple[int, str | None]], Any]:
    calls: list[tuple[int, str | None]] = []
    return calls, lambda percent, message: calls.append((percent, message))


# -- progress, unit ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "written"),
    [(0, 0), (42, 42), (42.9, 42), (100, 100), (-5, 0), (-0.5, 0), (150, 100), (math.inf, 100), (-math.inf, 0)],
)
def test_progress_is_clamped_to_0_100(given: float, written: int) -> None:
    calls, sink = _sink()
    ctx = jobkit.Context(job_id="j1", job_name="n", sink=sink)
    ctx.progress(given, "step")
    assert calls == [(written, "step")]
    assert type(calls[0][0]) is int


def test_progress_refuses_nan() -> None:
    calls, sink = _sink()
    ctx = jobkit.Context(job_id="j1", job_name="n", sink=sink)
    with pytest.raises(ValueError, match="progress takes a number from 0 to 100, not NaN"):
        ctx.progress(math.nan)
    assert calls == []


@pytest.mark.parametrize("bad", ["50", None, True, [50]])
def test_progress_refuses_what_is_not_a_number(bad: Any) -> None:
    calls, sink = _sink()
    ctx = jobkit.Context(job_id="j1", job_name="n", sink=sink)
    with pytest.raises(TypeError, match="progress takes a number from 0 to 100"):
        ctx.progress(bad)
    assert calls == []


def test_progress_message_must_be_text() -> None:
    calls, sink = _sink()
    ctx = jobkit.Context(job_id="j1", job_name="n", sink=sink)
    with pytest.raises(TypeError, match="a progress message must be a str, not int"):
        ctx.progress(5, 7)  # type: ignore[arg-type]
    ctx.progress(5)
    assert calls == [(5, None)]


def test_progress_without_a_sink_is_a_no_op_but_still_checks() -> None:
    ctx = jobkit.Context(job_id="j1", job_name="n")
    ctx.progress(50, "halfway")  # nothing to write to, nothing raised
    with pytest.raises(ValueError):
        ctx.progress(math.nan)


# -- progress, through a store -------------------------------------------------------------
def _job(fn: Any, name: str = "ctx", **options: Any) -> jobkit.JobSpec[Any, Any]:
    return jobkit.Registry().job(name=name, **options)(fn)


def test_progress_is_visible_in_the_store_while_the_job_runs(store: Store) -> None:
    def handler(params: int, ctx: jobkit.Context) -> list[Any]:
        ctx.progress(params, "reading")
        assert ctx.store is store
        record = store.get(ctx.job_id)
        assert record is not None
        return [record.status.value, record.progress, record.progress_message]

    result = _job(handler).now(37, store=store)
    assert result.unwrap() == ["running", 37, "reading"]
    record = store.get(result.job_id)
    assert record is not None
    assert (record.status, record.progress) == (jobkit.JobStatus.COMPLETED, 100)


@pytest.mark.parametrize(("given", "stored"), [(150, 100), (-5, 0)])
def test_progress_is_clamped_in_the_store(store: Store, given: float, stored: int) -> None:
    def handler(params: float, ctx: jobkit.Context) -> list[Any]:
        ctx.progress(params, "clamped")
        record = store.get(ctx.job_id)
        assert record is not None
        return [record.progress, record.progress_message]

    assert _job(handler).now(given, store=store).unwrap() == [stored, "clamped"]


def test_a_quick_second_progress_update_reaches_the_store_while_the_job_runs(store: Store) -> None:
    def handler(params: int, ctx: jobkit.Context) -> bool:
        ctx.progress(10, "started")
        ctx.progress(60, "more than half")
        deadline = time.monotonic() + 1.0
        pause = threading.Event()
        while time.monotonic() < deadline:
            record = store.get(ctx.job_id)
            if record is not None and record.progress == 60:
                return record.progress_message == "more than half"
            pause.wait(0.01)
        return False

    assert _job(handler).now(0, store=store).unwrap() is True


def test_nan_progress_fails_the_job_with_the_reason(store: Store) -> None:
    def handler(params: int, ctx: jobkit.Context) -> int:
        ctx.progress(math.nan)
        return 1

    result = _job(handler).now(0, store=store)
    assert not result.ok
    assert result.error == "ValueError: progress takes a number from 0 to 100, not NaN"


def test_progress_is_a_no_op_when_the_run_is_not_persisted() -> None:
    def handler(params: int, ctx: jobkit.Context) -> str:
        assert ctx.store is None
        ctx.progress(50, "halfway")
        ctx.progress(500)
        return "done"

    assert _job(handler).now(1).unwrap() == "done"


# -- identity, log, clock --------------------------------------------------------------------
def test_log_carries_the_job_id_and_name(caplog: pytest.LogCaptureFixture) -> None:
    ctx = jobkit.Context(job_id="0190-abc", job_name="shop.tasks:resize")
    assert isinstance(ctx.log, logging.LoggerAdapter)
    with caplog.at_level(logging.INFO, logger="jobkit"):
        ctx.log.info("resizing %s", "a.png")
    (record,) = caplog.records
    assert record.job_id == "0190-abc"  # type: ignore[attr-defined]
    assert record.job_name == "shop.tasks:resize"  # type: ignore[attr-defined]
    assert record.getMessage() == "[shop.tasks:resize 0190-abc] resizing a.png"


def test_log_keeps_the_callers_extra(caplog: pytest.LogCaptureFixture) -> None:
    ctx = jobkit.Context(job_id="j9", job_name="n")
    with caplog.at_level(logging.INFO, logger="jobkit"):
        ctx.log.info("x", extra={"order": 7})
    (record,) = caplog.records
    assert (record.order, record.job_id) == (7, "j9")  # type: ignore[attr-defined]


def test_log_inside_a_running_job_names_that_job(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    def handler(params: str, ctx: jobkit.Context) -> str:
        ctx.log.warning("working on %s", params)
        return ctx.job_id

    with caplog.at_level(logging.INFO, logger="jobkit.job"):
        result = _job(handler, name="logs").now("a.png", store=store)
    records = [r for r in caplog.records if r.name == "jobkit.job"]
    assert [r.job_id for r in records] == [result.job_id]  # type: ignore[attr-defined]
    assert result.unwrap() == result.job_id
    assert records[0].getMessage() == f"[logs {result.job_id}] working on a.png"


def test_identity_attempt_store_and_clock(store: Store, clock: FakeClock) -> None:
    seen: dict[str, Any] = {}

    def handler(params: int, ctx: jobkit.Context) -> int:
        seen.update(id=ctx.job_id, name=ctx.job_name, attempt=ctx.attempt, store=ctx.store, now=ctx.now())
        return 1

    spec = _job(handler, name="who")
    result = run.run_now(spec, 1, store, clock=clock)
    assert seen == {"id": result.job_id, "name": "who", "attempt": 1, "store": store, "now": T0}
    assert repr(jobkit.Context(job_id="j", job_name="n", attempt=2)) == "Context(job_id='j', job_name='n', attempt=2)"


# -- cancellation ---------------------------------------------------------------------------
def test_not_cancelled_without_timeout_or_request() -> None:
    ctx = jobkit.Context(job_id="j", job_name="n")
    assert not ctx.cancelled
    assert not ctx.timed_out


def test_cancel_request_sets_cancelled_but_not_timed_out() -> None:
    event = threading.Event()
    ctx = jobkit.Context(job_id="j", job_name="n", cancel=event, timeout=3600)
    assert not ctx.cancelled
    event.set()
    assert ctx.cancelled
    assert not ctx.timed_out


def test_timeout_turns_cancelled_on() -> None:
    ctx = jobkit.Context(job_id="j", job_name="n", timeout=0.01)
    deadline = time.monotonic() + 5
    while not ctx.cancelled:
        assert time.monotonic() < deadline, "ctx.cancelled never turned on after the timeout"
    assert ctx.timed_out
    assert ctx.cancelled  # stays on


def test_long_timeout_is_not_cancelled_yet() -> None:
    ctx = jobkit.Context(job_id="j", job_name="n", timeout=3600)
    assert not ctx.cancelled
    assert not ctx.timed_out
