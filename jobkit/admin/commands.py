"""The admin subcommands: each ``cmd_*`` takes the open store, the parsed arguments and a console.

A command prints tables for people, or ``--json`` for scripts, and returns its exit code.
It refuses by raising a jobkit error (:class:`JobNotFound`, :class:`JobStateError`, ...),
which :func:`jobkit.admin.cli.main` turns into one line on stderr and an exit code. The
all-or-nothing checks of ``retry`` and ``cancel`` are the library's (:mod:`jobkit.control`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import attrs
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from jobkit.admin.views import job_view, jobs_table, queues_table, schedules_table, status_view, watch_view
from jobkit.control import cancel_many, pages, pause, purge, queues, resume, retry
from jobkit.errors import JobNotFound, JobStateError, StoreError
from jobkit.model import Backlog, JobStatus, QueueInfo, Summary
from jobkit.options import BATCH
from jobkit.present import attempt_json, format_time, job_json, queue_json, schedule_json, summary_json
from jobkit.recurring import disable, enable, schedules
from jobkit.store import Store, open_store

FAILED_WINDOW = timedelta(hours=1)  # "failures in the last hour" in status and watch
REDRAW_AT_MOST = 0.1  # seconds between two redraws of the live view
PAGE = BATCH  # jobs read, and sent back by retry --failed, per page: one short transaction each
SHOWN = 20  # jobs listed after a retry; the rest are counted

Command = Callable[[Store, argparse.Namespace, Console], int]


def cmd_status(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Counts by status and name, what is due and scheduled, running jobs and their leases, recent failures."""
    summary, backlog, now, queues = _status(store)
    if args.json:
        _print_json(summary_json(summary, now, backlog=backlog, queues=queues))
    else:
        console.print(status_view(summary, backlog, now, queues))
    return 0


def _status(store: Store) -> tuple[Summary, Backlog, datetime, list[QueueInfo]]:
    """What ``status`` and each frame of ``watch`` show, read at one ``now``.

    That ``now`` is the store's, so ages and leases read in the time the workers follow, not this host's.
    """
    now = store.now()
    return store.summary(since=now - FAILED_WINDOW), store.backlog(now=now), now, store.queues()


def cmd_list(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Jobs matching the filters, newest first."""
    records = store.list_jobs(
        status=args.status, name=args.name, correlation_id=args.correlation_id, queue=args.queue, limit=args.limit
    )
    if args.json:
        _print_json([job_json(job) for job in records])
        return 0
    if not records:
        console.print("no jobs match")
        return 0
    console.print(jobs_table(records, store.now()))
    if len(records) == args.limit:
        console.print(f"the {args.limit} newest shown; --limit N for more")
    return 0


def cmd_show(store: Store, args: argparse.Namespace, console: Console) -> int:
    """One job, whole."""
    record = store.get(args.id)
    if record is None:
        raise JobNotFound(args.id)
    timeline = store.attempts(args.id)
    if args.json:
        _print_json({**job_json(record), "attempts": [attempt_json(a) for a in timeline]})
    else:
        for part in job_view(record, timeline, store.now()):
            console.print(part, soft_wrap=isinstance(part, Text))
    return 0


def cmd_retry(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Failed (or cancelled) jobs back to pending with fresh attempts."""
    if args.failed:
        # Page by page: a page's jobs are pending once retried, and the cursor goes on past them.
        failed = pages(store, size=PAGE, status=JobStatus.FAILED, name=args.name)
        sent = [i for page in failed for i in retry(store, [job.id for job in page])]
    else:
        sent = retry(store, args.ids, all_or_nothing=True)
    if args.json:
        _print_json({"retried": sent})
    elif not sent:
        console.print("no failed jobs to retry" if args.failed else "nothing was retried")
    else:
        console.print(f"sent back to pending with fresh attempts: {len(sent)} job{'s' if len(sent) != 1 else ''}")
        console.print(jobs_table([job for job in (store.get(i) for i in sent[:SHOWN]) if job is not None], store.now()))
        if len(sent) > SHOWN:
            console.print(f"and {len(sent) - SHOWN} more")
    done = set(sent)
    missed = [job_id for job_id in dict.fromkeys(args.ids) if job_id not in done]
    if missed:
        raise JobStateError(
            f"not retried, their status changed meanwhile: {', '.join(missed)}",
            job_id=missed[0],
            jobs=dict.fromkeys(missed),
        )
    return 0


def cmd_cancel(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Pending jobs end cancelled; running ones are asked to stop."""
    now = store.now()
    records = cancel_many(store, args.ids, clock=lambda: now, all_or_nothing=True)
    cancelled: list[str] = []
    stopping: list[str] = []
    lines = Text()
    for after in records:
        if after.status is JobStatus.CANCELLED:
            cancelled.append(after.id)
            # A job this command cancelled ended at its `now`; one cancelled before, earlier.
            before = after.completed_at is not None and after.completed_at < now
            note = "already cancelled" if before else "cancelled"
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
    finished = [job for job in records if job.id not in {*cancelled, *stopping}]
    if finished:
        raise JobStateError(
            "some jobs finished before they could be cancelled",
            job_id=finished[0].id,
            status=finished[0].status.value,
            jobs={job.id: job.status.value for job in finished},
        )
    return 0


def cmd_purge(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Delete finished jobs of the given statuses that finished longer ago than --older-than."""
    statuses = list(dict.fromkeys(args.status))
    now = store.now()
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


def cmd_queues(store: Store, args: argparse.Namespace, console: Console) -> int:
    """List the queues, or pause or resume one."""
    if args.action != "list":
        (pause if args.action == "pause" else resume)(store, args.queue)
    infos = queues(store)
    if args.action != "list":
        infos = [info for info in infos if info.name == args.queue]
    if args.json:
        _print_json([queue_json(info) for info in infos] if args.action == "list" else queue_json(infos[0]))
    elif args.action != "list":
        waiting = infos[0].counts[JobStatus.PENDING]
        done = "paused: no worker claims its jobs" if args.action == "pause" else "resumed"
        console.print(Text(f"queue {args.queue} {done} ({waiting} pending)"))
    elif infos:
        console.print(queues_table(infos))
    else:
        console.print("no queues yet (a queue appears with its first job, or when paused)")
    return 0


def cmd_watch(store: Store, args: argparse.Namespace, console: Console) -> int:
    """A live status view until Ctrl-C (or --iterations frames).

    The live view is redrawn as soon as anyone commits (it sleeps on the store's waker),
    and at least every --interval seconds; piped and JSON frames come every --interval.
    """
    frames = 1 if args.once else args.iterations
    header = shown_target(args.database)
    waker = store.waker() if console.is_terminal and not args.json else None

    def view() -> RenderableType:
        summary, backlog, now, queues = _status(store)
        return watch_view(summary, backlog, now, database=header, interval=args.interval, queues=queues)

    def pause(shown: int) -> bool:
        """Whether to draw another frame, after waiting for it."""
        if frames is not None and shown >= frames:
            return False
        if waker is None:
            time.sleep(args.interval)
        elif waker.wait(args.interval):
            time.sleep(REDRAW_AT_MOST)  # a busy queue commits all the time: redraw at most this often
        return True

    shown = 0
    try:
        if args.json:  # one JSON object per line per frame
            while True:
                summary, backlog, now, queues = _status(store)
                _print_json(summary_json(summary, now, backlog=backlog, queues=queues), indent=None)
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
    finally:
        if waker is not None:
            waker.close()
    return 0


@attrs.frozen
class Migrated:
    """What ``migrate`` found and did: *found* is the version before (None: no jobkit tables), *version* after."""

    where: str  # the SQLite file, or the PostgreSQL schema and server
    found: int | None
    version: int

    @property
    def did(self) -> str:
        if self.found is None:
            return "created"
        return "nothing" if self.found == self.version else "upgraded"

    def line(self) -> str:
        if self.found is None:
            return f"{self.where}: created at version {self.version}"
        if self.found == self.version:
            return f"{self.where}: already at version {self.version}"
        return f"{self.where}: upgraded from version {self.found} to {self.version}"


def migrate_target(target: str, **options: Any) -> Migrated:
    """Create jobkit's tables in TARGET, or bring them up to this version; refuse what is not jobkit's, untouched.

    A PostgreSQL URL takes ``schema`` and ``listen`` (as :class:`jobkit.PostgresStore`); a SQLite path
    that does not exist is created.
    """
    if target.lower().startswith(("postgresql://", "postgres://")):
        return _migrate_postgres(target, **options)
    if target == "memory:":
        raise StoreError("memory: holds no tables to migrate (a MemoryStore lives only in its process)", path=target)
    from jobkit.stores.sqlite import SCHEMA_VERSION, SqliteStore
    from jobkit.stores.sqlite.header import marks
    from jobkit.stores.sqlite.migrations import check_file, judge

    scheme, sep, rest = target.partition("://")
    path = rest if sep and scheme.lower() == "sqlite" and rest.startswith("/") else None if sep else target
    found: int | None = None
    if path is not None and os.path.exists(path):
        check_file(path)  # refuses, untouched, what is not a jobkit file
        found = max(judge(mark, path) for mark in marks(path)) or None  # 0: a blank SQLite file
    with open_store(target, create=True, upgrade=True) as store:  # also refuses a bad URL
        where = store.path if isinstance(store, SqliteStore) else target
    return Migrated(where, found, SCHEMA_VERSION)


def _migrate_postgres(dsn: str, *, schema: str = "jobkit", listen: bool = True) -> Migrated:
    import psycopg

    from jobkit.stores.postgres import migrations
    from jobkit.stores.postgres.connection import Server
    from jobkit.stores.postgres.errors import store_error

    server = Server(dsn, listen=listen, pool_size=1)
    with server.direct() as conn:  # one connection: no pool, no listener
        try:
            was = migrations.migrate(conn, schema, server.place, create=True, upgrade=True)
            now = migrations.state(conn, schema, server.place)  # what the schema says it is now
        except psycopg.Error as exc:
            raise store_error(server.place, exc) from exc
    return Migrated(f"schema {schema} at {server.place}", None if was == 0 else was, now or 0)


def cmd_migrate(args: argparse.Namespace, console: Console, **options: Any) -> int:
    """Create or upgrade TARGET's tables: one line saying what was found and what was done."""
    done = migrate_target(args.database, **options)
    if args.json:
        _print_json({"target": done.where, "found": done.found, "version": done.version, "did": done.did})
    else:
        console.print(Text(done.line()))
    return 0


def shown_target(target: str) -> str:
    """TARGET as a screen may show it: a URL without its password."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(
        f"{key}=***" if key.lower() == "password" else f"{key}={value}"
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _print_json(data: Any, *, indent: int | None = 2) -> None:
    sys.stdout.write(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def cmd_web(store: Store, args: argparse.Namespace, console: Console) -> int:
    """Serve the web dashboard of *store* until Ctrl-C."""
    try:
        from jobkit.web.serve import serve
    except ImportError as exc:
        raise StoreError(f'the dashboard needs its extra ({exc}): pip install "jobkit-queue[web]"') from None
    return serve(
        store,
        host=args.host,
        port=args.port,
        read_only=args.read_only,
        base_path=args.base_path,
        auth=args.auth,
        say=console.print,
    )
