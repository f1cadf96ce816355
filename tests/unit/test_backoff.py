"""backoff.delay: exponential backoff with jitter, immediate retries, callable policies, the cap."""

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobkit import backoff


@pytest.mark.parametrize(
    ("base", "attempt", "expected"),
    [(2.0, 1, 2.0), (2.0, 2, 4.0), (2.0, 3, 8.0), (0.5, 4, 4.0), (10, 1, 10.0), (1.5, 6, 48.0)],
)
def test_middle_jitter_gives_base_times_two_to_the_attempt_minus_one(
    base: float, attempt: int, expected: float
) -> None:
    assert backoff.delay(base, attempt, 0.5) == timedelta(seconds=expected)


def test_jitter_spreads_plus_or_minus_a_quarter() -> None:
    assert backoff.delay(4.0, 1, 0.0) == timedelta(seconds=3.0)
    assert backoff.delay(4.0, 3, 0.0) == timedelta(seconds=12.0)
    # jitter is taken from [0, 1): the top end approaches +25% without reaching it
    assert backoff.delay(4.0, 1, 0.999) < timedelta(seconds=5.0)
    assert backoff.delay(4.0, 1, 0.999) > timedelta(seconds=4.99)


@settings(deadline=None)
@given(
    base=st.floats(min_value=0.001, max_value=3_600),
    attempt=st.integers(min_value=1, max_value=12),
    jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_delay_stays_within_a_quarter_of_the_exponential_or_at_the_cap(
    base: float, attempt: int, jitter: float
) -> None:
    got = backoff.delay(base, attempt, jitter).total_seconds()
    nominal = base * 2 ** (attempt - 1)
    cap = backoff.MAX_DELAY.total_seconds()
    assert got <= cap
    if nominal * 0.75 < cap:
        assert nominal * 0.75 - 1e-6 <= got <= min(nominal * 1.25, cap) + 1e-6


def test_later_attempts_never_wait_less_with_the_same_jitter() -> None:
    waits = [backoff.delay(1.0, attempt, 0.3) for attempt in range(1, 30)]
    assert waits == sorted(waits)


@pytest.mark.parametrize("base", [0, 0.0, -1.0])
@pytest.mark.parametrize("attempt", [1, 2, 10])
def test_zero_base_retries_at_once(base: float, attempt: int) -> None:
    assert backoff.delay(base, attempt, 0.9) == timedelta(0)


def test_exponential_is_capped_at_a_day() -> None:
    assert timedelta(days=1) == backoff.MAX_DELAY
    assert backoff.delay(2.0, 40, 0.5) == backoff.MAX_DELAY
    assert backoff.delay(2.0, 10_000, 0.99) == backoff.MAX_DELAY
    assert backoff.delay(1e300, 33, 0.5) == backoff.MAX_DELAY  # overflows a float before the cap


def test_callable_policy_gets_the_attempt_number_and_is_used_as_given() -> None:
    seen: list[int] = []

    def policy(attempt: int) -> float:
        seen.append(attempt)
        return attempt * 7.5

    assert backoff.delay(policy, 1, 0.0) == timedelta(seconds=7.5)
    assert backoff.delay(policy, 4, 0.99) == timedelta(seconds=30)  # no jitter applied to a policy's answer
    assert seen == [1, 4]


def test_callable_policy_negative_answer_means_at_once() -> None:
    assert backoff.delay(lambda attempt: -5, 2, 0.5) == timedelta(0)


@pytest.mark.parametrize("answer", [math.inf, math.nan, 1e30, 86_400 * 2])
def test_callable_policy_is_capped_and_never_raises(answer: float) -> None:
    # decide() calls this while recording an outcome: raising there would strand a running job.
    assert backoff.delay(lambda attempt: answer, 1, 0.5) == backoff.MAX_DELAY
