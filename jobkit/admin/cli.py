"""The admin command, ``python -m jobkit SUBCOMMAND TARGET ...``: what a queue is doing, and acting on it.

TARGET is the jobs database: a file path, ``sqlite:///abs/path`` or a ``postgresql://``
URL (see :func:`jobkit.store.open_store`; on PostgreSQL, ``--schema`` or ``$JOBKIT_SCHEMA``
names the schema, ``jobkit`` by default). It is never created or upgraded here, except by
``migrate``, whose whole job that is. Tables for
people (rich: as wide as the terminal, or whole lines when piped, unless COLUMNS says
otherwise), ``--json`` for scripts (plain :func:`json.dumps`: times as ISO 8601
strings, params and results decoded). The subcommands are in
:mod:`jobkit.admin.commands`; this module reads the arguments, opens the store and
turns what went wrong into an exit code.

Exit codes: 0 done; 1 the command ran but could not do what was asked (an unknown job id
or schedule, a job whose status does not allow it, a locked database); 2 a usage or input
error (bad arguments, duration or status; a missing, foreign, older or too-new database, a
TARGET that names no store, a server that cannot be reached). Every error is one line on stderr, ``jobkit: error: ...``,
and a command that fails its checks changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, NoReturn

from rich.console import Console

from jobkit.admin.commands import (
    Command,
    cmd_cancel,
    cmd_list,
    cmd_migrate,
    cmd_purge,
    cmd_queues,
    cmd_retry,
    cmd_schedules,
    cmd_show,
    cmd_status,
    cmd_watch,
    cmd_web,
)
from jobkit.control import parse_duration
from jobkit.errors import JobkitError, JobNotFound, StoreError, UnknownScheduleError, ValidationError
from jobkit.model import JobStatus, check_queue
from jobkit.store import Store, open_store

PROG = "python -m jobkit"
SCHEMA_ENV = "JOBKIT_SCHEMA"  # the PostgreSQL schema when --schema is not given
DEFAULT_SCHEMA = "jobkit"
USAGE, NOT_DONE = 2, 1  # exit codes: see the module docstring
PIPED_WIDTH = 100_000  # columns when stdout is not a terminal: no line is ever that long


class CommandError(Exception):
    """A command refused: one line for stderr and the exit code."""

    def __init__(self, message: str, code: int = NOT_DONE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``jobkit: error: ...``), not usage text then the error."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix(PROG).strip()
        raise CommandError(f"{where}: {message}" if where else message, USAGE)


def _type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError (ValidationError is one)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = parse.__name__  # argparse names the type in some messages
    return convert


def parse_status(text: str) -> JobStatus:
    """A status by name, any case."""
    try:
        return JobStatus(text.strip().lower())
    except ValueError:
        raise ValueError(f"bad status {text!r}: choose from {', '.join(s.value for s in JobStatus)}") from None


def parse_queue(text: str) -> str:
    """A queue's name, as jobkit allows them."""
    return check_queue(text.strip(), what="a queue")


def parse_finished(text: str) -> list[JobStatus]:
    """``completed``, or a comma list ``completed,cancelled``: finished statuses only."""
    chosen = []
    for part in text.split(","):
        status = parse_status(part)
        if not status.finished:
            raise ValueError(f"cannot purge {status.value} jobs: choose from completed, failed, cancelled")
        chosen.append(status)
    return chosen


MOST_COUNT = 2**63 - 1  # the largest LIMIT a database takes
MOST_INTERVAL = 365 * 24 * 3600  # a year: any longer overflows a timer


def parse_count(text: str) -> int:
    """A whole number from 1 to :data:`MOST_COUNT`."""
    try:
        value = int(text)
    except ValueError:  # not a number, or more digits than Python turns into an int
        value = 0
    if not 1 <= value <= MOST_COUNT:
        raise ValueError(f"give a whole number of at least 1 and at most {MOST_COUNT}, not {text[:40]!r}")
    return value


def parse_interval(text: str) -> float:
    """Seconds between frames: a number from 0 to :data:`MOST_INTERVAL`."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MOST_INTERVAL:
        raise ValueError(f"give a number of seconds from 0 to {MOST_INTERVAL:,} (a year), not {text[:40]!r}")
    return value


MOST_AGE = timedelta(days=36_600)  # a century: further back than this, the calendar soon ends


def parse_age(text: str) -> timedelta:
    """A duration (see :func:`jobkit.control.parse_duration`) of at most :data:`MOST_AGE`."""
    age = parse_duration(text)
    if age > MOST_AGE:
        raise ValueError(f"bad duration {text[:40]!r}: at most {MOST_AGE.days}d (a century)")
    return age


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="See what a jobkit queue is doing, and act on it. Every subcommand takes the TARGET "
        "database first (a path or sqlite:///path, or a postgresql:// URL), and --json for output that scripts "
        "can read.",
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "database",
        metavar="TARGET",
        help="the jobs database: a path or sqlite:///path, or a postgresql:// URL (created or upgraded only by "
        "migrate)",
    )
    common.add_argument("--json", action="store_true", help="print plain JSON for scripts instead of tables")
    common.add_argument(
        "--schema",
        type=_type(parse_schema),
        metavar="NAME",
        help=f"PostgreSQL: the schema holding jobkit's tables (default: ${SCHEMA_ENV}, else {DEFAULT_SCHEMA})",
    )
    common.add_argument(
        "--no-listen",
        action="store_true",
        help="PostgreSQL: poll instead of LISTEN, and prepare no statements (behind PgBouncer in transaction mode)",
    )
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    def add(name: str, run: Command | None, summary: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=summary, description=summary)
        command.set_defaults(run=run)
        return command

    add(
        "status",
        cmd_status,
        "counts by status and job name, jobs due now and scheduled for later, running jobs, who holds their "
        "leases (with a hint when one is overdue for renewal), recent failures",
    )

    listing = add("list", cmd_list, "jobs, newest first")
    listing.add_argument("--status", type=_type(parse_status), help="only jobs in this status")
    listing.add_argument("--name", help="only jobs of this job name")
    listing.add_argument("--correlation-id", help="only jobs with this correlation id")
    listing.add_argument("--queue", type=_type(parse_queue), help="only jobs of this queue")
    listing.add_argument("--limit", type=_type(parse_count), default=50, help="at most this many (default 50)")

    show = add("show", cmd_show, "one job: every field, params, result, error and traceback")
    show.add_argument("id", metavar="ID", help="the job's id")

    again = add("retry", cmd_retry, "send failed or cancelled jobs back to pending with fresh attempts")
    again.add_argument("ids", metavar="ID", nargs="*", help="ids of failed or cancelled jobs")
    again.add_argument("--failed", action="store_true", help="every failed job (of --name, if given)")
    again.add_argument("--name", help="with --failed: only jobs of this job name")

    stop = add("cancel", cmd_cancel, "cancel pending jobs; ask running ones to stop")
    stop.add_argument("ids", metavar="ID", nargs="+", help="ids of pending or running jobs")

    clean = add("purge", cmd_purge, "delete finished jobs older than a duration")
    clean.add_argument(
        "--status",
        type=_type(parse_finished),
        action="extend",
        required=True,
        metavar="STATUS",
        help="completed, failed or cancelled; repeat it or give a comma list",
    )
    clean.add_argument(
        "--older-than",
        type=_type(parse_age),
        required=True,
        metavar="DURATION",
        help="finished longer ago than this: 90s, 30m, 12h, 7d, 2w",
    )

    cron = add("schedules", cmd_schedules, "list schedules, or enable or disable one")
    cron.add_argument("action", nargs="?", choices=("list", "enable", "disable"), default="list")
    cron.add_argument("schedule", metavar="NAME", nargs="?", help="the schedule to enable or disable")

    lanes = add("queues", cmd_queues, "list the queues (paused or not, jobs by status), or pause or resume one")
    lanes.add_argument("action", nargs="?", choices=("list", "pause", "resume"), default="list")
    lanes.add_argument("queue", metavar="NAME", nargs="?", type=_type(parse_queue), help="the queue to pause or resume")

    live = add("watch", cmd_watch, "a live status view with a progress bar per running job, until Ctrl-C")
    live.add_argument(
        "--interval", type=_type(parse_interval), default=1.0, help="seconds between refreshes (default 1)"
    )
    frames = live.add_mutually_exclusive_group()
    frames.add_argument("--once", action="store_true", help="draw one frame and exit")
    frames.add_argument("--iterations", type=_type(parse_count), metavar="N", help="draw N frames and exit")

    web = add("web", cmd_web, 'the web dashboard (needs pip install "jobkit-queue[web]"), until Ctrl-C')
    web.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    web.add_argument("--port", type=_type(parse_port), default=8787, help="the port (default 8787)")
    web.add_argument("--read-only", action="store_true", help="show no controls; every action answers 403")
    web.add_argument("--base-path", default="", metavar="PATH", help="serve under this prefix, as /jobs")
    web.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help="HTTP Basic credentials, needed to listen beyond loopback (default: $JOBKIT_WEB_AUTH)",
    )

    add(
        "migrate",
        None,  # opens no store: main() runs it
        "create jobkit's tables (a new SQLite file, or a PostgreSQL schema), or bring older ones up to this "
        "jobkit's version; says what it found and what it did",
    )
    return parser


def _check(args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see, found before the database is opened."""
    problem = None
    if args.command == "retry":
        if args.failed and args.ids:
            problem = "give job ids or --failed, not both"
        elif not args.failed and not args.ids:
            problem = "give the ids of the jobs to retry, or --failed"
        elif args.name is not None and not args.failed:
            problem = "--name goes with --failed"
    elif args.command == "schedules":
        if args.action == "list" and args.schedule is not None:
            problem = f"unexpected {args.schedule!r}: say 'enable NAME' or 'disable NAME'"
        elif args.action != "list" and args.schedule is None:
            problem = f"'{args.action}' needs the NAME of a schedule"
    elif args.command == "queues":
        if args.action == "list" and args.queue is not None:
            problem = f"unexpected {args.queue!r}: say 'pause NAME' or 'resume NAME'"
        elif args.action != "list" and args.queue is None:
            problem = f"'{args.action}' needs the NAME of a queue"
    elif args.command == "web":
        problem = web_problem(args)
    if problem is not None:
        raise CommandError(f"{args.command}: {problem}", USAGE)


def web_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``web``'s options, if anything: credentials and address are checked before opening."""
    try:
        from jobkit.web.security import AUTH_ENV, check_bind, parse_auth  # the web extra, only for this command
    except ImportError as exc:
        return f'the dashboard needs its extra ({exc}): pip install "jobkit-queue[web]"'

    given = args.auth or os.environ.get(AUTH_ENV) or None
    try:
        args.auth = parse_auth(given) if given else None
        check_bind(args.host, args.auth)
    except ValidationError as exc:
        return str(exc)
    if args.base_path and not args.base_path.startswith("/"):
        return f"--base-path must start with /, not {args.base_path!r}"
    return None


def parse_port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"a port is 1 to 65535, not {text}")
    return port


MOST_SCHEMA_BYTES = 63  # PostgreSQL cuts longer identifiers short


def parse_schema(text: str) -> str:
    """A PostgreSQL schema name: 1 to :data:`MOST_SCHEMA_BYTES` bytes."""
    if not text or len(text.encode()) > MOST_SCHEMA_BYTES:
        raise ValueError(f"give a schema name of 1 to {MOST_SCHEMA_BYTES} bytes, not {text[:80]!r}")
    return text


def store_options(args: argparse.Namespace) -> dict[str, object]:
    """What open_store gets besides TARGET: the PostgreSQL options, refused for any other store."""
    if is_postgres(args.database):
        schema = args.schema or os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA
        try:
            return {"schema": parse_schema(schema), "listen": not args.no_listen}
        except ValueError as exc:  # only $JOBKIT_SCHEMA gets here: argparse checked --schema
            raise CommandError(f"${SCHEMA_ENV}: {exc}", USAGE) from None
    for flag, given in (("--schema", args.schema is not None), ("--no-listen", args.no_listen)):
        if given:
            raise CommandError(f"{flag} is for PostgreSQL TARGETs (postgresql://...), not {args.database}", USAGE)
    return {}


def _open(args: argparse.Namespace) -> Store:
    options = store_options(args)
    try:  # an admin command changes only what it says
        return open_store(args.database, create=False, upgrade=False, **options)
    except JobkitError as exc:
        raise CommandError(_open_problem(str(exc), options), USAGE) from None


def _open_problem(text: str, options: dict[str, object]) -> str:
    """The store's words for a PostgreSQL schema that does not open as it is, said as a command's user needs them."""
    migrate = "python -m jobkit migrate TARGET" + (
        f" --schema {options['schema']}" if options.get("schema", DEFAULT_SCHEMA) != DEFAULT_SCHEMA else ""
    )
    if "no jobkit tables in schema" in text:  # PostgresStore with create=False
        return f"{text.split(';', 1)[0]}; run {migrate} to create them (or give the --schema they are in)"
    if "run python -m jobkit migrate TARGET" in text:  # an older schema, with upgrade=False
        return f"{text.split('; run python', 1)[0]}; run {migrate} to upgrade it"
    return text


def is_postgres(target: str) -> bool:
    """Whether TARGET names a PostgreSQL database (a ``postgresql://`` or ``postgres://`` URL)."""
    return target.lower().startswith(("postgresql://", "postgres://"))


def _console() -> Console:
    """A console for stdout: the terminal's width on one; piped, whole lines (or COLUMNS, when set)."""
    console = Console(markup=False, emoji=False, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # A pipe or a file has no edge: rich's 80-column guess would split names and messages over rows.
        console.width = PIPED_WIDTH
    return console


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """``python -m jobkit``: run one subcommand and return its exit code."""
    out = console or _console()
    try:
        args = _parser().parse_args(argv)
        _check(args)
        if args.run is None:
            return _migrate(args, out)
        with _open(args) as store:
            code: int = args.run(store, args, out)
            return code
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    except (JobNotFound, UnknownScheduleError) as exc:
        return _fail(str(exc), NOT_DONE)
    except ValidationError as exc:
        return _fail(str(exc), USAGE)
    except (StoreError, JobkitError) as exc:
        return _fail(str(exc), NOT_DONE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, and keep Python's exit flush from complaining.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return NOT_DONE
    except Exception as exc:  # never a traceback: one line saying what went wrong
        return _fail(f"{type(exc).__name__}: {exc}", NOT_DONE)


def _migrate(args: argparse.Namespace, console: Console) -> int:
    """``migrate``: every refusal (unreachable, foreign, too new) is a problem with TARGET, exit 2."""
    try:
        return cmd_migrate(args, console, **store_options(args))
    except JobkitError as exc:
        raise CommandError(str(exc), USAGE) from None


def _fail(message: str, code: int) -> int:
    print(f"jobkit: error: {' '.join(message.split())}", file=sys.stderr)
    return code
