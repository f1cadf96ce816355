"""Raw SQLite through APSW: the same enqueue and claim/complete work, with no library around it.

This is the ceiling the benchmarks compare jobkit with: a jobs table much like jobkit's
(text ids that sort by creation, JSON params and results, status, claim token, times),
WAL, one transaction per write (``BEGIN IMMEDIATE`` when it holds more than one
statement), and a worker loop that claims 100 due jobs with one ``UPDATE ... RETURNING``,
commits, "runs" them (decodes the params and encodes the result, as a no-op job does) and
completes them in one more transaction.

``python -m benchmarks.raw DB --sync full|normal`` is that worker: it exits when nothing
is pending and prints how many jobs it completed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Literal

import apsw

RawSync = Literal["full", "normal"]
CLAIM_BATCH = 100
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY NOT NULL,
    job_name      TEXT NOT NULL,
    params        TEXT NOT NULL,
    result        TEXT,
    status        TEXT NOT NULL DEFAULT 'pending',
    worker_id     TEXT,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    priority      INTEGER NOT NULL DEFAULT 0,
    scheduled_for TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    completed_at  TEXT
);
CREATE INDEX IF NOT EXISTS jobs_due_idx ON jobs (status, priority DESC, scheduled_for, id);
"""

INSERT = """INSERT INTO jobs (id, job_name, params, scheduled_for, created_at, updated_at)
    VALUES (?, 'noop', ?, ?, ?, ?)"""
CLAIM = """
UPDATE jobs SET status = 'running', worker_id = :token, attempt_count = attempt_count + 1, updated_at = :now
WHERE id IN (
    SELECT id FROM jobs WHERE status = 'pending' AND scheduled_for <= :now
    ORDER BY priority DESC, scheduled_for, id LIMIT :limit)
RETURNING id, params
"""
COMPLETE = """UPDATE jobs SET status = 'completed', result = ?, completed_at = ?, updated_at = ?
    WHERE id = ? AND status = 'running' AND worker_id = ?"""
COMPLETED = "SELECT count(*) FROM jobs WHERE status = 'completed'"

_sequence = itertools.count()


def now_text() -> str:
    """The current UTC time as sortable text, as jobkit stores times."""
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def new_id() -> str:
    """A unique id that sorts by creation (time, process, sequence), like a UUIDv7."""
    return f"{time.time_ns():016x}-{os.getpid():08x}-{next(_sequence):08x}"


def connect(path: str, sync: RawSync) -> apsw.Connection:
    """A connection to the raw queue at *path* (created if need be): WAL, busy timeout, *sync*."""
    conn = apsw.Connection(path)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    # Asked for only when the file is not in WAL yet: setting it takes a lock that the busy
    # timeout does not wait for, and eight producer threads connecting at once met "database is locked".
    if conn.execute("PRAGMA journal_mode").fetchall()[0][0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    with immediate(conn):
        conn.execute(SCHEMA)
    return conn


@contextlib.contextmanager
def immediate(conn: apsw.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _row(n: int, now: str) -> tuple[str, str, str, str, str]:
    return (new_id(), json.dumps(n), now, now, now)


def enqueue(conn: apsw.Connection, n: int) -> None:
    """Insert one job in a transaction of its own.

    A lone INSERT outside BEGIN is its own transaction and takes the write lock at once, so
    it needs no BEGIN IMMEDIATE; without those two extra statements this is SQLite's floor.
    """
    conn.execute(INSERT, _row(n, now_text()))


def enqueue_many(conn: apsw.Connection, numbers: Sequence[int]) -> None:
    """Insert many jobs in one transaction."""
    now = now_text()
    rows = [_row(n, now) for n in numbers]
    with immediate(conn):
        conn.executemany(INSERT, rows)


def work_once(conn: apsw.Connection, token: str, limit: int = CLAIM_BATCH) -> int:
    """Claim up to *limit* due jobs, run them (no-ops) and complete them; return how many."""
    now = now_text()
    with immediate(conn):
        claimed = list(conn.execute(CLAIM, {"token": token, "now": now, "limit": limit}))
    if not claimed:
        return 0
    done = now_text()
    outcomes = [(json.dumps(json.loads(params)), done, done, job_id, token) for job_id, params in claimed]
    with immediate(conn):
        conn.executemany(COMPLETE, outcomes)
    return len(claimed)


def drain(conn: apsw.Connection) -> int:
    """Work until nothing is pending; return how many jobs this process completed."""
    token = uuid.uuid4().hex
    total = 0
    while done := work_once(conn, token):
        total += done
    return total


def completed(conn: apsw.Connection) -> int:
    """How many jobs are completed."""
    value = conn.execute(COMPLETED).fetchall()[0][0]
    assert isinstance(value, int)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.raw", description="drain the raw SQLite queue")
    parser.add_argument("database")
    parser.add_argument("--sync", choices=("full", "normal"), default="full")
    args = parser.parse_args(argv)
    conn = connect(args.database, args.sync)
    print(json.dumps({"completed": drain(conn)}))
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
