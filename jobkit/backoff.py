"""Retry arithmetic: how long to wait before the next attempt. Pure."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

Backoff = float | Callable[[int], float]
"""A base delay in seconds for exponential backoff, or a function ``attempt -> seconds``."""

MAX_DELAY = timedelta(days=1)
JITTER = 0.25


def delay(backoff: Backoff, attempt: int, jitter: float) -> timedelta:
    """The wait after failed attempt number *attempt* (1 for the first).

    A number is the base of an exponential backoff, ``base * 2**(attempt-1)``, spread by
    ±25% according to *jitter* (a number in [0, 1)) so that jobs that failed together do
    not retry together. A callable's answer is used as it is, except that a negative answer
    means at once. Every delay is capped at :data:`MAX_DELAY`; a non-finite one (a policy
    returning infinity or NaN) waits that long too rather than raising, because this runs
    while the outcome of an attempt is being recorded.
    """
    if callable(backoff):
        return _bounded(float(backoff(attempt)))
    if backoff <= 0:
        return timedelta(0)
    exponent = min(attempt - 1, 32)
    base = backoff * 2**exponent
    spread = 1 - JITTER + 2 * JITTER * jitter
    return _bounded(base * spread)


def _bounded(seconds: float) -> timedelta:
    """*seconds* as a timedelta within [0, MAX_DELAY]; NaN counts as too long."""
    if math.isnan(seconds) or seconds >= MAX_DELAY.total_seconds():
        return MAX_DELAY
    return timedelta(seconds=max(0.0, seconds))
