"""pgqueuer as its README uses it: asyncpg connections, a consumer factory, ``Queries.enqueue``.

The worker is ``python -m benchmarks.pg_pgqueuer [--drain]``: what ``pgq run
benchmarks.pg_pgqueuer:consumer [--mode drain]`` does (pgqueuer's supervisor on uvloop,
its defaults: batch size 10), without the command line, whose option parsing fails in
pgqueuer 1.6.0 with typer 0.29 (``'str' object has no attribute 'name'`` in
``setup_fancy_logger``). The database URL comes from :data:`URL_VARIABLE`. Completed
jobs leave pgqueuer's queue table for ``pgqueuer_log`` with status ``successful``; the
latency driver waits with pgqueuer's own ``CompletionWatcher`` (its defaults:
LISTEN/NOTIFY, 50 ms debounce, 5 s safety poll).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg  # type: ignore[import-untyped]
import pgqueuer
import uvloop
from pgqueuer import PgQueuer
from pgqueuer.core.completion import CompletionWatcher
from pgqueuer.db import AsyncpgDriver
from pgqueuer.domain.types import QueueExecutionMode
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from benchmarks import stamps

URL_VARIABLE = "JOBKIT_BENCH_PGQUEUER_URL"
COMPLETED = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"


@contextlib.asynccontextmanager
async def consumer() -> AsyncIterator[PgQueuer]:
    """The factory ``pgq run`` calls (pgqueuer 1.6 wants an async context manager, not the README's coroutine)."""
    connection = await asyncpg.connect(os.environ[URL_VARIABLE])
    pgq = PgQueuer(AsyncpgDriver(connection))
    sender = stamps.Sender()

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        json.loads(job.payload or b"null")

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        start = time.time()
        sender.send(json.loads(job.payload or b"0"), start)

    try:
        yield pgq
    finally:
        await connection.close()


class PgqueuerQueue:
    """The producer side: ``Queries.enqueue`` on one asyncpg connection."""

    def __init__(
        self, connection: asyncpg.Connection, watcher: CompletionWatcher | None, watching: asyncpg.Connection | None
    ) -> None:
        self.connection = connection
        self.watching = watching
        self.driver = AsyncpgDriver(connection)
        self.queries = Queries(self.driver)
        self.watcher = watcher

    @classmethod
    async def open(cls, url: str, *, watch: bool = False) -> PgqueuerQueue:
        connection = await asyncpg.connect(url)
        if not watch:
            return cls(connection, None, None)
        watching = await asyncpg.connect(url)
        driver = AsyncpgDriver(watching)
        watcher = CompletionWatcher(driver, queries=Queries(driver))
        await watcher.__aenter__()
        return cls(connection, watcher, watching)

    async def enqueue(self, n: int) -> None:
        await self.queries.enqueue("noop", json.dumps(n).encode())

    async def enqueue_many(self, numbers: Sequence[int]) -> None:
        count = len(numbers)
        await self.queries.enqueue(["noop"] * count, [json.dumps(n).encode() for n in numbers], [0] * count)

    async def stamp(self, n: int) -> None:
        """Enqueue a stamp job and wait until pgqueuer's completion tracking says it succeeded."""
        assert self.watcher is not None
        (job_id,) = await self.queries.enqueue("stamp", json.dumps(n).encode())
        status = await self.watcher.wait_for(job_id)
        if status != "successful":
            raise RuntimeError(f"pgqueuer stamp job {n} ended {status}")

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.__aexit__(None, None, None)
        if self.watching is not None:
            await self.watching.close()
        await self.connection.close()


async def install(url: str) -> None:
    """Create pgqueuer's tables and functions in the database at *url* (what ``pgq install`` does)."""
    connection = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(connection)).install()
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_pgqueuer", description="run a pgqueuer worker")
    parser.add_argument("--drain", action="store_true", help="exit once the queue is empty (--mode drain)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    mode = QueueExecutionMode.drain if args.drain else QueueExecutionMode.continuous
    uvloop.run(pgqueuer.run("benchmarks.pg_pgqueuer:consumer", mode=mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
