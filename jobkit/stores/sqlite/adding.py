"""How a SqliteStore adds jobs: in the transaction of one call, or of several threads' calls together.

The calls that :class:`jobkit.stores.grouped.GroupCommit` hands over together are written
in one transaction. Plain calls (no unique key, nothing to run after: what a web app's
threads enqueue) are one multi-row INSERT, a single call into SQLite: APSW lets go of the
GIL for every statement it steps, and with eight producer threads each let-go hands the
GIL to another thread and back, so a savepoint, an INSERT and a release for each call cost
more than the writing (8 threads at NORMAL: +19% jobs a second with the one INSERT).
Should the database refuse it, and otherwise, each call is written in a savepoint of its
own: a call the store refuses (an id already taken, a job named in ``after`` that does
not exist) is rolled back alone and raises in its own thread, and the rest commit. Rows
are encoded before the write lock is taken (see ``SqliteStore._run``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import apsw

from jobkit.errors import JobkitError, StoreError, UnknownDependency, ValidationError
from jobkit.model import JobRecord
from jobkit.stores.refusals import check_ids
from jobkit.stores.sqlite import queries, reading
from jobkit.stores.sqlite.codec import row_of
from jobkit.stores.sqlite.errors import ROW_REFUSALS, store_error

Outcome = list[str] | Exception
Run = Callable[..., list[Any]]  # SqliteStore._run(steps, single=...)
T = TypeVar("T")


class Write(Protocol):
    """SqliteStore._write: *work* in one write transaction, its result."""

    def __call__(self, work: Callable[[apsw.Connection], T], *, single: bool = False) -> T: ...


def keys_of(jobs: Sequence[JobRecord]) -> str | None:
    """The (name, unique key) pairs of *jobs* as the HOLDERS query binds them; None when none holds a key."""
    keys = [[job.job_name, job.unique_key] for job in jobs if job.unique_key is not None]
    return json.dumps(keys) if keys else None


def is_plain(jobs: Sequence[JobRecord]) -> bool:
    """Whether adding *jobs* is only inserting them: no unique key to look up, no job to run after."""
    return not any(job.unique_key is not None or job.depends_on for job in jobs)


def refusal(exc: ValidationError) -> Exception:
    """What an add the store refused raises: an unknown dependency as it is, any other refusal as "cannot add jobs"."""
    if isinstance(exc, UnknownDependency):
        return exc
    refused = JobkitError(f"cannot add jobs: {exc}")
    refused.__cause__ = exc
    return refused


def together(path: str, calls: Sequence[Sequence[JobRecord]], run: Run, write: Write) -> list[Outcome]:
    """The outcome of each call of add() made at once (one alone is one call's transaction); *run* and *write*
    are the store's transaction runners (``SqliteStore._run``, ``SqliteStore._write``)."""
    if len(calls) == 1:
        return [alone(calls[0], run, write)]
    early: list[Outcome | None] = []
    rows: list[list[tuple[Any, ...]]] = []
    plain = [is_plain(jobs) for jobs in calls]  # decided before the write lock, as the rows are encoded
    for jobs in calls:
        try:
            rows.append([row_of(job) for job in jobs])
            early.append(None)
        except Exception as exc:  # this call's values: it fails alone
            rows.append([])
            early.append(exc)

    def work(conn: apsw.Connection) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for jobs, encoded, known, only_rows in zip(calls, rows, early, plain, strict=True):
            if known is not None:
                outcomes.append(known)
                continue
            try:
                with conn:  # a savepoint: a refusal rolls back this call's rows only
                    outcomes.append(_add(conn, jobs, encoded, only_rows))
            except ValidationError as exc:
                outcomes.append(refusal(exc))
            except JobkitError as exc:
                outcomes.append(exc)
            except ROW_REFUSALS as exc:  # a row the database refuses (a constraint, a value too big): this call's
                mapped = store_error(path, exc, writing=True)
                outcomes.append(refusal(mapped) if isinstance(mapped, ValidationError) else mapped)
            except apsw.Error as exc:  # a full disk, an I/O error: every call's (none is written)
                raise _first(exc) from None
            except Exception as exc:  # a value SQLite cannot bind (an int past 64 bits): this call's
                outcomes.append(refusal(ValidationError(f"cannot store a value of these jobs: {exc!r}", value=jobs)))
        return outcomes

    if all(known is not None for known in early):
        return [known for known in early if known is not None]
    if all(plain) and not any(early):
        shared = _shared(calls, rows, run)
        if shared is not None:
            return shared
    return write(work)


def _shared(calls: Sequence[Sequence[JobRecord]], rows: list[list[tuple[Any, ...]]], run: Run) -> list[Outcome] | None:
    """Plain calls' rows (up to SHARED_INSERT_ROWS) in one INSERT, a transaction of its own: each call's ids.

    None when there are more rows, or the database refused one of them: then each call is
    written in a savepoint of its own, so that the one at fault fails alone. A write that
    failed for every call (a full disk, a lock held too long) raises, as the savepoints' would.
    """
    flat = [row for encoded in rows for row in encoded]
    if len(flat) > queries.SHARED_INSERT_ROWS:
        return None
    try:
        run([(queries.insert_rows(len(flat)), [value for row in flat for value in row], "count")], single=True)
    except StoreError:
        raise
    except Exception:  # a row refused (a taken id), or a value SQLite cannot bind: find whose, call by call
        return None
    return [[job.id for job in jobs] for jobs in calls]


def alone(jobs: Sequence[JobRecord], run: Run, write: Write) -> list[str]:
    """Add the jobs of one call in a transaction of their own; the id of each."""
    rows = [row_of(job) for job in jobs]
    try:
        if is_plain(jobs):
            # One INSERT is a transaction of its own that takes the write lock as it starts,
            # as BEGIN IMMEDIATE would, and saves two round trips.
            run([(queries.INSERT, rows, "many")], single=len(rows) == 1)
            return [job.id for job in jobs]
        check_ids(jobs)
        return write(functools.partial(reading.adding, jobs, keys_of(jobs)))
    except UnknownDependency:
        raise
    except ValidationError as exc:  # a constraint (a taken id), as .errors maps it
        raise refusal(exc) from exc


def _add(conn: apsw.Connection, jobs: Sequence[JobRecord], rows: list[tuple[Any, ...]], plain: bool) -> list[str]:
    """Add one call's *jobs* (*plain*: see :func:`is_plain`) in the transaction open on *conn*; the id of each."""
    if plain:
        conn.executemany(queries.INSERT, rows)
        return [job.id for job in jobs]
    check_ids(jobs)
    return reading.adding(jobs, keys_of(jobs), conn)


def _first(exc: apsw.Error) -> apsw.Error:
    """The error that started *exc*: SQLite rolls the whole transaction back on some (a full disk), and the
    savepoint's release then fails too ("no such savepoint"), with the first error as its context."""
    while isinstance(exc.__context__, apsw.Error):
        exc = exc.__context__
    return exc
