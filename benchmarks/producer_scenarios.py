"""The concurrency scenarios (issue 15): eight producers at once, and a drain at the default log level.

- ``producers``: N no-op jobs enqueued one call each by :data:`PRODUCERS` threads of one
  process (jobkit's sharing one store: its calls that meet share a commit), by as many
  asyncio tasks with ``later_async``, by huey's tasks called from as many threads, and by
  raw INSERTs from as many threads, each with a connection of its own. Set against the
  one-producer ``enqueue`` scenario of the same run (goal "8 producers / 1 producer").
- ``drain-logged``: the one-process drain with the worker at its default log level (one
  INFO line a job on stderr), set against the ``drain`` scenario's ``--quiet`` worker.
- ``pg-producers``: the first on PostgreSQL (jobkit threads and tasks, raw threads).
"""

from __future__ import annotations

from benchmarks import pg_scenarios, scenarios
from benchmarks.metrics import THROUGHPUT, Metric, Side
from benchmarks.processes import python, run_json
from benchmarks.scenarios import Measure, Run, Scenario, Variant

PRODUCERS = 8


# -- SQLite -------------------------------------------------------------------------------
def produce(side: Side, role: str) -> Measure:
    """*role* ``threads`` or ``tasks`` of :mod:`benchmarks.client`, from one fresh process."""

    def measure(run: Run) -> dict[Metric, float]:
        database, n = run.database(), run.settings.n
        command = scenarios.client(role, side, database, n=n, durability=run.durability)
        output = run_json(
            [*command, "--producers", str(PRODUCERS)],
            cwd=run.folder,
            env=scenarios.side_environment(side, database, run.durability),
            timeout=run.timeout(n),
        )
        return {THROUGHPUT: n / output["seconds"]}

    return measure


def drain_logged(run: Run) -> dict[Metric, float]:
    """The drain of :func:`benchmarks.scenarios.drain_jobkit`, the worker logging at its default level."""
    extra = ["--durability", "normal"] if run.durability == "normal" else []
    command = python("jobkit.worker", run.database(), "--jobs", scenarios.JOBKIT_JOBS, "--burst", *extra)
    return scenarios.drained(run, "jobkit", command, 1)


# -- PostgreSQL ---------------------------------------------------------------------------
def pg_produce(side: Side, role: str) -> Measure:
    def measure(run: Run) -> dict[Metric, float]:
        n = run.settings.pg_n
        with pg_scenarios.database(run, side) as url:
            command = python("benchmarks.pg_client", role, side, url, "--n", str(n), "--producers", str(PRODUCERS))
            output = run_json(
                command,
                cwd=run.folder,
                env=pg_scenarios.side_environment(side, url),
                timeout=pg_scenarios.pg_timeout(n),
            )
        return {THROUGHPUT: n / output["seconds"]}

    return measure


# -- the catalogue ------------------------------------------------------------------------
def catalogue(first: int) -> list[Scenario]:
    """The concurrency scenarios, numbered from *first*."""
    many = f"{PRODUCERS} producers"
    return [
        Scenario(
            "producers",
            first,
            f"enqueue, one call per job, from {many} at once in one process",
            (
                Variant("jobkit", f"jobkit later(), {PRODUCERS} threads", produce("jobkit", "threads")),
                Variant("jobkit", f"jobkit later_async(), {PRODUCERS} tasks", produce("jobkit", "tasks")),
                Variant("huey", f"huey noop(), {PRODUCERS} threads", produce("huey", "threads")),
                Variant("raw", f"raw INSERT, {PRODUCERS} threads", produce("raw", "threads")),
            ),
        ),
        Scenario(
            "drain-logged",
            first + 1,
            "drain N queued jobs, one worker process at its default log level (one line a job)",
            (Variant("jobkit", "jobkit worker, INFO log", drain_logged),),
            versus=(),
        ),
        Scenario(
            "pg-producers",
            first + 2,
            f"PostgreSQL: enqueue, one call per job, from {many} at once in one process",
            (
                Variant("jobkit", f"jobkit later(), {PRODUCERS} threads", pg_produce("jobkit", "threads")),
                Variant("jobkit", f"jobkit later_async(), {PRODUCERS} tasks", pg_produce("jobkit", "tasks")),
                Variant("raw", f"raw INSERT, {PRODUCERS} threads", pg_produce("raw", "threads")),
            ),
            durabilities=("default",),
            versus=("raw",),
            postgres=True,
        ),
    ]
