"""The seven scenarios: for each side, how one round is measured, in fresh processes and a fresh folder.

A :class:`Variant` is one side in one configuration (``huey -w 4 -k thread``); its
``measure`` runs one round of a scenario at one durability in a folder of its own and
returns the metrics. Drains and enqueues are timed from the start of the process doing
the work; a worker that never exits by itself (huey's consumer, a jobkit worker started
without ``--burst``) is timed until the database shows every job done, polling every
:data:`POLL` seconds. A drain whose processes exit by themselves (jobkit's, raw's) also
gives the CPU a job (:func:`drained`). Every wait has a deadline (:meth:`Run.timeout`).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from benchmarks import huey_config, raw
from benchmarks.metrics import (
    CPU_A_JOB,
    DURABILITIES,
    GROWTH,
    IDLE_CPU,
    P50,
    P99,
    THROUGHPUT,
    Case,
    Durability,
    Metric,
    Side,
    peak_rss,
    percentile,
)
from benchmarks.processes import (
    BenchError,
    await_ready,
    cpu_seconds,
    describe,
    environment,
    log_tail,
    peak_rss_mib,
    python,
    release,
    result,
    run_json,
    started,
    wait_exit,
    wait_for,
)

POLL = 0.05  # seconds between looks at the database for "all done"
SETTLE = 1.0  # seconds an idle worker is left alone after its warm-up job, before its CPU is measured
TIMEOUT_BASE = 60.0  # seconds any step may take, plus ...
SLOWEST_RATE = 200.0  # ... one second per this many jobs it handles
LATENCY_JOB_TIMEOUT = 2.0  # seconds per latency job, in the bound for the whole latency run
EMPTY = "empty.sqlite"  # a database with no jobs: what a worker costs to start and stop
JOBKIT_JOBS = "benchmarks.jobkit_jobs"
HUEY_INSTANCE = "benchmarks.huey_jobs.huey"

Measure = Callable[["Run"], dict[Metric, float]]


@dataclass(frozen=True)
class Settings:
    """How much to run."""

    n: int = 20_000
    rounds: int = 3
    chunk: int = 1000
    latency_jobs: int = 200
    idle_seconds: float = 10.0
    pg_n: int = 10_000


@dataclass(frozen=True)
class Run:
    """One round of one variant: its settings, durability and fresh folder."""

    settings: Settings
    durability: Durability
    folder: Path

    @property
    def log(self) -> Path:
        """Where the children's standard error goes (shown when one fails)."""
        return self.folder / "processes.log"

    def database(self, name: str = "queue.sqlite") -> str:
        return str(self.folder / name)

    def timeout(self, jobs: int) -> float:
        """The longest a step handling *jobs* jobs may take."""
        return TIMEOUT_BASE + jobs / SLOWEST_RATE


@dataclass(frozen=True)
class Variant:
    """One side in one configuration."""

    side: Side
    label: str
    measure: Measure


@dataclass(frozen=True)
class Scenario:
    key: str
    number: int
    title: str
    variants: tuple[Variant, ...]
    durabilities: tuple[Durability, ...] = DURABILITIES
    versus: tuple[Side, ...] = ("huey", "raw")  # the sides jobkit's ratios are taken against
    postgres: bool = False  # needs the PostgreSQL server (benchmarks.postgres)


# -- commands and environments ------------------------------------------------------------
def client(role: str, side: Side, database: str, *, n: int, durability: Durability, chunk: int = 1000) -> list[str]:
    return python(
        "benchmarks.client", role, side, database, "--n", str(n), "--durability", durability, "--chunk", str(chunk)
    )


def side_environment(side: Side, database: str, durability: Durability | None) -> dict[str, str]:
    """The environment for a process of *side*; for huey, its file and synchronous setting.

    *durability* None means "as fast as possible" (filling a queue before a drain).
    """
    if side != "huey":
        return environment()
    return environment(huey_config.environment(database, durability or "off"))


def jobkit_worker(database: str, durability: Durability, *options: str) -> list[str]:
    extra = ["--durability", "normal"] if durability == "normal" else []
    return python("jobkit.worker", database, "--jobs", JOBKIT_JOBS, "--quiet", *extra, *options)


def huey_consumer(*options: str) -> list[str]:
    return python("huey.bin.huey_consumer", HUEY_INSTANCE, "--quiet", *options)


def raw_worker(database: str, durability: Durability) -> list[str]:
    return python("benchmarks.raw", database, "--sync", "normal" if durability == "normal" else "full")


def fill(run: Run, side: Side, database: str, n: int) -> None:
    """Queue *n* no-op jobs as fast as *side* allows (creating the database when n is 0)."""
    run_json(
        client("fill", side, database, n=n, durability="normal", chunk=run.settings.chunk),
        cwd=run.folder,
        env=side_environment(side, database, None),
        timeout=run.timeout(n),
    )


# -- counting what is done ----------------------------------------------------------------
@contextlib.contextmanager
def completed_counter(side: Side, database: str) -> Iterator[Callable[[], int]]:
    """A function returning how many jobs of *side* in *database* are done, results stored."""
    if side == "jobkit":
        import jobkit

        with jobkit.SqliteStore(database, create=False) as store:
            yield lambda: store.counts()[jobkit.JobStatus.COMPLETED]
        return
    sql = "SELECT count(*) FROM kv WHERE queue = 'bench'" if side == "huey" else raw.COMPLETED
    conn = apsw.Connection(database, flags=apsw.SQLITE_OPEN_READWRITE)
    conn.set_busy_timeout(5_000)
    try:
        yield lambda: count(conn, sql)
    finally:
        conn.close()


def count(conn: apsw.Connection, sql: str) -> int:
    """The one integer *sql* selects."""
    value = conn.execute(sql).fetchall()[0][0]
    assert isinstance(value, int)
    return value


def check_completed(side: Side, database: str, n: int) -> None:
    with completed_counter(side, database) as completed:
        done = completed()
    if done != n:
        raise BenchError(f"{side}: {done} of {n} jobs completed")


def alive_and(process: subprocess.Popen[str], condition: Callable[[], bool], log: Path) -> Callable[[], bool]:
    """*condition*, failing at once if *process* has exited."""

    def check() -> bool:
        if process.poll() is not None:
            raise BenchError(f"{describe(process)}: exited with {process.returncode}\n{log_tail(log)}")
        return condition()

    return check


# -- timing -------------------------------------------------------------------------------
def until_exit(
    run: Run, commands: Sequence[list[str]], env: dict[str, str], jobs: int, timeout: float | None = None
) -> tuple[float, float]:
    """Seconds from starting *commands* together until every one has exited with 0 (within *timeout*),
    and the CPU seconds they used between them."""
    with contextlib.ExitStack() as stack:
        begin = time.perf_counter()
        children = [stack.enter_context(started(c, cwd=run.folder, env=env, log=run.log)) for c in commands]
        deadline = begin + (run.timeout(jobs) if timeout is None else timeout)
        cpu = sum(wait_exit(child, max(0.0, deadline - time.perf_counter()), run.log) for child in children)
        return time.perf_counter() - begin, cpu


def seconds_until_exit(
    run: Run, commands: Sequence[list[str]], env: dict[str, str], jobs: int, timeout: float | None = None
) -> float:
    """The seconds of :func:`until_exit`."""
    return until_exit(run, commands, env, jobs, timeout)[0]


def drained(run: Run, side: Side, command: list[str], processes: int) -> dict[Metric, float]:
    """Drain the run's n queued jobs with *processes* copies of *command* (which names ``run.database()``):
    the jobs a second, and the CPU a job, less what the same processes use to start and stop on an empty
    queue (the command naming :data:`EMPTY` instead)."""
    database, n = run.database(), run.settings.n
    fill(run, side, database, n)
    seconds, cpu = until_exit(run, [command] * processes, environment(), n)
    check_completed(side, database, n)
    empty = run.database(EMPTY)
    fill(run, side, empty, 0)
    idle = until_exit(run, [[empty if part == database else part for part in command]] * processes, environment(), 0)
    return {THROUGHPUT: n / seconds, CPU_A_JOB: max(cpu - idle[1], 0.0) / n * 1e6}


def seconds_until_done(run: Run, command: list[str], *, env: dict[str, str], side: Side, database: str) -> float:
    """Seconds from starting *command* until the run's n jobs are done (it is stopped afterwards)."""
    n = run.settings.n
    with (
        completed_counter(side, database) as completed,
        started(command, cwd=run.folder, env=env, log=run.log) as worker,
    ):
        begin = time.perf_counter()
        wait_for(alive_and(worker, lambda: completed() >= n, run.log), run.timeout(n), f"{side} drain", POLL)
        return time.perf_counter() - begin


# -- 1 and 2: enqueue ---------------------------------------------------------------------
def enqueue(side: Side, role: str) -> Measure:
    """*role* ``enqueue`` (one call per job) or ``bulk`` (chunks), from one fresh process."""

    def measure(run: Run) -> dict[Metric, float]:
        database, n = run.database(), run.settings.n
        output = run_json(
            client(role, side, database, n=n, durability=run.durability, chunk=run.settings.chunk),
            cwd=run.folder,
            env=side_environment(side, database, run.durability),
            timeout=run.timeout(n),
        )
        return {THROUGHPUT: n / output["seconds"]}

    return measure


# -- 3 and 4: drain -----------------------------------------------------------------------
def drain_jobkit(processes: int) -> Measure:
    def measure(run: Run) -> dict[Metric, float]:
        return drained(run, "jobkit", jobkit_worker(run.database(), run.durability, "--burst"), processes)

    return measure


def drain_raw(processes: int) -> Measure:
    def measure(run: Run) -> dict[Metric, float]:
        return drained(run, "raw", raw_worker(run.database(), run.durability), processes)

    return measure


def drain_huey(*options: str) -> Measure:
    def measure(run: Run) -> dict[Metric, float]:
        database, n = run.database(), run.settings.n
        fill(run, "huey", database, n)
        env = side_environment("huey", database, run.durability)
        seconds = seconds_until_done(run, huey_consumer(*options), env=env, side="huey", database=database)
        return {THROUGHPUT: n / seconds}

    return measure


# -- 5: latency and idle CPU --------------------------------------------------------------
def idle_cpu_percent(pid: int, seconds: float) -> float:
    """The CPU *pid* uses over *seconds*, in percent of one core."""
    before, begin = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # the measurement window itself, not a wait for something
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - begin)


def latency(side: Side) -> Measure:
    def measure(run: Run) -> dict[Metric, float]:
        database, jobs = run.database(), run.settings.latency_jobs
        fill(run, side, database, 0)
        env = side_environment(side, database, run.durability)
        worker_command = jobkit_worker(database, run.durability) if side == "jobkit" else huey_consumer()
        driver_command = client("latency", side, database, n=jobs, durability=run.durability)
        timeout = TIMEOUT_BASE + jobs * LATENCY_JOB_TIMEOUT
        with (
            started(worker_command, cwd=run.folder, env=env, log=run.log) as worker,
            started(driver_command, cwd=run.folder, env=env, log=run.log, barrier=True) as driver,
        ):
            await_ready([driver], TIMEOUT_BASE, run.log)
            time.sleep(SETTLE)
            cpu = idle_cpu_percent(worker.pid, run.settings.idle_seconds)
            release([driver])
            seconds = result(driver, timeout, run.log)["latencies"]
        milliseconds = [1000 * s for s in seconds]
        return {P50: percentile(milliseconds, 50), P99: percentile(milliseconds, 99), IDLE_CPU: cpu}

    return measure


# -- 6: producers and a worker at once ----------------------------------------------------
def mixed(side: Side, worker_options: Sequence[str] = ()) -> Measure:
    """Two producers (n/2 each, one call per job) and one worker, timed until all n are done."""

    def measure(run: Run) -> dict[Metric, float]:
        database, n = run.database(), run.settings.n
        fill(run, side, database, 0)
        env = side_environment(side, database, run.durability)
        worker_command = jobkit_worker(database, run.durability) if side == "jobkit" else huey_consumer(*worker_options)
        shares = (n // 2, n - n // 2)
        with contextlib.ExitStack() as stack:
            worker = stack.enter_context(started(worker_command, cwd=run.folder, env=env, log=run.log))
            completed = stack.enter_context(completed_counter(side, database))
            fill(run, side, database, 1)  # a warm-up job: once it is done, the worker is up
            wait_for(alive_and(worker, lambda: completed() >= 1, run.log), TIMEOUT_BASE, f"{side} warm-up", POLL)
            producers = [
                stack.enter_context(
                    started(
                        client("produce", side, database, n=share, durability=run.durability),
                        cwd=run.folder,
                        env=env,
                        log=run.log,
                        barrier=True,
                    )
                )
                for share in shares
            ]
            await_ready(producers, TIMEOUT_BASE, run.log)
            begin = time.perf_counter()
            release(producers)
            done = alive_and(worker, lambda: completed() >= n + 1, run.log)
            wait_for(done, run.timeout(n), f"{side} producers and worker", POLL)
            seconds = time.perf_counter() - begin
            for producer in producers:
                result(producer, run.timeout(n), run.log)
        return {THROUGHPUT: n / seconds}

    return measure


# -- 7: memory ----------------------------------------------------------------------------
def peak_rss_after(run: Run, jobs: int) -> float:
    """The peak RSS (MiB) of a fresh jobkit worker once it has drained *jobs* queued jobs."""
    database = run.database(f"rss-{jobs}.sqlite")
    fill(run, "jobkit", database, jobs)
    with (
        completed_counter("jobkit", database) as completed,
        started(jobkit_worker(database, run.durability), cwd=run.folder, env=environment(), log=run.log) as worker,
    ):
        wait_for(alive_and(worker, lambda: completed() >= jobs, run.log), run.timeout(jobs), "jobkit drain", POLL)
        return peak_rss_mib(worker.pid)


def memory_sizes(n: int) -> tuple[int, int]:
    """The two queue sizes of the memory scenario: n/2 and 5n (10k and 100k for n=20k)."""
    return max(1, n // 2), 5 * n


def memory(run: Run) -> dict[Metric, float]:
    small, large = memory_sizes(run.settings.n)
    low, high = peak_rss_after(run, small), peak_rss_after(run, large)
    return {peak_rss(small): low, peak_rss(large): high, GROWTH: high / low}


# -- the catalogue ------------------------------------------------------------------------
def catalogue() -> list[Scenario]:
    """Every scenario: SQLite's, PostgreSQL's (:mod:`benchmarks.pg_scenarios`), the queue ones, the producer ones."""
    from benchmarks import pg_scenarios, producer_scenarios, queue_scenarios

    listed = sqlite_catalogue()
    listed += pg_scenarios.catalogue(first=len(listed) + 1)
    listed += queue_scenarios.catalogue(first=len(listed) + 1)
    return listed + producer_scenarios.catalogue(first=len(listed) + 1)


def sqlite_catalogue() -> list[Scenario]:
    huey_1, huey_4 = ("-w", "1", "-k", "thread"), ("-w", "4", "-k", "thread")
    return [
        Scenario(
            "enqueue",
            1,
            "enqueue, one call per job, one process",
            (
                Variant("jobkit", "jobkit noop.later()", enqueue("jobkit", "enqueue")),
                Variant("huey", "huey noop()", enqueue("huey", "enqueue")),
                Variant("raw", "raw INSERT, 1 per txn", enqueue("raw", "enqueue")),
            ),
        ),
        Scenario(
            "bulk",
            2,
            "bulk enqueue, 1000 per transaction (huey: no bulk API)",
            (
                Variant("jobkit", "jobkit noop.later_many()", enqueue("jobkit", "bulk")),
                Variant("raw", "raw executemany", enqueue("raw", "bulk")),
            ),
        ),
        Scenario(
            "drain",
            3,
            "drain N queued jobs, results stored, one worker process",
            (
                Variant("jobkit", "jobkit worker (5 threads)", drain_jobkit(1)),
                Variant("huey", "huey -w 1 -k thread", drain_huey(*huey_1)),
                Variant("huey", "huey -w 4 -k thread", drain_huey(*huey_4)),
                Variant("raw", "raw claim 100 / complete", drain_raw(1)),
            ),
        ),
        Scenario(
            "drain2",
            4,
            "drain N queued jobs, two worker processes",
            (
                Variant("jobkit", "jobkit 2 worker processes", drain_jobkit(2)),
                Variant("huey", "huey -w 2 -k process", drain_huey("-w", "2", "-k", "process")),
                Variant("raw", "raw 2 processes", drain_raw(2)),
            ),
        ),
        Scenario(
            "latency",
            5,
            "enqueue-to-start latency and CPU of an idle worker",
            (
                Variant("jobkit", "jobkit worker", latency("jobkit")),
                Variant("huey", "huey consumer (defaults)", latency("huey")),
            ),
        ),
        Scenario(
            "mixed",
            6,
            "2 producer processes + 1 worker, end to end",
            (
                Variant("jobkit", "jobkit worker", mixed("jobkit")),
                Variant("huey", "huey -w 1 -k thread", mixed("huey", huey_1)),
                Variant("huey", "huey -w 4 -k thread", mixed("huey", huey_4)),
            ),
        ),
        Scenario(
            "memory",
            7,
            "jobkit worker peak RSS after N/2 and 5N jobs (durability does not change it)",
            (Variant("jobkit", "jobkit worker", memory),),
            durabilities=("default",),
        ),
    ]


def select(scenarios: Sequence[Scenario], only: str | None) -> list[Scenario]:
    """The scenarios named in *only* (keys or numbers, comma-separated); all when None."""
    if not only:
        return list(scenarios)
    wanted = {part.strip() for part in only.split(",") if part.strip()}
    known = {s.key for s in scenarios} | {str(s.number) for s in scenarios}
    unknown = sorted(wanted - known)
    if unknown:
        choices = ", ".join(f"{s.number}={s.key}" for s in scenarios)
        raise ValueError(f"unknown scenario {', '.join(unknown)}; choose from {choices}")
    return [s for s in scenarios if s.key in wanted or str(s.number) in wanted]


# -- running ------------------------------------------------------------------------------
Progress = Callable[[Case, int, str], None]


def run_scenario(scenario: Scenario, settings: Settings, root: Path, progress: Progress) -> list[Case]:
    """Every round of every variant at every durability, sides interleaved within a round."""
    cases = {
        (durability, variant.label): Case(scenario.key, durability, variant.side, variant.label)
        for durability in scenario.durabilities
        for variant in scenario.variants
    }
    for round_number in range(1, settings.rounds + 1):
        for durability in scenario.durabilities:
            for variant in scenario.variants:
                case = cases[durability, variant.label]
                outcome = measure_once(variant, Run(settings, durability, fresh_folder(root, scenario.key)), case)
                progress(case, round_number, outcome)
    return list(cases.values())


def fresh_folder(root: Path, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=root))


def measure_once(variant: Variant, run: Run, case: Case) -> str:
    """Measure one round into *case*; return "" or the error. The folder is removed either way."""
    try:
        case.add(variant.measure(run))
        return ""
    except BenchError as exc:
        case.errors.append(str(exc))
        return str(exc)
    finally:
        shutil.rmtree(run.folder, ignore_errors=True)


def huey_connections(root: Path) -> dict[str, Any]:
    """What huey's connection runs with at each durability, as huey itself reports it."""
    settings: dict[str, Any] = {}
    for durability in DURABILITIES:
        folder = fresh_folder(root, "huey-settings")
        try:
            database = str(folder / "queue.sqlite")
            settings[durability] = run_json(
                python("benchmarks.huey_jobs"),
                cwd=folder,
                env=side_environment("huey", database, durability),
                timeout=TIMEOUT_BASE,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return settings
