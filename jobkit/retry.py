"""Retry arithmetic: how long to wait before the next attempt. Pure."""

from __future__ import annotations

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
    not retry together; capped at a day. A callable's answer is used as it is.
    """
    if callable(backoff):
        return timedelta(seconds=max(0.0, float(backoff(attempt))))
    if backoff <= 0:
        return timedelta(0)
    exponent = min(attempt - 1, 32)
    base = backoff * 2**exponent
    spread = 1 - JITTER + 2 * JITTER * jitter
    return min(timedelta(seconds=base * spread), MAX_DELAY)
