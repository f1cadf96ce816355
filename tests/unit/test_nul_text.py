"""U+0000 on every store: PostgreSQL's text cannot hold it, so no store is given one.

Text that is read, not decoded back (an error, a traceback, a progress message) has
each NUL written as the four characters ``\\x00``, through :func:`codec.storable_text`,
the one rule that makes such text storable. Raw text fields a caller gives (a
correlation id, a job or schedule name) are refused with a ValidationError naming the
field, before anything is written. Params and results are JSON, which writes a NUL as
the escape ``\\u0000`` and reads it back.
"""

from __future__ import annotations

from typing import Any

import pytest

import jobkit
from jobkit import codec, recurring
from jobkit.model import Failed, Stopped, Succeeded
from jobkit.stages import storable
from jobkit.store import Store
from tests.unit.run_jobs import _count

jobs = jobkit.Registry()
SEEN: list[Any] = []


@jobs.job(name="nul.explode", max_attempts=1)
def explode(params: str, ctx: jobkit.Context) -> None:
    raise RuntimeError(f"bad byte in {params}")


@jobs.job(name="nul.report")
def report(params: str, ctx: jobkit.Context) -> None:
    ctx.progress(50, f"halfway through {params}")


@jobs.job(name="nul.echo")
def echo(params: dict[str, str], ctx: jobkit.Context) -> dict[str, str]:
    SEEN.append(params)
    return params


def test_storable_text_writes_each_nul_as_an_escape_and_leaves_clean_text_as_it_is() -> None:
    assert codec.storable_text("a\x00b\x00") == "a\\x00b\\x00"
    assert codec.storable_text("caf\udce9\x00") == "caf\\udce9\\x00"
    clean = "café ☕ \\x00 stays"
    assert codec.storable_text(clean) is clean


def test_an_outcomes_error_traceback_and_reason_are_made_storable() -> None:
    failed = storable(Failed("RuntimeError: a\x00b", "Traceback\x00\n"))
    assert isinstance(failed, Failed)
    assert (failed.error, failed.traceback) == ("RuntimeError: a\\x00b", "Traceback\\x00\n")
    stopped = storable(Stopped("stop\x00"))
    assert isinstance(stopped, Stopped) and stopped.reason == "stop\\x00"
    ok = Succeeded(None, "null")
    assert storable(ok) is ok


def test_a_failure_whose_message_holds_a_nul_is_stored_with_it_escaped(store: Store) -> None:
    result = explode.now("a\x00b", store)
    assert not result.ok
    stored = store.get(result.job_id)
    assert stored is not None and stored.error is not None and stored.traceback is not None
    assert stored.error == "RuntimeError: bad byte in a\\x00b"
    assert "\x00" not in stored.traceback and "a\\x00b" in stored.traceback


def test_a_progress_message_that_holds_a_nul_is_stored_with_it_escaped(store: Store) -> None:
    result = report.now("part\x001", store)
    stored = store.get(result.job_id)
    assert stored is not None and stored.progress_message == "halfway through part\\x001"


def test_params_and_results_keep_their_nuls_through_json(store: Store) -> None:
    SEEN.clear()
    sent = {"k\x00": "v\x00"}
    result = echo.now(sent, store)
    assert [sent] == SEEN and result.value == sent
    stored = store.get(result.job_id)
    assert stored is not None and "\x00" not in stored.params and "\\u0000" in stored.params
    assert echo.result_of(result.job_id, store).value == sent


@pytest.mark.parametrize("many", [False, True], ids=["later", "later_many"])
def test_a_correlation_id_with_a_nul_is_refused_naming_it(store: Store, many: bool) -> None:
    with pytest.raises(jobkit.ValidationError, match=r"^correlation_id holds a NUL character") as refused:
        if many:
            echo.later_many([{}, {}], store, correlation_id="order\x0042")
        else:
            echo.later({}, store, correlation_id="order\x0042")
    assert refused.value.value == "order\x0042"
    assert _count(store) == 0


def test_a_job_name_with_a_nul_is_refused_when_the_job_is_defined() -> None:
    with pytest.raises(jobkit.ValidationError, match=r"^job name holds a NUL character"):
        jobkit.Registry().job(name="shop\x00resize")(lambda params, ctx: None)
    assert "shop\x00resize" not in jobs


def test_a_schedule_name_with_a_nul_is_refused_naming_it(store: Store) -> None:
    with pytest.raises(jobkit.ValidationError, match=r"^schedule name holds a NUL character"):
        recurring.schedule(store, echo, "* * * * *", {}, name="every\x00minute")
    with pytest.raises(jobkit.ValidationError, match=r"^schedule name holds a NUL character"):
        jobkit.Registry().cron("* * * * *", echo, {}, name="every\x00minute")
    assert store.list_schedules() == []
