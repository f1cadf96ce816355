"""Raw PostgreSQL through psycopg 3: the enqueue and claim/complete work with no library around it.

The limit the PostgreSQL scenarios compare jobkit with: a jobs table much like jobkit's
(uuid ids minted by the client that sort by creation, jsonb params and results, status,
claim token, times from the database's clock), a partial index on pending jobs, one
INSERT per commit to enqueue, COPY for a bulk of jobs (one transaction per chunk), and a
worker loop that claims 100 due jobs with one ``UPDATE ... FOR UPDATE SKIP LOCKED``
statement, "runs" them (decodes the params and encodes the result, as a no-op job does)
and completes them all with one more statement. Every statement is its own transaction
(autocommit); psycopg prepares the repeated ones.

``python -m benchmarks.pg_raw URL`` is that worker: it exits when nothing is pending and
prints how many jobs it completed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

CLAIM_BATCH = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            uuid PRIMARY KEY,
    job_name      text NOT NULL,
    params        jsonb NOT NULL,
    result        jsonb,
    status        text NOT NULL DEFAULT 'pending',
    worker_id     text,
    attempt_count integer NOT NULL DEFAULT 0,
    priority      integer NOT NULL DEFAULT 0,
    scheduled_for timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
) WITH (fillfactor = 80);
CREATE INDEX IF NOT EXISTS jobs_pending_idx ON jobs (priority DESC, scheduled_for, id) WHERE status = 'pending';
"""

INSERT = "INSERT INTO jobs (id, job_name, params) VALUES (%s, 'noop', %s)"
COPY = "COPY jobs (id, job_name, params) FROM STDIN"
CLAIM = """
UPDATE jobs SET status = 'running', worker_id = %(token)s, attempt_count = attempt_count + 1, updated_at = now()
WHERE id IN (
    SELECT id FROM jobs WHERE status = 'pending' AND scheduled_for <= now()
    ORDER BY priority DESC, scheduled_for, id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING id, params
"""
COMPLETE = """
UPDATE jobs SET status = 'completed', result = done.result, completed_at = now(), updated_at = now()
FROM unnest(%(ids)s::uuid[], %(results)s::jsonb[]) AS done (id, result)
WHERE jobs.id = done.id AND jobs.status = 'running' AND jobs.worker_id = %(token)s
"""
COMPLETED = "SELECT count(*) FROM jobs WHERE status = 'completed'"


def new_id() -> uuid.UUID:
    """A random UUIDv7 (48 bits of Unix milliseconds first), so ids sort by creation as jobkit's do."""
    milliseconds = time.time_ns() // 1_000_000
    value = (milliseconds << 80) | (0x7 << 76) | (int.from_bytes(os.urandom(10), "big") & ((1 << 76) - 1))
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the RFC 4122 variant
    return uuid.UUID(int=value)


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to the raw queue at *url*, its table created if need be."""
    conn = psycopg.connect(url, autocommit=True)
    with conn.transaction():
        conn.execute(SCHEMA)
    return conn


def enqueue(conn: psycopg.Connection[Any], n: int) -> None:
    """Insert one job: one statement, one commit."""
    conn.execute(INSERT, (new_id(), Jsonb(n)))


def enqueue_many(conn: psycopg.Connection[Any], numbers: Sequence[int]) -> None:
    """Insert many jobs with one COPY in one transaction."""
    with conn.transaction(), conn.cursor().copy(COPY) as copy:
        for n in numbers:
            copy.write_row((new_id(), "noop", json.dumps(n)))


def work_once(conn: psycopg.Connection[Any], token: str, limit: int = CLAIM_BATCH) -> int:
    """Claim up to *limit* due jobs, run them (no-ops) and complete them; return how many."""
    claimed = conn.execute(CLAIM, {"token": token, "limit": limit}, prepare=True).fetchall()
    if not claimed:
        return 0
    ids = [job_id for job_id, _ in claimed]
    results = [json.dumps(params) for _, params in claimed]  # psycopg decoded the jsonb; encode the result
    conn.execute(COMPLETE, {"ids": ids, "results": results, "token": token}, prepare=True)
    return len(claimed)


def drain(conn: psycopg.Connection[Any]) -> int:
    """Work until nothing is pending; return how many jobs this process completed."""
    token = uuid.uuid4().hex
    total = 0
    while done := work_once(conn, token):
        total += done
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_raw", description="drain the raw PostgreSQL queue")
    parser.add_argument("url", help="postgresql:// URL of the database")
    args = parser.parse_args(argv)
    with connect(args.url) as conn:
        print(json.dumps({"completed": drain(conn)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
