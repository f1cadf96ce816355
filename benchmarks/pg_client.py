"""The enqueuing side of the PostgreSQL benchmarks, in a fresh process: ``python -m benchmarks.pg_client``.

Roles, as in :mod:`benchmarks.client` (each prints one JSON object on its last line):

- ``setup``: creates the side's tables in a fresh database; ``{}``.
- ``enqueue``: N jobs, one call (one transaction) each; ``{"seconds": ...}``.
- ``bulk``, ``fill``: N jobs in chunks of ``--chunk``, one call per chunk; ``{"seconds": ...}``.
- ``threads`` (jobkit, raw): N jobs one by one from ``--producers`` threads at once, jobkit's
  sharing one store (its pool), raw's each a connection of its own; ``{"seconds": ...}``.
- ``tasks`` (jobkit): the same from ``--producers`` asyncio tasks with ``later_async``.
- ``latency``: runs one job to warm up, waits at the barrier, then ``--n`` stamp jobs one
  at a time, each awaited with the side's own way of waiting before the next;
  ``{"latencies": [...], "seen": [...]}``: the handler's start minus the time just before
  it was enqueued, and the time the wait returned minus the handler's end (seconds).

How each side waits: jobkit with ``jobkit.wait()`` (the stamp job's result is its start
time; a no-op's end is microseconds later, so it is used as the end too), pgqueuer with
its ``CompletionWatcher``, procrastinate by polling the job's status every millisecond.
pgqueuer's and procrastinate's handlers send their times over local UDP
(:mod:`benchmarks.stamps`). The raw loop has no latency role: it has no idle worker.
``--queues a,b,c`` (jobkit only) spreads the jobs over those queues, as in :mod:`benchmarks.client`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from benchmarks import pg_raw, processes, stamps
from benchmarks.client import chunks, enqueue_in_threads, queue_names, round_robin, shares

LATENCY_TIMEOUT = 30.0  # seconds one latency job may take before the run is abandoned


class Queue(Protocol):
    """What the benchmarks do with a PostgreSQL job queue, whatever it is."""

    async def enqueue(self, n: int) -> None:
        """Enqueue one no-op job in a transaction of its own."""

    async def enqueue_many(self, numbers: Sequence[int]) -> None:
        """Enqueue many no-op jobs with the side's bulk call."""

    async def stamp(self, n: int) -> tuple[float, float, float]:
        """Enqueue a stamp job, wait for it as the side does; (handler start, handler end, seen)."""

    async def close(self) -> None:
        """Release the connections."""


class JobkitQueue:
    """jobkit through its public API: ``open_store(url)``, ``later``, ``later_many``, ``wait``.

    With *queues*, jobs go to them round-robin (none: the default queue).
    """

    def __init__(self, url: str, queues: Sequence[str] = ()) -> None:
        import jobkit
        from benchmarks import jobkit_jobs

        self.jobkit = jobkit
        self.jobs = jobkit_jobs
        self.queues = tuple(queues)
        self.store = jobkit.open_store(url)

    async def enqueue(self, n: int) -> None:
        if not self.queues:
            self.jobs.noop.later(n, self.store)
            return
        self.jobs.noop.later(n, self.store, queue=self.queues[n % len(self.queues)])

    async def enqueue_many(self, numbers: Sequence[int]) -> None:
        if not self.queues:
            self.jobs.noop.later_many(list(numbers), self.store)
            return
        for queue, share in round_robin(numbers, self.queues):
            self.jobs.noop.later_many(share, self.store, queue=queue)

    async def stamp(self, n: int) -> tuple[float, float, float]:
        job_id = self.jobs.stamp.later(n, self.store)
        result = self.jobkit.wait(self.store, job_id, LATENCY_TIMEOUT)
        seen = time.time()
        start = float(result.unwrap())
        return start, start, seen

    async def close(self) -> None:
        self.store.close()


class RawQueue:
    """The raw psycopg queue of :mod:`benchmarks.pg_raw`."""

    def __init__(self, url: str) -> None:
        self.conn = pg_raw.connect(url)

    async def enqueue(self, n: int) -> None:
        pg_raw.enqueue(self.conn, n)

    async def enqueue_many(self, numbers: Sequence[int]) -> None:
        pg_raw.enqueue_many(self.conn, numbers)

    async def stamp(self, n: int) -> tuple[float, float, float]:
        raise SystemExit("the raw queue has no latency role")

    async def close(self) -> None:
        self.conn.close()


class StampedQueue:
    """A peer whose handlers send their times over UDP: its waits, timed with the stamps."""

    def __init__(self, peer: Any, receiver: stamps.Receiver | None) -> None:
        self.peer = peer
        self.receiver = receiver

    async def enqueue(self, n: int) -> None:
        await self.peer.enqueue(n)

    async def enqueue_many(self, numbers: Sequence[int]) -> None:
        await self.peer.enqueue_many(numbers)

    async def stamp(self, n: int) -> tuple[float, float, float]:
        if self.receiver is None:
            raise SystemExit("--stamp-port is needed for the latency role")
        await asyncio.wait_for(self.peer.stamp(n), LATENCY_TIMEOUT)
        seen = time.time()
        start, end = self.receiver.take(n, LATENCY_TIMEOUT)
        return start, end, seen

    async def close(self) -> None:
        await self.peer.close()
        if self.receiver is not None:
            self.receiver.close()


async def open_queue(side: str, url: str, stamp_port: int | None, queues: Sequence[str] = ()) -> Queue:
    """The queue of *side* on the database at *url* (*queues*: jobkit's, round-robin)."""
    if queues and side != "jobkit":
        raise SystemExit(f"--queues is for jobkit, not {side}")
    receiver = None if stamp_port is None else stamps.Receiver(stamp_port)
    if side == "jobkit":
        return JobkitQueue(url, queues)
    if side == "raw":
        return RawQueue(url)
    if side == "pgqueuer":
        from benchmarks.pg_pgqueuer import PgqueuerQueue

        return StampedQueue(await PgqueuerQueue.open(url, watch=receiver is not None), receiver)
    from benchmarks.pg_procrastinate import ProcrastinateQueue  # reads its URL from the environment

    return StampedQueue(await ProcrastinateQueue.open(), receiver)


async def enqueue_each(queue: Queue, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    for i in range(n):
        await queue.enqueue(i)
    return {"seconds": time.perf_counter() - started}


async def enqueue_chunks(queue: Queue, n: int, chunk: int) -> dict[str, Any]:
    started = time.perf_counter()
    for numbers in chunks(n, chunk):
        await queue.enqueue_many(numbers)
    return {"seconds": time.perf_counter() - started}


async def one_latency(queue: Queue, n: int) -> tuple[float, float]:
    """(handler start - enqueue time, seen - handler end) for one stamp job."""
    before = time.time()
    start, end, seen = await queue.stamp(n)
    return start - before, seen - end


async def latencies(queue: Queue, n: int) -> dict[str, Any]:
    await one_latency(queue, -1)  # the worker is up and has run a job
    await asyncio.get_running_loop().run_in_executor(None, wait_at_barrier)
    measured = [await one_latency(queue, i) for i in range(n)]
    return {"latencies": [start for start, _ in measured], "seen": [seen for _, seen in measured]}


def threads_role(side: str, url: str, n: int, producers: int) -> dict[str, Any]:
    """:func:`benchmarks.client.enqueue_in_threads` on PostgreSQL: jobkit's producers share a store, raw's do not."""
    if side == "jobkit":
        queue: Any = JobkitQueue(url)
        enqueue: Any = lambda i: queue.jobs.noop.later(i, queue.store)  # noqa: E731
    elif side == "raw":
        local, opened = threading.local(), []

        def enqueue(i: int) -> None:
            if not hasattr(local, "conn"):
                local.conn = pg_raw.connect(url)
                opened.append(local.conn)
            pg_raw.enqueue(local.conn, i)
    else:
        raise SystemExit(f"the threads role is for jobkit and raw, not {side}")
    try:
        return enqueue_in_threads(_Calls(enqueue), n, producers)
    finally:
        if side == "jobkit":
            queue.store.close()
        else:
            for conn in opened:
                conn.close()


class _Calls:
    """A sync ``enqueue(n)`` as :func:`benchmarks.client.enqueue_in_threads` takes it."""

    def __init__(self, enqueue: Any) -> None:
        self.enqueue = enqueue


async def tasks_role(url: str, n: int, producers: int) -> dict[str, Any]:
    queue = JobkitQueue(url)

    async def produce(numbers: range) -> None:
        for i in numbers:
            await queue.jobs.noop.later_async(i, queue.store)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(produce(share) for share in shares(n, producers)))
        return {"seconds": time.perf_counter() - started}
    finally:
        queue.store.close()


def wait_at_barrier() -> None:
    """Say ``ready``, then block until the parent says ``go``."""
    print(processes.READY, flush=True)
    line = sys.stdin.readline().strip()
    if line != processes.GO:
        raise SystemExit(f"expected {processes.GO!r} on stdin, got {line!r}")


async def install(side: str, url: str) -> None:
    """Create *side*'s tables in a fresh database, as the side documents it."""
    if side == "pgqueuer":
        from benchmarks import pg_pgqueuer

        await pg_pgqueuer.install(url)
    elif side == "procrastinate":
        from benchmarks import pg_procrastinate

        await pg_procrastinate.install()
    else:  # jobkit's store and the raw queue create their tables when they open
        queue = await open_queue(side, url, None)
        await queue.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.role == "setup":
        await install(args.side, args.url)
        return {}
    if args.role == "threads":
        return await asyncio.to_thread(threads_role, args.side, args.url, args.n, args.producers)
    if args.role == "tasks":
        return await tasks_role(args.url, args.n, args.producers)
    queue = await open_queue(args.side, args.url, args.stamp_port, args.queues)
    try:
        match args.role:
            case "enqueue":
                return await enqueue_each(queue, args.n)
            case "bulk" | "fill":
                return await enqueue_chunks(queue, args.n, args.chunk)
            case _:
                return await latencies(queue, args.n)
    finally:
        await queue.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_client", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("setup", "enqueue", "bulk", "fill", "latency", "threads", "tasks"))
    parser.add_argument("side", choices=("jobkit", "raw", "pgqueuer", "procrastinate"))
    parser.add_argument("url", help="postgresql:// URL of the side's database")
    parser.add_argument("--n", type=int, default=0, help="how many jobs")
    parser.add_argument("--chunk", type=int, default=1000, help="jobs per call for bulk and fill")
    parser.add_argument("--stamp-port", type=int, default=None, help="local UDP port the peers' handlers stamp to")
    parser.add_argument("--queues", type=queue_names, default=[], help="jobkit: spread the jobs over these, a,b,c")
    parser.add_argument("--producers", type=int, default=8, help="threads or tasks enqueuing at once (threads, tasks)")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
