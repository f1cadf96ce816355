"""The queue scenarios (issue 13): the one-process drains again, with the jobs spread over three queues.

The same N no-op jobs as the drain beside it (:mod:`benchmarks.scenarios` for SQLite,
:mod:`benchmarks.pg_scenarios` for PostgreSQL), enqueued round-robin over the queues
:data:`QUEUES` (job i to the (i mod 3)-th), drained by one jobkit worker process with the
drain's own flags: ``--burst`` and otherwise the defaults, so every queue is served. The
peers have no queues here and drain as in the drain beside it, so that the ratios to them
are taken in the same rounds; the goal "3 queues / 1 queue" (:mod:`benchmarks.report`)
sets this jobkit drain against the single-queue one.
"""

from __future__ import annotations

from benchmarks import pg_procrastinate, pg_scenarios, scenarios
from benchmarks.metrics import THROUGHPUT, Metric
from benchmarks.processes import environment, python, run_json
from benchmarks.scenarios import Measure, Run, Scenario, Variant

QUEUES = ("a", "b", "c")
QUEUES_OPTION = ("--queues", ",".join(QUEUES))  # for the fill roles of benchmarks.client and benchmarks.pg_client


# -- SQLite -------------------------------------------------------------------------------
def fill_queues(run: Run, database: str, n: int) -> None:
    """Queue *n* no-op jobs over :data:`QUEUES` as fast as jobkit allows (as :func:`benchmarks.scenarios.fill`)."""
    command = scenarios.client("fill", "jobkit", database, n=n, durability="normal", chunk=run.settings.chunk)
    run_json(
        [*command, *QUEUES_OPTION],
        cwd=run.folder,
        env=environment(),
        timeout=run.timeout(n),
    )


def drain_jobkit_queues(processes: int) -> Measure:
    def measure(run: Run) -> dict[Metric, float]:
        database, n = run.database(), run.settings.n
        fill_queues(run, database, n)
        commands = [scenarios.jobkit_worker(database, run.durability, "--burst")] * processes
        seconds = scenarios.seconds_until_exit(run, commands, environment(), n)
        scenarios.check_completed("jobkit", database, n)
        return {THROUGHPUT: n / seconds}

    return measure


# -- PostgreSQL ---------------------------------------------------------------------------
def pg_fill_queues(run: Run, url: str, n: int) -> None:
    """Queue *n* no-op jobs over :data:`QUEUES` in the jobkit database at *url*, 1000 a call per queue."""
    command = python("benchmarks.pg_client", "fill", "jobkit", url, "--n", str(n), "--chunk", str(run.settings.chunk))
    run_json(
        [*command, *QUEUES_OPTION],
        cwd=run.folder,
        env=pg_scenarios.side_environment("jobkit", url),
        timeout=pg_scenarios.pg_timeout(n),
    )


def pg_drain_jobkit_queues(processes: int) -> Measure:
    def measure(run: Run) -> dict[Metric, float]:
        n = run.settings.pg_n
        with pg_scenarios.database(run, "jobkit") as url:
            pg_fill_queues(run, url, n)
            pg_scenarios.analyze(url)
            commands = [pg_scenarios.worker("jobkit", url, drain=True)] * processes
            env = pg_scenarios.side_environment("jobkit", url)
            seconds = scenarios.seconds_until_exit(run, commands, env, n, pg_scenarios.pg_timeout(n))
            pg_scenarios.check_completed("jobkit", url, n)
            return {THROUGHPUT: n / seconds, **pg_scenarios.hot_share("jobkit", url)}

    return measure


# -- the catalogue ------------------------------------------------------------------------
def catalogue(first: int) -> list[Scenario]:
    """The queue scenarios, numbered from *first*: SQLite's, then PostgreSQL's."""
    huey_1, huey_4 = ("-w", "1", "-k", "thread"), ("-w", "4", "-k", "thread")
    procrastinate = f"procrastinate (concurrency {pg_procrastinate.CONCURRENCY})"
    over = f"over three queues (round-robin {', '.join(QUEUES)})"
    return [
        Scenario(
            "drain-queues",
            first,
            f"drain N queued jobs {over}, results stored, one worker process (peers: one queue)",
            (
                Variant("jobkit", "jobkit worker, 3 queues", drain_jobkit_queues(1)),
                Variant("huey", "huey -w 1 -k thread", scenarios.drain_huey(*huey_1)),
                Variant("huey", "huey -w 4 -k thread", scenarios.drain_huey(*huey_4)),
                Variant("raw", "raw claim 100 / complete", scenarios.drain_raw(1)),
            ),
        ),
        Scenario(
            "pg-drain-queues",
            first + 1,
            f"PostgreSQL: drain N queued jobs {over}, one worker process (peers: one queue)",
            (
                Variant("jobkit", "jobkit worker, 3 queues", pg_drain_jobkit_queues(1)),
                Variant("pgqueuer", "pgqueuer (batch 10)", pg_scenarios.drain("pgqueuer", 1)),
                Variant("procrastinate", procrastinate, pg_scenarios.drain("procrastinate", 1)),
                Variant("raw", "raw claim 100 / complete", pg_scenarios.drain("raw", 1)),
            ),
            durabilities=("default",),
            versus=pg_scenarios.PEERS,
            postgres=True,
        ),
    ]
