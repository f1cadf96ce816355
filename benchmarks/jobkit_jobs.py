"""The jobs jobkit runs in the benchmarks; workers load them with ``--jobs benchmarks.jobkit_jobs``."""

from __future__ import annotations

import time

import jobkit

jobs = jobkit.Registry()


@jobs.job()
def noop(n: int, ctx: jobkit.Context) -> int:
    """Do nothing; the result is stored like any other."""
    return n


@jobs.job()
def stamp(n: int, ctx: jobkit.Context) -> float:
    """Return the wall-clock time this job started at (for enqueue-to-start latency)."""
    return time.time()


@jobs.job()
def long_step(seconds: float, ctx: jobkit.Context) -> float:
    """Run for *seconds*, reporting progress ten times: the writes a long job makes while it runs."""
    for step in range(10):
        time.sleep(seconds / 10)
        ctx.progress(10 * (step + 1), f"step {step + 1} of 10")
    return seconds
