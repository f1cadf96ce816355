"""Jobs that tests/chaos/test_control_processes.py runs in worker processes (``--jobs tests.chaos.control_jobs``).

Each leaves lines in the side-effect log of :mod:`tests.chaos.chaos_jobs` (``start``, ``end``,
and ``cancel-seen`` when a handler noticed ``ctx.cancelled``), so the tests can tell what
ran where, and when.
"""

from __future__ import annotations

import os
import time

import attrs

import jobkit
from tests.chaos.chaos_jobs import trace

jobs = jobkit.Registry()

GIVE_UP = 60.0  # seconds: no handler here outlives a test that forgot it


@attrs.frozen
class Spin:
    """Run until cancelled, then ``raise`` Cancelled, ``return`` normally, or ``ignore`` it and keep going."""

    then: str = "raise"


@jobs.job(max_attempts=3, retry_backoff=0)
def spin(params: Spin, ctx: jobkit.Context) -> str:
    trace("start", ctx)
    began = time.monotonic()
    while time.monotonic() - began < GIVE_UP:
        if ctx.cancelled and params.then != "ignore":
            trace("cancel-seen", ctx)
            if params.then == "raise":
                raise jobkit.Cancelled("asked to stop")
            return "stopped early"
        time.sleep(0.01)  # the work itself, done in small steps
    trace("end", ctx)
    return "ran to the end"


@attrs.frozen
class Gated:
    """Add a and b once the file *gate* exists (a negative a fails)."""

    gate: str
    a: int
    b: int = 0


@attrs.frozen
class Sum:
    total: int


@jobs.job(max_attempts=1)
def gated_sum(params: Gated, ctx: jobkit.Context) -> Sum:
    trace("start", ctx)
    began = time.monotonic()
    while not os.path.exists(params.gate):
        if time.monotonic() - began > GIVE_UP:
            raise TimeoutError(f"the gate {params.gate} never opened")
        time.sleep(0.005)  # polling for the gate file, which the test creates
    trace("end", ctx)
    if params.a < 0:
        raise ValueError(f"negative: {params.a}")
    return Sum(params.a + params.b)
