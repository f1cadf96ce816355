"""procrastinate as its documentation sets it up: ``PsycopgConnector`` (psycopg 3), async tasks.

The worker is ``python -m procrastinate --app benchmarks.pg_procrastinate.app worker
--concurrency 10`` (``--one-shot`` for a drain: it exits once the queue is empty), with
procrastinate's other defaults (LISTEN/NOTIFY, jobs kept after they succeed). The
database URL comes from :data:`URL_VARIABLE` when the module is imported; procrastinate's
command line needs the app at module level. procrastinate has no wait for a job: the
latency driver polls ``job_manager.get_job_status_async`` every :data:`STATUS_POLL`
seconds until the job has succeeded.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import procrastinate

from benchmarks import stamps

URL_VARIABLE = "JOBKIT_BENCH_PROCRASTINATE_URL"
CONCURRENCY = 10
STATUS_POLL = 0.001  # seconds between looks at a latency job's status
COMPLETED = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ.get(URL_VARIABLE, "")))
sender = stamps.Sender()


@app.task(name="noop")
async def noop(n: int) -> int:
    return json.loads(json.dumps(n))  # type: ignore[no-any-return]


@app.task(name="stamp")
async def stamp(n: int) -> None:
    start = time.time()
    sender.send(n, start)


class ProcrastinateQueue:
    """The producer side: ``defer_async`` and ``batch_defer_async`` on the app's pool."""

    async def enqueue(self, n: int) -> None:
        await noop.defer_async(n=n)

    async def enqueue_many(self, numbers: Sequence[int]) -> None:
        kwargs: list[dict[str, Any]] = [{"n": n} for n in numbers]
        await noop.batch_defer_async(*kwargs)

    async def stamp(self, n: int) -> None:
        """Defer a stamp job and poll its status until it has succeeded."""
        job_id = await stamp.defer_async(n=n)
        while (status := await app.job_manager.get_job_status_async(job_id)) is not procrastinate.jobs.Status.SUCCEEDED:
            if status in (procrastinate.jobs.Status.FAILED, procrastinate.jobs.Status.CANCELLED):
                raise RuntimeError(f"procrastinate stamp job {n} ended {status.value}")
            await asyncio.sleep(STATUS_POLL)

    async def close(self) -> None:
        await app.close_async()

    @classmethod
    async def open(cls) -> ProcrastinateQueue:
        await app.open_async()
        return cls()


async def install() -> None:
    """Apply procrastinate's schema to the database in the environment (``procrastinate schema --apply``)."""
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
