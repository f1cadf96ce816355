"""Jobs for workers started with ``--isolation process``: handlers that stall, overrun or die.

Each leaves ``start`` (and, when it returns, ``end``) lines in the side-effect log of
:mod:`tests.chaos.chaos_jobs`, with the pid of the process that ran it: the child's.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import attrs

import jobkit
from tests.chaos.chaos_jobs import trace

jobs = jobkit.Registry()


@attrs.frozen
class Hold:
    """Hold the GIL for ``seconds`` (a C call that never lets go), ``attempts`` times."""

    seconds: float


def hold_gil(seconds: float) -> None:
    """Sleep in C with the GIL held, as a long regex or a stubborn extension does.

    ``ctypes.PyDLL`` calls keep the GIL (``CDLL`` calls let it go): every other thread of
    the process, the worker's loop and heartbeats among them, stands still meanwhile.
    """
    ctypes.PyDLL(None).usleep(int(seconds * 1_000_000))


@jobs.job(max_attempts=3, retry_backoff=0)
def stall(params: Hold, ctx: jobkit.Context) -> int:
    trace("start", ctx)
    hold_gil(params.seconds)
    trace("end", ctx)
    return os.getpid()


@jobs.job(max_attempts=1, timeout=1.0)
def overrun(params: Hold, ctx: jobkit.Context) -> int:
    """Holds the GIL past its timeout: it can never look at ``ctx.cancelled`` in time."""
    trace("start", ctx)
    hold_gil(params.seconds)
    trace("end", ctx)
    return os.getpid()


@attrs.frozen
class Gate:
    """A file that, once it exists, lets the job end (the test creates it)."""

    path: str


@jobs.job(max_attempts=2, retry_backoff=0)
def wait_for_gate(params: Gate, ctx: jobkit.Context) -> int:
    """Report progress, then wait for the gate on attempt 1; return at once on later attempts."""
    trace("start", ctx)
    ctx.progress(40, f"waiting in pid {os.getpid()}")
    while ctx.attempt == 1 and not Path(params.path).exists():
        time.sleep(0.01)  # the work itself: a handler polling for its input
    trace("end", ctx)
    return os.getpid()


@jobs.job(max_attempts=2, retry_backoff=0)
def segfault(params: int, ctx: jobkit.Context) -> int:
    """Crash its process on attempt 1 (a read of address 0, as a broken extension does); succeed after."""
    trace("start", ctx)
    if ctx.attempt == 1:
        ctypes.string_at(0)
    trace("end", ctx)
    return os.getpid()


@jobs.job(max_attempts=1)
def until_cancelled(params: int, ctx: jobkit.Context) -> int:
    """A cooperative handler: looks at ``ctx.cancelled`` and stops when asked."""
    trace("start", ctx)
    while not ctx.cancelled:
        time.sleep(0.01)  # the work itself, between looks at ctx.cancelled
    raise jobkit.Cancelled("stopped as asked")


@jobs.job(max_attempts=1)
def quick(params: int, ctx: jobkit.Context) -> int:
    """Which process ran it."""
    trace("start", ctx)
    return os.getpid()
