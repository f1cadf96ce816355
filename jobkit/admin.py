"""The admin command, ``python -m jobkit SUBCOMMAND DB ...``: what a queue is doing, and acting on it.

Tables for people (rich), ``--json`` for scripts (plain :func:`json.dumps`: times as ISO 8601
strings, params and results decoded). Each subcommand is one ``cmd_*`` function taking the
open store, the parsed arguments and a console; the ``*_json`` and ``*_view`` helpers are
pure (values in, data or renderables out, ``now`` passed in).

Exit codes: 0 done; 1 the command ran but could not do what was asked (an unknown job id
or schedule, a job whose status does not allow it, a locked database); 2 a usage or input
error (bad arguments, duration or status; a missing, foreign or too-new database). Every
error is one line on stderr, ``jobkit: error: ...``, and a command that fails its checks
changes nothing. The database file is never created here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

import attrs
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from jobkit.control import cancel, parse_duration, purge, retry
from jobkit.errors import JobkitError, JobNotFound, StoreError, UnknownScheduleError, ValidationError
from jobkit.model import JobRecord, JobStatus, Schedule, Summary, utc_now
from jobkit.recurring import disable, enable, schedules
from jobkit.store import Store
from jobkit.stores.sqlite import SqliteStore

PROG = "python -m jobkit"
FAILED_WINDOW = timedelta(hours=1)  # "failures in the last hour" in status and watch
RETRY_BATCH = 500  # ids sent back per transaction by retry --failed
EVERY = 2**62  # list_jobs has no "no limit": a limit no table reaches
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
SHOWN = 20  # jobs listed after a retry; the rest are counted
STATUS_STYLE = {
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
}

USAGE, NOT_DONE = 2, 1  # exit codes: see the module docstring


class CommandError(Exception):
    """A command refused: one line for stderr and the exit code."""

    def __init__(self, message: str, code: int = NOT_DONE) -> None:
        super().__init__(message)
        self.code = code


Command = Callable[[Store, argparse.Namespace, Console], int]


# -- pure helpers: formatting ---------------------------------------------------------
def format_time(value: datetime | None) -> str:
    """``2026-01-01 12:00:03Z`` (UTC, to the second), or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def format_age(delta: timedelta) -> str:
    """A duration for people, two units at most: ``45s``, ``3m 12s``, ``2h 5m``, ``3d 4h``."""
    total = max(0, int(delta.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_relative(value: datetime, now: datetime) -> str:
    """``3m 12s ago``, or ``in 5m 0s`` for a time to come."""
    delta = now - value
    return f"{format_age(delta)} ago" if delta >= timedelta(0) else f"in {format_age(-delta)}"


def format_since(value: datetime | None, now: datetime) -> str:
    """``2026-01-01 12:00:03Z (3m 12s ago)``, or ``-``."""
    if value is None:
        return "-"
    return f"{format_time(value)} ({format_relative(value, now)})"


def first_line(text: str | None, width: int = 60) -> str:
    """The first line of *text*, cut to *width* characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def decoded(text: str | None) -> Any:
    """Stored JSON text as data; text that is not JSON stays text."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def pretty(text: str | None) -> str:
    """Stored JSON text indented for reading."""
    value = decoded(text)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, JobStatus):
        return value.value
    return value


def job_json(record: JobRecord) -> dict[str, Any]:
    """Every field of *record* as JSON data: ISO 8601 times, params and result decoded."""
    data = {field.name: _plain(getattr(record, field.name)) for field in attrs.fields(JobRecord)}
    data["params"] = decoded(record.params)
    data["result"] = decoded(record.result)
    return data


def schedule_json(entry: Schedule) -> dict[str, Any]:
    """Every field of a schedule as JSON data, params decoded."""
    data = {field.name: _plain(getattr(entry, field.name)) for field in attrs.fields(Schedule)}
    data["params"] = decoded(entry.params)
    return data


def summary_json(summary: Summary, now: datetime) -> dict[str, Any]:
    """What ``status --json`` prints: counts, counts by name, oldest pending, running jobs, recent failures."""
    oldest = summary.oldest_pending
    return {
        "at": now.isoformat(),
        "counts": {status.value: summary.counts.get(status, 0) for status in JobStatus},
        "by_name": {
            name: {status.value: counts.get(status, 0) for status in JobStatus}
            for name, counts in summary.by_name.items()
        },
        "oldest_pending": oldest.isoformat() if oldest else None,
        "oldest_pending_age": (now - oldest).total_seconds() if oldest else None,
        "running": [job_json(job) for job in summary.running],
        "failed_last_hour": summary.failed_since,
    }


# -- pure helpers: views --------------------------------------------------------------
# Tables fit an 80-column terminal with full job ids (people copy them into `show`): a job's
# id and name share one cell on two lines, and long text folds rather than being cut.


def _table(title: str | None = None) -> Table:
    return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)


def _status_text(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


def _job_cell(job: JobRecord) -> Text:
    return Text.assemble(job.id, "\n", (job.job_name, "dim"))


def counts_table(summary: Summary) -> Table:
    """Jobs by name and status, with a total row."""
    table = _table("Jobs")
    table.add_column("job", overflow="fold")
    for status in JobStatus:
        table.add_column(status.value, justify="right", style=STATUS_STYLE[status])
    for name, counts in summary.by_name.items():
        table.add_row(Text(name), *(str(counts.get(status, 0)) for status in JobStatus))
    table.add_section()
    table.add_row(Text("all jobs", style="bold"), *(str(summary.counts.get(s, 0)) for s in JobStatus))
    return table


def running_table(running: Sequence[JobRecord], now: datetime) -> Table:
    """Running jobs, each with a progress bar, its message, attempt and time running."""
    table = _table(f"Running ({len(running)})")
    table.add_column("id\njob", no_wrap=True, min_width=36)
    table.add_column("progress", overflow="fold")
    table.add_column("attempt", justify="right")
    table.add_column("for", justify="right", no_wrap=True)
    for job in running:
        started = job.worker_started_at
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=100, completed=job.progress, width=14), f"{job.progress:>3}%")
        message = job.progress_message or ""
        if job.cancel_requested:
            message = f"{message} (cancel requested)".lstrip()
        table.add_row(
            _job_cell(job),
            Group(bar, Text(message)),
            f"{job.attempt_count}/{job.max_attempts}",
            format_age(now - started) if started else "-",
        )
    return table


def status_view(summary: Summary, now: datetime) -> RenderableType:
    """What ``status`` prints."""
    oldest = summary.oldest_pending
    lines = Text()
    lines.append("oldest pending: ")
    lines.append(format_since(oldest, now) if oldest else "none")
    lines.append(f"\nfailed in the last hour: {summary.failed_since}\n")
    parts: list[RenderableType] = [counts_table(summary), lines]
    parts.append(running_table(summary.running, now) if summary.running else Text("no jobs running"))
    return Group(*parts)


def watch_view(summary: Summary, now: datetime, *, database: str, interval: float) -> RenderableType:
    """One frame of ``watch``: a header line, then what ``status`` shows."""
    header = Text.assemble(
        ("jobkit watch", "bold"), f"  {database}  {format_time(now)}  every {interval:g}s, Ctrl-C stops\n"
    )
    return Group(header, status_view(summary, now))


def jobs_table(records: Sequence[JobRecord], now: datetime) -> Table:
    """One row per job, in the given order: id and name, status and attempts, age, error or progress."""
    table = _table()
    table.add_column("id\njob", no_wrap=True, min_width=36)
    table.add_column("status\ntries", no_wrap=True)
    table.add_column("created\nended", no_wrap=True)
    table.add_column("error\nprogress", overflow="fold")
    for job in records:
        if job.status is JobStatus.RUNNING:
            detail = f"{job.progress}% {job.progress_message or ''}".rstrip()
        else:
            detail = first_line(job.error, 80)
        ended = format_relative(job.completed_at, now) if job.completed_at else ""
        table.add_row(
            _job_cell(job),
            Text.assemble(_status_text(job.status), f"\n{job.attempt_count}/{job.max_attempts}"),
            f"{format_relative(job.created_at, now)}\n{ended}",
            Text(detail),
        )
    return table


BLOCKS = ("params", "result", "error", "traceback")  # shown as blocks of text below the fields


def job_view(record: JobRecord, now: datetime) -> list[RenderableType]:
    """The whole record: every field, then params and result as indented JSON, the error and its traceback.

    The blocks of text are :class:`Text`: print them unwrapped, as they are (a traceback's lines stay whole).
    """
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    for field in attrs.fields(JobRecord):
        if field.name in BLOCKS:
            continue
        value = getattr(record, field.name)
        if isinstance(value, JobStatus):
            cell: Text = _status_text(value)
        elif isinstance(value, datetime):
            cell = Text(f"{value.isoformat()} ({format_relative(value, now)})")
        else:
            cell = Text("-" if value is None else str(value))
        fields.add_row(field.name, cell)
    parts: list[RenderableType] = [fields]
    parts += [Rule("params", align="left"), Text(pretty(record.params))]
    parts += [Rule("result", align="left"), Text(pretty(record.result) if record.result is not None else "-")]
    parts += [Rule("error", align="left"), Text(record.error or "-")]
    parts += [Rule("traceback", align="left"), Text(record.traceback.rstrip() if record.traceback else "-")]
    return parts


def schedules_table(entries: Sequence[Schedule]) -> Table:
    """One row per schedule: name and job, expression and timezone, whether on, next and last runs."""
    table = _table()
    table.add_column("name\njob", overflow="fold")
    table.add_column("cron\ntimezone", overflow="fold")
    table.add_column("on")
    table.add_column("next run\nlast run", no_wrap=True)
    table.add_column("last job", overflow="fold")
    for entry in entries:
        table.add_row(
            Text.assemble(entry.name, "\n", (entry.job_name, "dim")),
            Text(f"{entry.cron_expression}\n{entry.timezone}"),
            Text("yes", "green") if entry.enabled else Text("no", "red"),
            f"{format_time(entry.next_run_at)}\n{format_time(entry.last_run_at)}",
            Text(entry.last_job_id or "-"),
        )
    return table


def _print_json(data: Any, *, indent: int | None = 2) -> None:
    sys.stdout.write(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# -- the subcommands ------------------------------------------------------------------
def cmd_status(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Counts by status and by job name, the oldest pending job, running jobs, failures in the last hour."""
    now = utc_now()
    summary = store.summary(since=now - FAILED_WINDOW)
    if args.json:
        _print_json(summary_json(summary, now))
    else:
        console.print(status_view(summary, now))
    return 0


def cmd_list(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Jobs matching the filters, newest first."""
    records = store.list_jobs(status=args.status, name=args.name, correlation_id=args.correlation_id, limit=args.limit)
    if args.json:
        _print_json([job_json(job) for job in records])
        return 0
    if not records:
        console.print("no jobs match")
        return 0
    console.print(jobs_table(records, utc_now()))
    if len(records) == args.limit:
        console.print(f"the {args.limit} newest shown; --limit N for more")
    return 0


def cmd_show(store: Store, args: argparse.Namespace, console: Console) -> int:
    """One job, whole."""
    (record,) = _lookup(store, [args.id])
    if args.json:
        _print_json(job_json(record))
    else:
        for part in job_view(record, utc_now()):
            console.print(part, soft_wrap=isinstance(part, Text))
    return 0


def cmd_retry(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Failed (or cancelled) jobs back to pending with fresh attempts."""
    if args.failed:
        ids = [job.id for job in store.list_jobs(status=JobStatus.FAILED, name=args.name, limit=EVERY)]
    else:
        records = _lookup(store, args.ids)
        refused = [job for job in records if job.status not in RETRYABLE]
        if refused:
            raise CommandError(
                f"{_jobs_are(refused)}; only failed or cancelled jobs can be retried (nothing was retried)"
            )
        ids = [job.id for job in records]
    sent: list[str] = []
    for start in range(0, len(ids), RETRY_BATCH):
        sent += retry(store, ids[start : start + RETRY_BATCH])
    if args.json:
        _print_json({"retried": sent})
    elif not sent:
        console.print("no failed jobs to retry" if args.failed else "nothing was retried")
    else:
        console.print(f"sent back to pending with fresh attempts: {len(sent)} job{'s' if len(sent) != 1 else ''}")
        console.print(jobs_table([job for job in (store.get(i) for i in sent[:SHOWN]) if job is not None], utc_now()))
        if len(sent) > SHOWN:
            console.print(f"and {len(sent) - SHOWN} more")
    done = set(sent)
    missed = [job_id for job_id in ids if job_id not in done]
    if missed and not args.failed:
        raise CommandError(f"not retried, their status changed meanwhile: {', '.join(missed)}")
    return 0


def cmd_cancel(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Pending jobs end cancelled; running ones are asked to stop."""
    records = _lookup(store, args.ids)
    refused = [job for job in records if job.status in (JobStatus.COMPLETED, JobStatus.FAILED)]
    if refused:
        raise CommandError(f"{_jobs_are(refused)} already; there is nothing to cancel (nothing was cancelled)")
    cancelled: list[str] = []
    stopping: list[str] = []
    lines = Text()
    for job in records:
        after = cancel(store, job.id)
        if after.status is JobStatus.CANCELLED:
            cancelled.append(after.id)
            note = "already cancelled" if job.status is JobStatus.CANCELLED else "cancelled"
        elif after.status is JobStatus.RUNNING and after.cancel_requested:
            stopping.append(after.id)
            note = "running: asked to stop; it ends cancelled when its handler stops"
        else:
            note = f"{after.status.value}: finished before it could be cancelled"
        lines.append(f"{after.id} {note}\n")
    if args.json:
        _print_json({"cancelled": cancelled, "stopping": stopping})
    else:
        console.print(lines, end="")
    if len(cancelled) + len(stopping) < len(records):
        raise CommandError("some jobs finished before they could be cancelled")
    return 0


def cmd_purge(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Delete finished jobs of the given statuses that finished longer ago than --older-than."""
    statuses = list(dict.fromkeys(args.status))
    now = utc_now()
    before = now - args.older_than
    deleted = purge(store, older_than=args.older_than, statuses=statuses, clock=lambda: now)
    names = [status.value for status in statuses]
    if args.json:
        _print_json({"deleted": deleted, "statuses": names, "before": before.isoformat()})
    else:
        console.print(
            f"deleted {deleted} job{'s' if deleted != 1 else ''} ({', '.join(names)}) "
            f"that finished before {format_time(before)}"
        )
    return 0


def cmd_schedules(store: Store, args: argparse.Namespace, console: Console) -> int:
    """List schedules, or enable or disable one."""
    if args.action == "list":
        entries = schedules(store)
        if args.json:
            _print_json([schedule_json(entry) for entry in entries])
        elif entries:
            console.print(schedules_table(entries))
        else:
            console.print("no schedules")
        return 0
    switch = enable if args.action == "enable" else disable
    entry = switch(store, args.schedule)
    if args.json:
        _print_json(schedule_json(entry))
    else:
        state = f"enabled, next run {format_time(entry.next_run_at)}" if entry.enabled else "disabled"
        console.print(Text(f"{entry.name}: {state}"))
    return 0


def cmd_watch(store: Store, args: argparse.Namespace, console: Console) -> int:
    """A live status view, refreshed every --interval seconds until Ctrl-C (or --iterations frames)."""
    frames = 1 if args.once else args.iterations

    def frame() -> tuple[Summary, datetime]:
        now = utc_now()
        return store.summary(since=now - FAILED_WINDOW), now

    def view() -> RenderableType:
        summary, now = frame()
        return watch_view(summary, now, database=args.database, interval=args.interval)

    def pause(shown: int) -> bool:
        """Whether to draw another frame, after waiting for it."""
        if frames is not None and shown >= frames:
            return False
        time.sleep(args.interval)
        return True

    shown = 0
    try:
        if args.json:  # one JSON object per line per frame
            while True:
                summary, now = frame()
                _print_json(summary_json(summary, now), indent=None)
                shown += 1
                if not pause(shown):
                    break
        elif console.is_terminal:
            with Live(view(), console=console, auto_refresh=False) as live:
                shown = 1
                while pause(shown):
                    live.update(view(), refresh=True)
                    shown += 1
        else:  # piped: every frame, one after another
            while True:
                console.print(view())
                shown += 1
                if not pause(shown):
                    break
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends
    return 0


# -- plumbing -------------------------------------------------------------------------
def _jobs_are(records: Sequence[JobRecord]) -> str:
    """``job X is completed`` or ``jobs X (completed), Y (pending) are``."""
    if len(records) == 1:
        return f"job {records[0].id} is {records[0].status.value}"
    listed = ", ".join(f"{job.id} ({job.status.value})" for job in records)
    return f"jobs {listed} are"


def _lookup(store: Store, ids: Iterable[str]) -> list[JobRecord]:
    """The records of *ids* (each once, in order); every unknown id refused before anything is done."""
    unique = list(dict.fromkeys(ids))
    found = {job_id: store.get(job_id) for job_id in unique}
    missing = [job_id for job_id, job in found.items() if job is None]
    if len(missing) == 1:
        raise CommandError(str(JobNotFound(missing[0])))
    if missing:
        raise CommandError(f"no jobs with ids {', '.join(repr(job_id) for job_id in missing)}")
    return [job for job in found.values() if job is not None]


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


def parse_finished(text: str) -> list[JobStatus]:
    """``completed``, or a comma list ``completed,cancelled``: finished statuses only."""
    chosen = []
    for part in text.split(","):
        status = parse_status(part)
        if not status.finished:
            raise ValueError(f"cannot purge {status.value} jobs: choose from completed, failed, cancelled")
        chosen.append(status)
    return chosen


def parse_count(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"give a whole number of at least 1, not {text!r}")
    return value


def parse_interval(text: str) -> float:
    """Seconds between frames: a number, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(f"give a number of seconds, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="See what a jobkit queue is doing, and act on it. Every subcommand takes the database "
        "path first, and --json for output that scripts can read.",
    )
    common = _Parser(add_help=False)
    common.add_argument("database", metavar="DB", help="path of the jobs database (never created by this command)")
    common.add_argument("--json", action="store_true", help="print plain JSON for scripts instead of tables")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    def add(name: str, run: Command, summary: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=summary, description=summary)
        command.set_defaults(run=run)
        return command

    add("status", cmd_status, "counts by status and job name, oldest pending, running jobs, recent failures")

    listing = add("list", cmd_list, "jobs, newest first")
    listing.add_argument("--status", type=_type(parse_status), help="only jobs in this status")
    listing.add_argument("--name", help="only jobs of this job name")
    listing.add_argument("--correlation-id", help="only jobs with this correlation id")
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
        type=_type(parse_duration),
        required=True,
        metavar="DURATION",
        help="finished longer ago than this: 90s, 30m, 12h, 7d, 2w",
    )

    cron = add("schedules", cmd_schedules, "list schedules, or enable or disable one")
    cron.add_argument("action", nargs="?", choices=("list", "enable", "disable"), default="list")
    cron.add_argument("schedule", metavar="NAME", nargs="?", help="the schedule to enable or disable")

    live = add("watch", cmd_watch, "a live status view with a progress bar per running job, until Ctrl-C")
    live.add_argument(
        "--interval", type=_type(parse_interval), default=1.0, help="seconds between refreshes (default 1)"
    )
    frames = live.add_mutually_exclusive_group()
    frames.add_argument("--once", action="store_true", help="draw one frame and exit")
    frames.add_argument("--iterations", type=_type(parse_count), metavar="N", help="draw N frames and exit")
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
    if problem is not None:
        raise CommandError(f"{args.command}: {problem}", USAGE)


def _open(path: str) -> SqliteStore:
    try:
        return SqliteStore(path, create=False, upgrade=False)  # an admin command changes only what it says
    except JobkitError as exc:
        raise CommandError(str(exc), USAGE) from None


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """``python -m jobkit``: run one subcommand and return its exit code."""
    out = console or Console(markup=False, emoji=False, highlight=False)
    try:
        args = _parser().parse_args(argv)
        _check(args)
        with _open(args.database) as store:
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


def _fail(message: str, code: int) -> int:
    print(f"jobkit: error: {' '.join(message.split())}", file=sys.stderr)
    return code
