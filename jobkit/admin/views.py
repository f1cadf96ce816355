"""What the admin command draws for people: rich renderables built from records, ``now`` passed in.

Pure: values in, renderables out. Tables fit an 80-column terminal with full job ids
(people copy them into ``show``): a job's id and name share one cell on two lines, and
long text folds rather than being cut. Piped, the console is as wide as any line
(:func:`jobkit.admin.cli.main`), so nothing folds; rules then stay :data:`RULE_WIDTH` wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.progress_bar import ProgressBar
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from jobkit.model import DEFAULT_QUEUE, Attempt, Backlog, JobRecord, JobStatus, QueueInfo, Schedule, Summary
from jobkit.present import (
    Holder,
    first_line,
    format_age,
    format_relative,
    format_time,
    holders,
    lease_hint,
    pretty,
)

STATUS_STYLE = {
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
}
BLOCKS = ("params", "result", "error", "traceback")  # shown as blocks of text below the fields
RULE_WIDTH = 80  # columns of a rule where there is no terminal's edge to reach (piped)


class _Heading:
    """A titled rule across a terminal's line; piped, :data:`RULE_WIDTH` columns, not the whole (unbounded) line."""

    def __init__(self, title: str) -> None:
        self.title = title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width if options.is_terminal else min(options.max_width, RULE_WIDTH)
        yield from console.render(Rule(self.title, align="left"), options.update_width(width))


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


def _jobs(count: int) -> str:
    return f"{count} job{'s' if count != 1 else ''}"


def backlog_text(backlog: Backlog, now: datetime) -> Text:
    """What is due now (how many, how long the oldest has waited) and what is scheduled for later (how many, the next).

    Each count is followed by its first job's id and name on a line of their own, to copy into ``show``.
    """
    lines = Text("due now: ")
    oldest = backlog.oldest_due
    if backlog.due and oldest is not None:
        waited = format_age(now - oldest.scheduled_for)
        lines.append(f"{_jobs(backlog.due)}; the oldest has waited {waited} (due {format_time(oldest.scheduled_for)})")
        lines.append(f"\n  {oldest.id} {oldest.job_name}")
    else:
        lines.append("none")
    lines.append("\nscheduled for later: ")
    following = backlog.next_scheduled
    if backlog.scheduled and following is not None:
        when = format_relative(following.scheduled_for, now)
        lines.append(f"{_jobs(backlog.scheduled)}; the next is due {when} ({format_time(following.scheduled_for)})")
        lines.append(f"\n  {following.id} {following.job_name}")
    else:
        lines.append("none")
    return lines


def leases_table(found: Sequence[Holder], now: datetime) -> Table:
    """Who holds the running jobs' leases: jobs held, last renewal, first lock expiry, and a hint when overdue."""
    table = _table(f"Leases ({len(found)} holder{'s' if len(found) != 1 else ''})")
    table.add_column("worker", overflow="fold")
    table.add_column("jobs", justify="right")
    table.add_column("renewed", no_wrap=True)
    table.add_column("lock ends", no_wrap=True)
    table.add_column("note", overflow="fold")
    for holder in found:
        hint = lease_hint(holder, now)
        table.add_row(
            Text(holder.worker),
            str(len(holder.jobs)),
            format_relative(holder.renewed_at, now),
            format_relative(holder.expires_at, now) if holder.expires_at else "-",
            Text(hint, style="red") if hint else Text(""),
        )
    return table


def queues_table(infos: Sequence[QueueInfo]) -> Table:
    """One row per queue: its name, paused or not, its jobs by status."""
    table = _table("Queues")
    table.add_column("queue", overflow="fold")
    table.add_column("state")
    for status in JobStatus:
        table.add_column(status.value, justify="right", style=STATUS_STYLE[status])
    for info in infos:
        state = Text("paused", style="bold red") if info.paused else Text("active", style="green")
        table.add_row(Text(info.name), state, *(str(info.counts.get(status, 0)) for status in JobStatus))
    return table


def status_view(summary: Summary, backlog: Backlog, now: datetime, queues: Sequence[QueueInfo] = ()) -> RenderableType:
    """What ``status`` prints (the queues' table when there is more than the default one, or one is paused)."""
    lines = backlog_text(backlog, now)
    lines.append(f"\nfailed in the last hour: {summary.failed_since}\n")
    parts: list[RenderableType] = [counts_table(summary), lines]
    if len(queues) > 1 or any(info.paused or info.name != DEFAULT_QUEUE for info in queues):
        parts.insert(1, queues_table(queues))
    if summary.running:
        parts += [running_table(summary.running, now), leases_table(holders(summary.running), now)]
    else:
        parts.append(Text("no jobs running"))
    return Group(*parts)


def watch_view(
    summary: Summary,
    backlog: Backlog,
    now: datetime,
    *,
    database: str,
    interval: float,
    queues: Sequence[QueueInfo] = (),
) -> RenderableType:
    """One frame of ``watch``: a header line, then what ``status`` shows."""
    header = Text.assemble(
        ("jobkit watch", "bold"), f"  {database}  {format_time(now)}  every {interval:g}s, Ctrl-C stops\n"
    )
    return Group(header, status_view(summary, backlog, now, queues))


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
        elif job.status is JobStatus.PENDING and job.waiting_for:
            detail = f"waits for {job.waiting_for} of the {len(job.depends_on)} jobs it runs after"
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


def job_view(record: JobRecord, timeline: Sequence[Attempt], now: datetime) -> list[RenderableType]:
    """The whole record: every field, then params and result as indented JSON, the error and its traceback,
    then its attempts, oldest first.

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
    parts += [_Heading("params"), Text(pretty(record.params))]
    parts += [_Heading("result"), Text(pretty(record.result) if record.result is not None else "-")]
    parts += [_Heading("error"), Text(record.error or "-")]
    parts += [_Heading("traceback"), Text(record.traceback.rstrip() if record.traceback else "-")]
    parts += [_Heading("attempts"), attempts_table(timeline, now) if timeline else Text("-")]
    return parts


OUTCOME_STYLES = {"completed": "green", "failed": "red", "timeout": "red", "lost": "red", "running": "cyan"}


def attempts_table(timeline: Sequence[Attempt], now: datetime) -> Table:
    """One row an attempt: its number, outcome, worker, when it started and how long it took, its error."""
    table = _table()
    table.add_column("#", justify="right")
    table.add_column("outcome")
    table.add_column("worker", overflow="fold")
    table.add_column("started\ntook", no_wrap=True)
    table.add_column("error", overflow="fold")
    for attempt in timeline:
        took = attempt.ended_at - attempt.started_at if attempt.ended_at and attempt.started_at else None
        table.add_row(
            str(attempt.number),
            Text(attempt.outcome, OUTCOME_STYLES.get(attempt.outcome, "yellow")),
            Text(attempt.worker_id or "-"),
            f"{format_relative(attempt.started_at, now) if attempt.started_at else '-'}\n"
            f"{f'{took.total_seconds():.3f}s' if took is not None else ''}",
            Text(first_line(attempt.error, 80) if attempt.error else ""),
        )
    return table


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
