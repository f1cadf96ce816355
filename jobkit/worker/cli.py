"""``python -m jobkit.worker TARGET``: the worker process. Defaults come from :class:`WorkerOptions`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta

from jobkit.errors import JobkitError, StoreError
from jobkit.options import WorkerOptions, parse_queues
from jobkit.store import open_store
from jobkit.worker import logs
from jobkit.worker.entry import run_worker, tick
from jobkit.worker.resolve import JobsModuleError, load_registry, merge
from jobkit.worker.supervisor import SUPERVISED, guard_child, supervise

DEFAULTS = WorkerOptions()
SCHEMA_ENV = "JOBKIT_SCHEMA"  # the PostgreSQL schema when --schema is not given
DEFAULT_SCHEMA = "jobkit"
MOST_SCHEMA_BYTES = 63  # PostgreSQL cuts longer identifiers short


def _days(value: timedelta | None) -> str:
    return "forever" if value is None else f"{value.days}d" if value.days and not value.seconds else str(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobkit.worker",
        description="Run queued jobs from a jobkit store until stopped (SIGTERM or Ctrl-C).",
    )
    parser.add_argument(
        "database",
        metavar="TARGET",
        help="the jobs database: a path, sqlite:///path, or a postgresql:// URL (it must hold jobkit's "
        "tables, unless --create)",
    )
    parser.add_argument(
        "--create",
        action="store_true",
        help="create the database (PostgreSQL: jobkit's tables in --schema) when it does not exist; without it, a "
        "missing one is an error: a mistyped TARGET would otherwise give a worker that waits on an empty queue forever",
    )
    parser.add_argument(
        "--schema",
        metavar="NAME",
        help=f"PostgreSQL: the schema holding jobkit's tables (default: ${SCHEMA_ENV}, else {DEFAULT_SCHEMA})",
    )
    parser.add_argument(
        "--no-listen",
        action="store_true",
        help="PostgreSQL: poll for new jobs instead of LISTEN, and prepare no statements "
        "(behind PgBouncer in transaction mode)",
    )
    parser.add_argument(
        "--jobs",
        action="append",
        default=[],
        metavar="MODULE[:REGISTRY]",
        help="run only the jobs of this module's Registry, importing nothing else (repeatable). "
        "Without it, job names 'module:function' are imported on demand: whoever can write the "
        "database chooses what the worker imports",
    )
    parser.add_argument(
        "--import-from",
        action="append",
        default=list(DEFAULTS.import_from),
        metavar="PACKAGE",
        help="without --jobs, import on demand only modules of this top-level package (repeatable; "
        "default: any module)",
    )
    parser.add_argument(
        "--unresolved-backoff",
        type=float,
        default=DEFAULTS.unresolved_backoff,
        metavar="SECONDS",
        help="a job whose name this worker cannot resolve is retried after this long, doubling per attempt, "
        f"and fails when its attempts are spent (default {DEFAULTS.unresolved_backoff:g})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"jobs run at once per process (default {DEFAULTS.concurrency}, or the sum of --queues' numbers "
        "when each queue has one)",
    )
    parser.add_argument(
        "--queues",
        type=_queues,
        default=None,
        metavar="NAME[=N],...",
        help="serve only these queues (default: every queue), running at most N jobs of a queue at once "
        "(e.g. emails=2,default=8; a queue without N shares --concurrency)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes under one supervisor that restarts a child that dies (default 1)",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULTS.lock_timeout,
        metavar="SECONDS",
        help="how long a claim holds a job without a heartbeat before another worker may take it "
        f"(default {DEFAULTS.lock_timeout:g})",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULTS.poll_interval,
        metavar="SECONDS",
        help=f"longest wait between looks for due jobs; new jobs wake the worker sooner "
        f"(default {DEFAULTS.poll_interval:g})",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULTS.grace,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long running jobs may take to finish before they are given back "
        f"(default {DEFAULTS.grace:g})",
    )
    parser.add_argument(
        "--keep-completed",
        type=_duration,
        default=DEFAULTS.keep_completed,
        metavar="DURATION",
        help="delete completed and cancelled jobs this long after they end, e.g. 12h, 7d; 'forever' keeps them "
        f"(default {_days(DEFAULTS.keep_completed)})",
    )
    parser.add_argument(
        "--keep-failed",
        type=_duration,
        default=DEFAULTS.keep_failed,
        metavar="DURATION",
        help="delete failed jobs this long after they end; 'forever' keeps them "
        f"(default {_days(DEFAULTS.keep_failed)})",
    )
    parser.add_argument(
        "--durability",
        choices=("full", "normal"),
        help="SQLite synchronous mode: full survives power loss (default), normal only a crash "
        "(PostgreSQL's durability is the server's)",
    )
    parser.add_argument(
        "--isolation",
        choices=("thread", "process"),
        default=DEFAULTS.isolation,
        help="where sync handlers run: threads of the worker (default), or a child process each, "
        "which a handler holding the GIL cannot stall and which is killed at the job's timeout",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass: reset expired locks, run up to N jobs, exit")
    mode.add_argument("--burst", action="store_true", help="run until nothing is due, then exit 0")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", "-q", action="store_true", help="log only warnings, errors and the summary")
    verbosity.add_argument("--verbose", "-v", action="store_true", help="log debug detail too")
    return parser


def _queues(text: str) -> dict[str, int | None]:
    try:
        return parse_queues(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _concurrency(args: argparse.Namespace) -> int:
    """--concurrency, else the sum of --queues' numbers when every queue has one, else the default."""
    if args.concurrency is not None:
        return int(args.concurrency)
    limits = list((args.queues or {}).values())
    if limits and all(most is not None for most in limits):
        return sum(most for most in limits if most is not None)
    return DEFAULTS.concurrency


def _duration(text: str) -> timedelta | None:
    from jobkit.control import parse_duration
    from jobkit.errors import ValidationError

    if text.strip().lower() == "forever":
        return None
    try:
        return parse_duration(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


MOST_CONCURRENCY, MOST_PROCESSES = 10_000, 1_000
MOST_SECONDS = 365 * 24 * 3600  # a year: any longer overflows a timer or a lock's expiry


def _out_of_range(args: argparse.Namespace) -> str | None:
    """What is wrong with the first numeric option outside its range (a usage error), or None."""
    for name, value, most in (
        ("concurrency", args.concurrency, MOST_CONCURRENCY),
        ("processes", args.processes, MOST_PROCESSES),
    ):
        if not 1 <= value <= most:
            return f"--{name} must be a whole number from 1 to {most:,}, not {value}"
    for name, value, zero in (
        ("lock-timeout", args.lock_timeout, False),
        ("poll-interval", args.poll_interval, False),
        ("grace", args.grace, True),
        ("unresolved-backoff", args.unresolved_backoff, True),
    ):
        if not ((value >= 0 if zero else value > 0) and value <= MOST_SECONDS):
            least = "from 0 to" if zero else "more than 0 and at most"
            return f"--{name} must be {least} {MOST_SECONDS:,} seconds (a year), not {value:g}"
    return None


def _fail(message: str) -> int:
    print(f"jobkit.worker: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jobkit.worker``: returns the exit code."""
    guard_child()  # a child of --processes stops when its supervisor is gone
    args = _parser().parse_args(argv)
    args.concurrency = _concurrency(args)
    problem = _out_of_range(args)
    if problem is not None:
        return _fail(problem)
    try:
        options = WorkerOptions(
            concurrency=args.concurrency,
            lock_timeout=args.lock_timeout,
            poll_interval=args.poll_interval,
            grace=args.grace,
            keep_completed=args.keep_completed,
            keep_failed=args.keep_failed,
            durability=args.durability or DEFAULTS.durability,
            isolation=args.isolation,
            enforce_timeouts=os.environ.get(SUPERVISED) == "1",
            import_from=args.import_from,
            unresolved_backoff=args.unresolved_backoff,
            queues=args.queues,
        )
    except ValueError as exc:
        return _fail(f"--{str(exc).split(' ', 1)[0].replace('_', '-')}: {exc}")
    logs.configure(logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO, sys.stderr)
    chosen = _store_options(args)
    if isinstance(chosen, str):
        return _fail(chosen)
    try:
        store = open_store(args.database, **chosen)
    except JobkitError as exc:
        return _fail(_store_problem(exc, postgres=is_postgres(args.database)))
    sys.path.insert(0, os.getcwd())
    try:  # in the supervisor too: a bad --jobs is one error, not children failing in a loop
        registry = merge(load_registry(target) for target in args.jobs) if args.jobs else None
    except JobkitError as exc:  # JobsModuleError, or DuplicateJobError from merge
        store.close()
        return _fail(f"--jobs {exc}" if isinstance(exc, JobsModuleError) else f"--jobs: {exc}")
    if args.processes > 1 and not args.once:
        store.close()  # each child opens its own; the parent only checked that it opens
        return supervise(list(argv if argv is not None else sys.argv[1:]), args.processes, burst=args.burst)
    with store:
        if args.once:
            report = tick(store, registry, limit=args.concurrency, options=options)
            print(f"jobkit.worker --once: {report}")
            return 1 if report.unwritten else 0  # the pass could not record what it ran
        report = run_worker(store, registry, options=options, burst=args.burst)
        if args.quiet:  # otherwise the worker's "stopped: <report>" log line was the summary
            print(f"jobkit.worker: {report}", file=sys.stderr)
    return 0


def is_postgres(target: str) -> bool:
    """Whether TARGET names a PostgreSQL database (a ``postgresql://`` or ``postgres://`` URL)."""
    return target.lower().startswith(("postgresql://", "postgres://"))


def _store_options(args: argparse.Namespace) -> dict[str, object] | str:
    """What open_store gets for TARGET, or the usage error of an option that is not this kind of store's."""
    if is_postgres(args.database):
        if args.durability is not None:
            return "--durability is SQLite's; a PostgreSQL server's durability is its own (synchronous_commit)"
        schema = args.schema if args.schema is not None else os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA
        if not schema or len(schema.encode()) > MOST_SCHEMA_BYTES:
            return f"--schema must be a schema name of 1 to {MOST_SCHEMA_BYTES} bytes, not {schema!r}"
        return {"schema": schema, "create": args.create, "listen": not args.no_listen}
    for flag, given in (("--schema", args.schema is not None), ("--no-listen", args.no_listen)):
        if given:
            return f"{flag} is for PostgreSQL TARGETs (postgresql://...), not a SQLite file"
    return {"durability": args.durability or DEFAULTS.durability, "create": args.create}


MISSING_TABLES = "no jobkit tables in schema"  # PostgresStore's words for a schema without them (create=False)


def _store_problem(exc: JobkitError, *, postgres: bool) -> str:
    """The one line for a TARGET that does not open; a missing file or schema says how to create it."""
    text = " ".join(str(exc).split())
    if postgres:
        if MISSING_TABLES in text:
            found = text.split(";", 1)[0]
            return f"{found} (give --create to create them, or run python -m jobkit migrate TARGET first)"
        return text
    path = exc.path if isinstance(exc, StoreError) else None
    if path is not None and not os.path.exists(path):
        return f"{text} (give --create to create it, or enqueue a job into it first)"
    return text
