"""The stages called directly: decide, validate, check_result, failure."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from jobkit import backoff, stages
from jobkit.model import Cancel, Complete, Fail, Failed, JobRecord, Retry, Stopped, Succeeded
from tests.support import (
    RUNNING,
    T0,
)
from tests.unit.run_jobs import Resize, Resized, _spec, resize


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
