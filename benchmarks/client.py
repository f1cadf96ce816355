"""The enqueuing side of the benchmarks, run in a fresh process: ``python -m benchmarks.client``.

Roles (each prints one JSON object on its last line):

- ``enqueue``: N jobs, one call (one transaction) each; ``{"seconds": ...}``.
- ``bulk``: N jobs in chunks of ``--chunk``, one transaction per chunk; ``{"seconds": ...}``.
- ``fill``: N queued jobs for a drain, as fast as the side allows; ``{"seconds": ...}``.
- ``produce``: waits at the barrier, then enqueues N jobs one by one; ``{"seconds": ...}``.
- ``threads``: N jobs one by one from ``--producers`` threads at once (each its share, each
  call a transaction of its own as far as the side knows); ``{"seconds": ...}``.
- ``tasks`` (jobkit only): the same from ``--producers`` asyncio tasks on one event loop,
  with ``later_async``; ``{"seconds": ...}``.
- ``latency``: runs one job to warm up, waits at the barrier, then ``--n`` jobs one at a
  time, each awaited before the next; ``{"latencies": [seconds, ...]}`` where each is the
  job's own start time minus the time just before it was enqueued.

With ``--queues a,b,c`` (jobkit only), job number i goes to the (i mod 3)-th of those
queues: round-robin, one ``later_many`` call per queue for each chunk of bulk and fill.

huey reads its file and settings from the environment (see :mod:`benchmarks.huey_jobs`);
the ``database`` argument must name the same file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from benchmarks import processes, raw

POLL = 0.0005  # seconds between looks for a latency job's result
LATENCY_TIMEOUT = 30.0  # seconds one latency job may take before the run is abandoned


class Queue(Protocol):
    """What the benchmarks do with a job queue, whatever it is."""

    def enqueue(self, n: int) -> None:
        """Enqueue one no-op job, durably (as the side's durability setting defines it)."""

    def enqueue_many(self, numbers: Sequence[int]) -> None:
        """Enqueue many no-op jobs, in one transaction if the side can."""

    def stamp(self, n: int) -> Callable[[], float | None]:
        """Enqueue one job that returns its start time; return a function that polls for it."""

    def close(self) -> None:
        """Release the connection."""


class JobkitQueue:
    """jobkit, through its public API; with *queues*, jobs go to them round-robin (none: the default queue)."""

    def __init__(self, path: str, durability: str, queues: Sequence[str] = ()) -> None:
        import jobkit
        from benchmarks import jobkit_jobs

        self.jobs = jobkit_jobs
        self.queues = tuple(queues)
        self.completed = jobkit.JobStatus.COMPLETED
        self.store = jobkit.SqliteStore(path, durability="normal" if durability == "normal" else "full")

    def enqueue(self, n: int) -> None:
        if not self.queues:
            self.jobs.noop.later(n, self.store)
            return
        self.jobs.noop.later(n, self.store, queue=self.queues[n % len(self.queues)])

    def enqueue_many(self, numbers: Sequence[int]) -> None:
        if not self.queues:
            self.jobs.noop.later_many(list(numbers), self.store)
            return
        for queue, share in round_robin(numbers, self.queues):
            self.jobs.noop.later_many(share, self.store, queue=queue)

    async def enqueue_async(self, n: int) -> None:
        await self.jobs.noop.later_async(n, self.store)

    def stamp(self, n: int) -> Callable[[], float | None]:
        job_id = self.jobs.stamp.later(n, self.store)

        def started_at() -> float | None:
            record = self.store.get(job_id)
            if record is None or record.status is not self.completed:
                return None
            assert record.result is not None
            return float(record.result)

        return started_at

    def close(self) -> None:
        self.store.close()


class HueyQueue:
    """huey's SqliteHuey, calling its tasks as its documentation shows."""

    def __init__(self, path: str) -> None:
        from benchmarks import huey_config, huey_jobs

        if huey_jobs.huey.storage.filename != path:
            raise SystemExit(
                f"{huey_config.PATH_VARIABLE}={huey_jobs.huey.storage.filename!r} but the database is {path!r}"
            )
        self.tasks = huey_jobs

    def enqueue(self, n: int) -> None:
        self.tasks.noop(n)

    def enqueue_many(self, numbers: Sequence[int]) -> None:
        for n in numbers:  # huey has no bulk enqueue
            self.tasks.noop(n)

    def stamp(self, n: int) -> Callable[[], float | None]:
        handle: Any = self.tasks.stamp(n)

        def started_at() -> float | None:
            value = handle.get(blocking=False)
            return None if value is None else float(value)

        return started_at

    def close(self) -> None:
        self.tasks.huey.storage.close()


class RawQueue:
    """The raw APSW queue of :mod:`benchmarks.raw` (no latency role: it has no idle worker); a connection a thread."""

    def __init__(self, path: str, durability: str) -> None:
        self.path, self.sync = path, "normal" if durability == "normal" else "full"
        self.local = threading.local()
        self.opened: list[Any] = []
        self.guard = threading.Lock()
        # The file made, and in WAL, before any producer thread connects.
        self.local.conn = raw.connect(self.path, self.sync)
        self.opened.append(self.local.conn)

    @property
    def conn(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = raw.connect(self.path, self.sync)
            with self.guard:
                self.opened.append(conn)
        return conn

    def enqueue(self, n: int) -> None:
        raw.enqueue(self.conn, n)

    def enqueue_many(self, numbers: Sequence[int]) -> None:
        raw.enqueue_many(self.conn, numbers)

    def stamp(self, n: int) -> Callable[[], float | None]:
        raise SystemExit("the raw queue has no latency role")

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


def round_robin(numbers: Sequence[int], queues: Sequence[str]) -> list[tuple[str, list[int]]]:
    """Each of *queues* with the *numbers* that go to it: number i to the (i mod len(queues))-th."""
    return [(queue, [n for n in numbers if n % len(queues) == i]) for i, queue in enumerate(queues)]


def queue_names(text: str) -> list[str]:
    """``--queues a,b,c`` as its names."""
    return [name.strip() for name in text.split(",") if name.strip()]


def open_queue(side: str, path: str, durability: str, queues: Sequence[str] = ()) -> Queue:
    """The queue of *side* on *path* (*queues*: jobkit's, round-robin)."""
    if queues and side != "jobkit":
        raise SystemExit(f"--queues is for jobkit, not {side}")
    if side == "jobkit":
        return JobkitQueue(path, durability, queues)
    if side == "huey":
        return HueyQueue(path)
    return RawQueue(path, durability)


def chunks(n: int, size: int) -> list[range]:
    """``range(n)`` cut into consecutive ranges of at most *size*."""
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def enqueue_each(queue: Queue, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    for i in range(n):
        queue.enqueue(i)
    return {"seconds": time.perf_counter() - started}


def enqueue_chunks(queue: Queue, n: int, chunk: int) -> dict[str, Any]:
    started = time.perf_counter()
    for numbers in chunks(n, chunk):
        queue.enqueue_many(numbers)
    return {"seconds": time.perf_counter() - started}


def shares(n: int, producers: int) -> list[range]:
    """``range(n)`` dealt out to *producers*: each a consecutive share, the first ones one longer when it is uneven."""
    size, extra = divmod(n, producers)
    bounds = [0]
    for p in range(producers):
        bounds.append(bounds[-1] + size + (1 if p < extra else 0))
    return [range(bounds[p], bounds[p + 1]) for p in range(producers)]


def enqueue_in_threads(queue: Queue, n: int, producers: int) -> dict[str, Any]:
    """Every thread enqueues its share one by one; timed from the moment they all start to the last one's end."""
    start = threading.Barrier(producers + 1)
    failed: list[BaseException] = []

    def produce(numbers: range) -> None:
        start.wait()
        try:
            for i in numbers:
                queue.enqueue(i)
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=produce, args=(share,)) for share in shares(n, producers)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failed:
        raise failed[0]
    return {"seconds": seconds}


def enqueue_in_tasks(queue: Queue, n: int, producers: int) -> dict[str, Any]:
    """The same from asyncio tasks on one loop, each awaiting ``later_async`` once a job."""
    enqueue_async = getattr(queue, "enqueue_async", None)
    if enqueue_async is None:
        raise SystemExit("the tasks role is for jobkit (later_async)")

    async def produce(numbers: range) -> None:
        for i in numbers:
            await enqueue_async(i)

    async def everything() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(produce(share) for share in shares(n, producers)))
        return time.perf_counter() - started

    return {"seconds": asyncio.run(everything())}


def wait_at_barrier() -> None:
    """Say ``ready``, then block until the parent says ``go``."""
    print(processes.READY, flush=True)
    line = sys.stdin.readline().strip()
    if line != processes.GO:
        raise SystemExit(f"expected {processes.GO!r} on stdin, got {line!r}")


def one_latency(queue: Queue, n: int) -> float:
    """Enqueue one stamp job, wait for it, return its start time minus the enqueue time."""
    before = time.time()
    started_at = queue.stamp(n)
    deadline = time.monotonic() + LATENCY_TIMEOUT
    while (start := started_at()) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"latency job {n} did not complete within {LATENCY_TIMEOUT:.0f}s")
        time.sleep(POLL)
    return start - before


def latencies(queue: Queue, n: int) -> dict[str, Any]:
    one_latency(queue, -1)  # the worker is up and has run a job
    wait_at_barrier()
    return {"latencies": [one_latency(queue, i) for i in range(n)]}


def produce(queue: Queue, n: int) -> dict[str, Any]:
    wait_at_barrier()
    return enqueue_each(queue, n)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("enqueue", "bulk", "fill", "produce", "latency", "threads", "tasks"))
    parser.add_argument("side", choices=("jobkit", "huey", "raw"))
    parser.add_argument("database")
    parser.add_argument("--n", type=int, required=True, help="how many jobs")
    parser.add_argument("--durability", choices=("default", "normal"), default="default")
    parser.add_argument("--chunk", type=int, default=1000, help="jobs per transaction for bulk and fill")
    parser.add_argument("--queues", type=queue_names, default=[], help="jobkit: spread the jobs over these, a,b,c")
    parser.add_argument("--producers", type=int, default=8, help="threads or tasks enqueuing at once (threads, tasks)")
    args = parser.parse_args(argv)
    queue = open_queue(args.side, args.database, args.durability, args.queues)
    try:
        match args.role:
            case "enqueue":
                outcome = enqueue_each(queue, args.n)
            case "bulk" | "fill":
                outcome = enqueue_chunks(queue, args.n, args.chunk)
            case "produce":
                outcome = produce(queue, args.n)
            case "threads":
                outcome = enqueue_in_threads(queue, args.n, args.producers)
            case "tasks":
                outcome = enqueue_in_tasks(queue, args.n, args.producers)
            case _:
                outcome = latencies(queue, args.n)
    finally:
        queue.close()
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
