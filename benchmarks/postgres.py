"""The PostgreSQL server the benchmarks use: where it is, whether it answers, throwaway databases.

The server is ``postgresql://postgres@127.0.0.1:5432/postgres`` unless the environment
variable :data:`SERVER_VARIABLE` names another (a ``postgresql://`` URL whose user may
create databases). Every side of every round gets a database of its own, named
``jobkit_bench_`` plus random hex, created before the round and dropped after it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.parse
from collections.abc import Iterator
from typing import Any

import psycopg

SERVER_VARIABLE = "JOBKIT_BENCH_POSTGRES"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT = 3  # seconds to wait for the server before calling it unreachable
DATABASE_PREFIX = "jobkit_bench_"
SHOWN_SETTINGS = ("synchronous_commit", "fsync", "autovacuum", "shared_buffers", "max_connections")


def server() -> str:
    """The URL of the server's maintenance database, from the environment or the default."""
    return os.environ.get(SERVER_VARIABLE) or DEFAULT_SERVER


def with_database(url: str, name: str) -> str:
    """*url* pointing at database *name* instead."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(name)))


def where(url: str) -> str:
    """Host, port and user of *url*, for messages (never its password)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.username or 'postgres'}@{parts.hostname or 'localhost'}:{parts.port or 5432}"


def unreachable(url: str) -> str | None:
    """Why the server at *url* cannot be used, or None when it answers."""
    if not url.startswith(("postgresql://", "postgres://")):
        return f"{SERVER_VARIABLE} must be a postgresql:// URL, not {url!r}"
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no PostgreSQL server at {where(url)} ({reason}); set {SERVER_VARIABLE} to a postgresql:// URL"
    return None


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True)


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new empty database on *url*'s server, dropped (with its sessions) on exit; yields its URL."""
    name = DATABASE_PREFIX + secrets.token_hex(6)
    with connect(url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(url, name)
    finally:
        with connect(url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scalar(conn: psycopg.Connection[Any], sql: str) -> Any:
    """The one value *sql* selects."""
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def facts(url: str) -> dict[str, Any]:
    """The server's version and the settings a result depends on."""
    with connect(url) as conn:
        version = scalar(conn, "SHOW server_version")
        rows = conn.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", [list(SHOWN_SETTINGS)])
        settings = {name: f"{setting}{' x ' + unit if unit else ''}" for name, setting, unit in rows}
    return {"server": where(url), "version": version, "settings": settings}
