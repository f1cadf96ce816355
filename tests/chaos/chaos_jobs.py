"""Jobs that the chaos tests' worker processes import: each leaves a trace in a side-effect log.

Every run appends ``start`` and ``end`` lines (job id, pid, attempt, wall time) to the file
named by the ``CHAOS_LOG`` environment variable, one ``os.write`` each on an ``O_APPEND``
descriptor, so lines from many processes never interleave. The tests hold that log
against the database to see which process ran what, when, and how often.
"""

from __future__ import annotations

import os
import random
import sys
import time

import attrs

import jobkit

jobs = jobkit.Registry()

LOG_ENV = "CHAOS_LOG"


@attrs.frozen
class Trace:
    """One line of the side-effect log."""

    event: str
    job_id: str
    pid: int
    attempt: int
    at: float

    @classmethod
    def parse(cls, line: str) -> Trace:
        event, job_id, pid, attempt, at = line.split()
        return cls(event, job_id, int(pid), int(attempt), float(at))


def trace(event: str, ctx: jobkit.Context) -> None:
    """Append one line to the side-effect log, atomically with respect to other processes."""
    line = f"{event} {ctx.job_id} {os.getpid()} {ctx.attempt} {time.time():.6f}\n"
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_traces(path: str | os.PathLike[str]) -> list[Trace]:
    """Every line of the side-effect log, in the order they were appended."""
    try:
        with open(path, encoding="ascii") as f:
            return [Trace.parse(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


@attrs.frozen
class Nap:
    """Work for ``seconds[attempt - 1]`` seconds (the last entry for later attempts)."""

    seconds: list[float]


@attrs.frozen
class Ran:
    """Who ran the attempt that returned: the value a stale worker must not write."""

    pid: int
    attempt: int


@jobs.job(max_attempts=10, retry_backoff=0)
def nap(params: Nap, ctx: jobkit.Context) -> Ran:
    """Stand in for real work: busy for a while, reporting progress, ignoring cancellation."""
    trace("start", ctx)
    duration = params.seconds[min(ctx.attempt, len(params.seconds)) - 1]
    began = time.monotonic()
    while (spent := time.monotonic() - began) < duration:
        ctx.progress(100 * spent / duration, f"attempt {ctx.attempt} of pid {os.getpid()}")
        time.sleep(min(0.05, duration - spent))  # the work itself, not a wait for a condition
    trace("end", ctx)
    return Ran(pid=os.getpid(), attempt=ctx.attempt)


@jobs.job(max_attempts=1, timeout=0.5)
def stuck(params: Nap, ctx: jobkit.Context) -> Ran:
    """A handler that overruns its timeout and never looks at ``ctx.cancelled``."""
    return nap.fn(params, ctx)  # type: ignore[no-any-return]


@attrs.frozen
class Crash:
    code: int = 3


@jobs.job(max_attempts=2, retry_backoff=0)
def crash(params: Crash, ctx: jobkit.Context) -> None:
    """Kill the worker process that runs it, as a segfaulting extension would."""
    trace("start", ctx)
    os._exit(params.code)


def enqueue_main(argv: list[str]) -> None:
    """``enqueue DB COUNT SECONDS``: add COUNT nap jobs one by one and in small batches, as a busy app would.

    Prints each new job id on its own line, after the transaction that added it, and
    ``done TIME`` (wall time) on stderr at the end.
    """
    database, count, seconds = argv[0], int(argv[1]), float(argv[2])
    with jobkit.SqliteStore(database, create=False) as store:
        added = 0
        while added < count:
            if added % 3 == 0:
                ids = [nap.later(Nap([seconds]), store)]
            else:
                ids = nap.later_many([Nap([seconds])] * min(4, count - added), store)
            added += len(ids)
            sys.stdout.write("".join(f"{job_id}\n" for job_id in ids))
            sys.stdout.flush()
            time.sleep(random.uniform(0, 0.004))  # requests arrive apart, not in one tight loop
    print("done", time.time(), file=sys.stderr)
