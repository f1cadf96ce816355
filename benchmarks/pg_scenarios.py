"""The PostgreSQL scenarios: jobkit, pgqueuer, procrastinate and a raw psycopg loop, side by side.

Every round of every side runs in a database of its own on the benchmark server
(:mod:`benchmarks.postgres`), created before the round and dropped after it, with the
side's schema installed as the side documents it. Enqueues are timed inside the client
process; drains from starting the worker processes until they have all exited by
themselves (jobkit ``--burst``, pgqueuer's drain mode, procrastinate ``--one-shot``,
the raw loop when nothing is pending), after which the database must show every job done.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from benchmarks import pg_pgqueuer, pg_procrastinate, postgres, stamps
from benchmarks.metrics import HOT_SHARE, IDLE_CPU, P50, P99, SEEN_P50, SEEN_P99, THROUGHPUT, Metric, Side, percentile
from benchmarks.processes import BenchError, await_ready, environment, python, release, result, run_json, started
from benchmarks.scenarios import (
    JOBKIT_JOBS,
    LATENCY_JOB_TIMEOUT,
    SETTLE,
    TIMEOUT_BASE,
    Measure,
    Run,
    Scenario,
    Variant,
    idle_cpu_percent,
    seconds_until_exit,
)

PEERS: tuple[Side, ...] = ("pgqueuer", "procrastinate", "raw")
URL_VARIABLES = {"pgqueuer": pg_pgqueuer.URL_VARIABLE, "procrastinate": pg_procrastinate.URL_VARIABLE}
COMPLETED: dict[Side, str] = {
    "jobkit": "SELECT count(*) FROM jobkit.jobs WHERE status = 'completed'",
    "raw": "SELECT count(*) FROM jobs WHERE status = 'completed'",
    "pgqueuer": pg_pgqueuer.COMPLETED,
    "procrastinate": pg_procrastinate.COMPLETED,
}
JOBS_TABLE: dict[Side, tuple[str, str]] = {  # (schema, table) holding each side's jobs
    "jobkit": ("jobkit", "jobs"),
    "raw": ("public", "jobs"),
    "pgqueuer": ("public", "pgqueuer"),
    "procrastinate": ("public", "procrastinate_jobs"),
}
SLOWEST_RATE = 40.0  # jobs/s: procrastinate drains a few hundred a second, slower on a busy machine
HOT = """SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s"""


# -- commands and environments ------------------------------------------------------------
def side_environment(side: Side, url: str, stamp_port: int | None = None) -> dict[str, str]:
    """The environment of *side*'s processes: where its database is, where stamps go."""
    extra = {URL_VARIABLES[side]: url} if side in URL_VARIABLES else {}
    if stamp_port is not None:
        extra[stamps.PORT_VARIABLE] = str(stamp_port)
    return environment(extra)


def worker(side: Side, url: str, *, drain: bool) -> list[str]:
    """The command of one worker process of *side*; with *drain*, one that exits when the queue is empty."""
    match side:
        case "jobkit":
            return python("jobkit.worker", url, "--jobs", JOBKIT_JOBS, "--quiet", *(["--burst"] if drain else []))
        case "raw":
            return python("benchmarks.pg_raw", url)
        case "pgqueuer":
            return python("benchmarks.pg_pgqueuer", *(["--drain"] if drain else []))
        case _:
            # --log-level warning: no line per job, as jobkit's --quiet and pgqueuer's worker here
            app = ["--app", "benchmarks.pg_procrastinate.app", "--log-level", "warning"]
            concurrency = ["--concurrency", str(pg_procrastinate.CONCURRENCY)]
            return python("procrastinate", *app, "worker", *concurrency, *(["--one-shot"] if drain else []))


def client(run: Run, role: str, side: Side, url: str, n: int) -> dict[str, Any]:
    """Run one role of :mod:`benchmarks.pg_client` to its end; its JSON."""
    command = python("benchmarks.pg_client", role, side, url, "--n", str(n), "--chunk", str(run.settings.chunk))
    return run_json(command, cwd=run.folder, env=side_environment(side, url), timeout=pg_timeout(n))


def install(run: Run, side: Side, url: str) -> None:
    """Create *side*'s tables in the fresh database at *url*."""
    run_json(
        python("benchmarks.pg_client", "setup", side, url),
        cwd=run.folder,
        env=side_environment(side, url),
        timeout=TIMEOUT_BASE,
    )


@contextlib.contextmanager
def database(run: Run, side: Side) -> Iterator[str]:
    """A fresh database with *side*'s schema, dropped afterwards; yields its URL."""
    with postgres.fresh_database(postgres.server()) as url:
        install(run, side, url)
        yield url


def pg_timeout(jobs: int) -> float:
    """The longest a PostgreSQL step handling *jobs* jobs may take."""
    return TIMEOUT_BASE + jobs / SLOWEST_RATE


# -- reading the database -----------------------------------------------------------------
def completed(side: Side, url: str) -> int:
    with postgres.connect(url) as conn:
        value = postgres.scalar(conn, COMPLETED[side])
    assert isinstance(value, int)
    return value


def analyze(url: str) -> None:
    """ANALYZE the database, as autovacuum would after the fill (the benchmark server may run without it).

    Without statistics the planner guesses, and a side whose claim query then scans the
    table pays for a setting no production server has (procrastinate drains 1.7x slower).
    """
    with postgres.connect(url) as conn:
        conn.execute("ANALYZE")


def check_completed(side: Side, url: str, n: int) -> None:
    done = completed(side, url)
    if done != n:
        raise BenchError(f"{side}: {done} of {n} jobs completed")


def hot_share(side: Side, url: str) -> dict[Metric, float]:
    """The share of updates to *side*'s jobs table that were HOT (heap-only), from pg_stat_user_tables."""
    with postgres.connect(url) as conn:
        row = conn.execute(HOT, JOBS_TABLE[side]).fetchone()
    if row is None or not row[0]:
        return {}
    updates, hot = row
    return {HOT_SHARE: 100 * hot / updates}


# -- the measurements ---------------------------------------------------------------------
def enqueue(side: Side, role: str) -> Measure:
    """*role* ``enqueue`` (one call per job) or ``bulk`` (chunks), from one fresh process."""

    def measure(run: Run) -> dict[Metric, float]:
        n = run.settings.pg_n
        with database(run, side) as url:
            output = client(run, role, side, url, n)
        return {THROUGHPUT: n / output["seconds"]}

    return measure


def drain(side: Side, processes: int) -> Measure:
    def measure(run: Run) -> dict[Metric, float]:
        n = run.settings.pg_n
        with database(run, side) as url:
            client(run, "fill", side, url, n)
            analyze(url)
            commands = [worker(side, url, drain=True)] * processes
            seconds = seconds_until_exit(run, commands, side_environment(side, url), n, pg_timeout(n))
            check_completed(side, url, n)
            return {THROUGHPUT: n / seconds, **hot_share(side, url)}

    return measure


def latency(side: Side) -> Measure:
    """Enqueue-to-start latency, end-to-seen time and idle CPU, with one idle worker."""

    def measure(run: Run) -> dict[Metric, float]:
        jobs = run.settings.latency_jobs
        with database(run, side) as url:
            port = stamps.free_port()
            env = side_environment(side, url, port)
            driver_command = python(
                "benchmarks.pg_client", "latency", side, url, "--n", str(jobs), "--stamp-port", str(port)
            )
            timeout = TIMEOUT_BASE + jobs * LATENCY_JOB_TIMEOUT
            with (
                started(worker(side, url, drain=False), cwd=run.folder, env=env, log=run.log) as process,
                started(driver_command, cwd=run.folder, env=env, log=run.log, barrier=True) as driver,
            ):
                await_ready([driver], TIMEOUT_BASE, run.log)
                time.sleep(SETTLE)  # the worker settles after its warm-up job before its CPU is measured
                cpu = idle_cpu_percent(process.pid, run.settings.idle_seconds)
                release([driver])
                output = result(driver, timeout, run.log)
        starts = [1000 * s for s in output["latencies"]]
        seen = [1000 * s for s in output["seen"]]
        return {
            P50: percentile(starts, 50),
            P99: percentile(starts, 99),
            SEEN_P50: percentile(seen, 50),
            SEEN_P99: percentile(seen, 99),
            IDLE_CPU: cpu,
        }

    return measure


# -- the catalogue ------------------------------------------------------------------------
def catalogue(first: int) -> list[Scenario]:
    """The PostgreSQL scenarios, numbered from *first*."""
    concurrency = pg_procrastinate.CONCURRENCY
    specs: list[tuple[str, str, tuple[Variant, ...]]] = [
        (
            "pg-enqueue",
            "PostgreSQL: enqueue, one call per job, one process",
            (
                Variant("jobkit", "jobkit noop.later()", enqueue("jobkit", "enqueue")),
                Variant("pgqueuer", "pgqueuer enqueue()", enqueue("pgqueuer", "enqueue")),
                Variant("procrastinate", "procrastinate defer_async()", enqueue("procrastinate", "enqueue")),
                Variant("raw", "raw INSERT, 1 per commit", enqueue("raw", "enqueue")),
            ),
        ),
        (
            "pg-bulk",
            "PostgreSQL: bulk enqueue, 1000 per call",
            (
                Variant("jobkit", "jobkit noop.later_many()", enqueue("jobkit", "bulk")),
                Variant("pgqueuer", "pgqueuer enqueue([...])", enqueue("pgqueuer", "bulk")),
                Variant("procrastinate", "procrastinate batch_defer_async", enqueue("procrastinate", "bulk")),
                Variant("raw", "raw COPY", enqueue("raw", "bulk")),
            ),
        ),
        (
            "pg-drain",
            "PostgreSQL: drain N queued jobs, one worker process",
            (
                Variant("jobkit", "jobkit worker (5 threads)", drain("jobkit", 1)),
                Variant("pgqueuer", "pgqueuer (batch 10)", drain("pgqueuer", 1)),
                Variant("procrastinate", f"procrastinate (concurrency {concurrency})", drain("procrastinate", 1)),
                Variant("raw", "raw claim 100 / complete", drain("raw", 1)),
            ),
        ),
        (
            "pg-drain2",
            "PostgreSQL: drain N queued jobs, two worker processes",
            (
                Variant("jobkit", "jobkit 2 worker processes", drain("jobkit", 2)),
                Variant("pgqueuer", "pgqueuer 2 processes", drain("pgqueuer", 2)),
                Variant("procrastinate", "procrastinate 2 processes", drain("procrastinate", 2)),
                Variant("raw", "raw 2 processes", drain("raw", 2)),
            ),
        ),
        (
            "pg-latency",
            "PostgreSQL: idle worker, enqueue-to-start latency, handler end until the wait sees it, idle CPU",
            (
                Variant("jobkit", "jobkit worker, wait()", latency("jobkit")),
                Variant("pgqueuer", "pgqueuer, CompletionWatcher", latency("pgqueuer")),
                Variant("procrastinate", "procrastinate, status poll 1ms", latency("procrastinate")),
            ),
        ),
    ]
    return [
        Scenario(key, first + i, title, variants, durabilities=("default",), versus=PEERS, postgres=True)
        for i, (key, title, variants) in enumerate(specs)
    ]
