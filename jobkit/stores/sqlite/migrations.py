"""Knowing the file: refuse what is not jobkit's, build a new one, bring an older one up to date.

A file is jobkit's when it carries ``application_id`` and a ``user_version`` this jobkit
knows. Anything else is refused before SQLite writes to it (RELIABILITY.md, 11 and 16).
A new file is built aside and linked into place, so no process ever sees it half made.

The layout of a file is the result of :data:`STEPS`, applied in order under
``BEGIN IMMEDIATE`` so that processes starting together serialise and each step runs
once. Step 1 lays down ``SCHEMA`` on a blank file. To add schema version N: raise
SCHEMA_VERSION to N and append ``Step(N, "what it does", function)``, leaving SCHEMA as
version 1 had it, so that a new file and an older one reach version N through the same
steps.
"""

from __future__ import annotations

import functools
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

import apsw

from jobkit.errors import NotAJobkitDatabase, SchemaTooNew, StoreError
from jobkit.stores.sqlite.header import FileRefused, Mark, marks
from jobkit.stores.sqlite.schema import (
    APPLICATION_ID,
    CREATED_V4,
    JOBS_INDEXES,
    JOBS_TABLE,
    QUEUES_V2,
    SCHEMA,
    SCHEMA_VERSION,
    UNIQUE_AND_ATTEMPTS_V3,
    V5,
    V6,
)

T = TypeVar("T")
logger = logging.getLogger("jobkit")


class Write(Protocol):
    """Runs *work* in one BEGIN IMMEDIATE transaction, retrying while the file is busy."""

    def __call__(self, work: Callable[[apsw.Connection], T], /) -> T: ...


class Step(NamedTuple):
    """One change to a jobkit file, run inside a BEGIN IMMEDIATE transaction.

    Without *needed*, a step brings a file older than *version* to *version*: the steps a
    file lacks run in order in one transaction, each followed by its ``user_version``.
    With *needed*, it changes a file already at *version* in place (a layout an older
    jobkit made) and keeps the version, so that older jobkits still open the file. It
    runs only when *upgrade* is asked and ``needed`` says so, looked at first without
    the write lock (a file with nothing to do opens without a write); a failure is
    logged and leaves the file as it was, and usable.
    """

    version: int
    description: str
    apply: Callable[[apsw.Connection], bool]  # False when there was nothing to do
    needed: Callable[[apsw.Connection], bool] | None = None


def build_schema(conn: apsw.Connection) -> bool:
    """Version 1 on a blank file: the tables and indexes, and jobkit's mark."""
    conn.execute(SCHEMA)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    return True


# Files made before these definitions hold the jobs table with IN lists in its CHECKs
# and a name index over every job. Both layouts are schema version 1: every jobkit
# version reads and writes either, so bringing a file up to date locks nobody out.
_TABLE_SQL = JOBS_TABLE.strip().rstrip(";")  # as sqlite_schema keeps it
_NAME_INDEX_SQL = next(line for line in JOBS_INDEXES.splitlines() if " jobs_name_idx " in line).rstrip(";")
_FIRST_CLAUSES = (  # (today's clause, the first jobkit's), to rebuild the first text byte for byte
    (
        "DEFAULT 'pending' CHECK (status = 'pending' OR status = 'running'\n"
        "                      OR status = 'completed' OR status = 'failed' OR status = 'cancelled'),",
        "DEFAULT 'pending'\n"
        "                      CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),",
    ),
    ("CHECK (cancel_requested = 0 OR cancel_requested = 1)", "CHECK (cancel_requested IN (0, 1))"),
    (
        "(status = 'completed' OR status = 'failed' OR status = 'cancelled'))",
        "(status IN ('completed', 'failed', 'cancelled')))",
    ),
)
_FIRST_TABLE_SQL = functools.reduce(lambda text, clause: text.replace(*clause), _FIRST_CLAUSES, _TABLE_SQL)


def layout_changes(conn: apsw.Connection) -> tuple[bool, bool]:
    """What :func:`upgrade_layout` would do to this file: (rewrite the CHECKs, rebuild the name index).

    The CHECKs are rewritten only in a table whose text is exactly the first jobkit's,
    and not where SQLite runs defensive (it refuses writable_schema there).
    """
    found = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE name IN ('jobs', 'jobs_name_idx')"))
    defensive = bool(conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, -1))
    return found.get("jobs") == _FIRST_TABLE_SQL and not defensive, found.get("jobs_name_idx") != _NAME_INDEX_SQL


def upgrade_layout(conn: apsw.Connection) -> bool:
    """Give a file made by an older jobkit this version's CHECKs and name index; False if nothing to do.

    The CHECKs are rewritten in sqlite_schema, as SQLite documents for changing a
    table's constraints without copying it (lang_altertable.html, "other kinds of table
    schema changes"): the old and new ones accept exactly the same rows. Views, triggers
    and indexes of the user's own on the table are left as they are.
    """
    rewrite, rebuild = layout_changes(conn)  # again, under the write lock: another process may have done it
    if rewrite:  # first: it is quick, and if it fails, no index was built for nothing
        cookie = int(conn.execute("PRAGMA schema_version").fetchall()[0][0])  # type: ignore[arg-type]
        conn.execute("PRAGMA writable_schema = ON")
        try:
            conn.execute("UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'jobs'", (_TABLE_SQL,))
            conn.execute(f"PRAGMA schema_version = {cookie + 1}")  # other connections re-read it
        finally:
            conn.execute("PRAGMA writable_schema = OFF")
    if rebuild:
        conn.execute("DROP INDEX IF EXISTS jobs_name_idx")
        conn.execute(_NAME_INDEX_SQL)
    return rewrite or rebuild


def needs_layout(conn: apsw.Connection) -> bool:
    return any(layout_changes(conn))


def add_queues(conn: apsw.Connection) -> bool:
    """Version 2: a queue for every job ("default" for those there), the queues table, the per-queue index."""
    conn.execute(QUEUES_V2)
    return True


def add_unique_and_attempts(conn: apsw.Connection) -> bool:
    """Version 3: unique keys with their index, the attempts table, and dependencies (none for the jobs there)."""
    conn.execute(UNIQUE_AND_ATTEMPTS_V3)
    return True


def add_created_index(conn: apsw.Connection) -> bool:
    """Version 4: the index of jobs by (created_at, id), which listings read newest first."""
    conn.execute(CREATED_V4)
    return True


def add_v5_indexes(conn: apsw.Connection) -> bool:
    """Version 5: the name index in creation order within a name, the index of failed and cancelled jobs, and
    job_deps by child."""
    conn.execute(V5)
    return True


def mark_parents(conn: apsw.Connection) -> bool:
    """Version 6: jobs others run after are marked, and only their end fires the triggers that settle dependents."""
    conn.execute(V6)
    return True


STEPS: tuple[Step, ...] = (
    Step(1, "the jobs and cron_jobs tables", build_schema),
    Step(1, "indexes and constraints", upgrade_layout, needed=needs_layout),
    Step(2, "queues", add_queues),
    Step(3, "unique keys, attempt history and dependencies", add_unique_and_attempts),
    Step(4, "an index of jobs by creation time", add_created_index),
    Step(5, "listings of a name, of failed and cancelled jobs in creation order; job_deps by child", add_v5_indexes),
    Step(6, "a mark on the jobs others run after, which alone fires the dependents' triggers", mark_parents),
)


def migrate(conn: apsw.Connection, path: str, *, create: bool, upgrade: bool, write: Write) -> None:
    """Make the file on *conn* a jobkit database of SCHEMA_VERSION, or refuse it untouched.

    *create* False refuses a blank SQLite file; *upgrade* False leaves a file of this
    version as an older jobkit made it. *write* is the store's transaction runner.
    """
    version = version_of(conn, path)
    if version == 0 and not create:
        raise _refuse_blank(path)
    if version == SCHEMA_VERSION:
        if upgrade:
            _upgrade_in_place(conn, path, write)
        return
    if version and not upgrade:
        raise StoreError(
            f"{path}: a jobkit file of schema version {version}, this jobkit needs {SCHEMA_VERSION}; "
            "run python -m jobkit migrate TARGET, or open with upgrade=True",
            path=path,
        )
    if conn.execute("PRAGMA journal_mode").fetchall()[0][0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")

    def steps(conn: apsw.Connection) -> None:
        advance(conn, path)

    write(steps)


def advance(conn: apsw.Connection, path: str) -> None:
    """Apply, in the transaction open on *conn*, every version step the file lacks."""
    version = version_of(conn, path)  # re-read under the write lock: another process may have won
    for step in STEPS:
        if step.needed is not None and step.version == version and step.version < SCHEMA_VERSION:
            if step.needed(conn):  # the layout of the version it has, before the versions it lacks
                step.apply(conn)
        elif step.needed is None and step.version > version:
            step.apply(conn)
            conn.execute(f"PRAGMA user_version = {step.version}")
            version = step.version


def _upgrade_in_place(conn: apsw.Connection, path: str, write: Write) -> None:
    for step in STEPS:
        if step.needed is None or step.version != SCHEMA_VERSION or not step.needed(conn):
            continue
        try:
            if write(step.apply):
                logger.info("%s: %s brought up to date", path, step.description)
        except (apsw.Error, StoreError) as exc:  # e.g. a defensive build refusing writable_schema
            logger.warning("%s: left with its older %s (%s)", path, step.description, exc)


def version_of(conn: apsw.Connection, path: str) -> int:
    """The schema version of a jobkit file, as SQLite reads it, 0 for a blank SQLite file; refuse anything else."""
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchall()[0][0])  # type: ignore[arg-type]
        version = int(conn.execute("PRAGMA user_version").fetchall()[0][0])  # type: ignore[arg-type]
        tables = int(conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0])  # type: ignore[arg-type]
    except apsw.NotADBError as exc:
        raise NotAJobkitDatabase(f"{path}: not a SQLite database; left untouched", path=path) from exc
    return judge(Mark(app_id, version, tables == 0), path)


def judge(mark: Mark, path: str) -> int:
    """The schema version a file with *mark* holds, 0 for a blank SQLite file; refuse anything else.

    The one rule for whose a file is, applied to its bytes before SQLite opens it
    (:func:`check_file`) and to what SQLite reads once it has (:func:`version_of`).
    """
    app_id, version, blank = mark
    if app_id == 0 and version == 0 and blank:
        return 0
    if app_id != APPLICATION_ID:
        raise NotAJobkitDatabase(
            f"{path}: a SQLite database that jobkit did not create (application_id {app_id}); left untouched",
            path=path,
        )
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path}: schema version {version} is newer than this jobkit understands ({SCHEMA_VERSION}); "
            "upgrade jobkit. The file was left untouched",
            path=path,
        )
    if version < 1:
        raise NotAJobkitDatabase(f"{path}: jobkit mark without a schema version; left untouched", path=path)
    return version


def _refuse_blank(path: str) -> NotAJobkitDatabase:
    return NotAJobkitDatabase(
        f"{path}: an empty SQLite database without jobkit's tables; left untouched "
        "(open it with create=True, e.g. by enqueuing a job, to make it a jobkit database)",
        path=path,
    )


_REFUSED = {  # header.FileRefused reasons, as the errors say them
    "empty": "the file is empty, not a jobkit database; left untouched "
    "(remove it, or give a path that does not exist yet to create one)",
    "not sqlite": "not a SQLite database; left untouched",
}


def check_file(path: str, *, create: bool = True) -> None:
    """Refuse, before SQLite opens it, a file that is not a jobkit database (or a blank one to *create*).

    Decided from the file's bytes and those of its -wal and rollback journal
    (:mod:`.header`): SQLite recovers those side files as it opens a file, which
    writes, so a file refused here is left byte for byte as it was, side files included.
    """
    try:
        found = marks(path)
    except FileRefused as refused:
        reason = _REFUSED.get(refused.reason) or f"is {refused.reason}, not a database file; left untouched"
        raise NotAJobkitDatabase(f"{refused.path}: {reason}", path=path) from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}", path=path) from exc
    versions = {judge(mark, path) for mark in found}
    if 0 in versions and not create:
        raise _refuse_blank(path)
    if len(versions) > 1:
        raise NotAJobkitDatabase(
            f"{path}: a rollback journal beside it would restore another header (another program is "
            "changing it, or crashed doing so); left untouched (open it once with that program, or sqlite3)",
            path=path,
        )


def create_file(path: str) -> None:
    """Build a new database beside *path* and link it into place, atomically."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise StoreError(f"{path}: the folder {folder} does not exist", path=path)
    aside = folder / f".{Path(path).name}.{os.getpid()}.{random.getrandbits(32):08x}.new"
    try:
        conn = apsw.Connection(str(aside))
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            advance(conn, path)
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection checkpoints and removes the WAL
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError:
            if not os.path.exists(path):  # a file system without hard links
                os.replace(aside, path)
    finally:
        for leftover in (aside, Path(f"{aside}-wal"), Path(f"{aside}-shm")):
            leftover.unlink(missing_ok=True)
