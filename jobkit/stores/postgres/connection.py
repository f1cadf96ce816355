"""Connections to the server: a pool for the store's statements, one of its own for each waker, and the clock.

Everything psycopg raises while a connection is held becomes jobkit's error here (see
:mod:`.errors`), so the store above speaks only of statements and rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from jobkit.errors import StoreError
from jobkit.stores.postgres.errors import reason, store_error, where

T = TypeVar("T")

Connection = psycopg.Connection[tuple[Any, ...]]
CONNECT_TIMEOUT = 5  # seconds: an unreachable server is one clear error within this, not a hang
LOCK_TIMEOUT = "10s"  # a statement waiting on a lock someone holds ends, rather than stall a worker
# The pool warns of every broken connection it drops: one lost server would be a line a
# connection, besides the one line of the incident that the worker itself logs.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

CLOCK_REFRESH = 30.0  # seconds between readings of the database's clock


class DatabaseClock:
    """The database server's time, read now and then and carried forward on this host's monotonic clock.

    Between readings it advances with ``time.monotonic()``, which no one can set, so a
    host's wall clock, however wrong or stepped, never enters it; it never goes back.
    """

    def __init__(self, read: Callable[[], datetime]) -> None:
        self._read = read
        self._base: datetime | None = None
        self._at = 0.0
        self._last: datetime | None = None
        self._guard = threading.Lock()

    def __call__(self) -> datetime:
        mono = time.monotonic()
        if self._base is None or mono - self._at >= CLOCK_REFRESH:
            try:
                self._sample()
            except StoreError:
                if self._base is None:
                    raise
                # A server away for a moment: carry the last reading forward.
        assert self._base is not None
        value = self._base + timedelta(seconds=time.monotonic() - self._at)
        with self._guard:
            if self._last is not None and value < self._last:
                value = self._last
            self._last = value
        return value

    def _sample(self) -> None:
        before = time.monotonic()
        server: datetime = self._read()
        after = time.monotonic()
        self._base, self._at = server, (before + after) / 2


def copy_rows(conn: Connection, text: str, rows: Iterable[Sequence[Any]], then: tuple[str, Any]) -> None:
    """COPY *rows* in with *text* (the statement as sent), then run *then*, in the transaction *conn* is in.

    No transaction of its own: on a caller's connection outside one, psycopg's
    ``transaction()`` would begin one and commit it at its end, committing the caller's
    work under it; the store's own callers wrap this in theirs.
    """
    with conn.cursor() as cur:
        with cur.copy(text) as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(*then)


class Server:
    """The server a DSN names: pooled connections that run the store's statements, and direct ones.

    *listen* False is for transaction poolers (PgBouncer): statements are then not
    prepared, since each may reach another server session.
    """

    def __init__(self, dsn: str, *, listen: bool, pool_size: int) -> None:
        self.dsn = dsn
        self.listen = listen
        self.place = where(dsn)
        self.quoted = ""
        self._pool_size = max(1, pool_size)
        self._sql: dict[str, str] = {}
        self._closed = False
        self._pid = os.getpid()
        self._pool: psycopg_pool.ConnectionPool[Connection] | None = None

    def open(self) -> None:
        """Start the pool (after the schema is known to be jobkit's)."""
        self._pool = self._new_pool()

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        if not self.listen:
            kwargs["prepare_threshold"] = None  # a transaction pooler may hand each statement another server session
        if "connect_timeout" not in self.dsn:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT
        return kwargs

    def configure(self, conn: Connection) -> None:
        conn.execute(f"SET TIME ZONE 'UTC'; SET lock_timeout = '{LOCK_TIMEOUT}'")

    def connect(self) -> Connection:
        try:
            conn: Connection = psycopg.connect(self.dsn, **self._kwargs())
            self.configure(conn)
        except psycopg.Error as exc:
            raise StoreError(f"{self.place}: cannot connect: {reason(exc)}", path=self.place) from exc
        return conn

    @contextlib.contextmanager
    def direct(self) -> Iterator[Connection]:
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    def _new_pool(self) -> psycopg_pool.ConnectionPool[Connection]:
        pool: psycopg_pool.ConnectionPool[Connection] = psycopg_pool.ConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self._pool_size,
            kwargs=self._kwargs(),
            configure=self.configure,
            open=False,
            timeout=CONNECT_TIMEOUT * 2,
            name=f"jobkit {self.place}",
        )
        pool.open()
        return pool

    def check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.place}: the store is closed", path=self.place)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Connection]:
        """A pooled connection; psycopg's errors raised while it is held become jobkit's."""
        if self._closed or self._pool is None:
            raise StoreError(f"{self.place}: the store is closed", path=self.place)
        if self._pid != os.getpid():  # a forked child must not share its parent's sockets
            self._pid = os.getpid()
            self._pool = self._new_pool()
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:
            raise StoreError(f"{self.place}: cannot connect: {self._why_not()}", path=self.place) from exc
        except psycopg.OperationalError as exc:
            self._pool.check()  # a server restart breaks every idle connection: drop them now
            raise store_error(self.place, exc) from exc
        except psycopg.Error as exc:
            raise store_error(self.place, exc) from exc

    def _why_not(self) -> str:
        try:
            psycopg.connect(self.dsn, **self._kwargs()).close()
        except psycopg.Error as exc:
            return reason(exc)
        return "no connection came free in time"

    def sql(self, text: str) -> str:
        """*text* with the schema written in (cached: the text is the prepared statement's key)."""
        done = self._sql.get(text)
        if done is None:
            done = self._sql[text] = text.replace("{s}", self.quoted)
        return done

    def read(self, text: str, params: Any = None) -> list[Any]:
        with self._conn() as conn:
            rows: list[Any] = conn.execute(self.sql(text), params).fetchall()
            return rows

    def write(self, statements: Sequence[tuple[str, Any]]) -> list[list[Any]]:
        """Run *statements* in one transaction, sent together in one round trip; the rows of each."""
        with self._conn() as conn:
            if len(statements) == 1:
                text, params = statements[0]
                cur = conn.execute(self.sql(text), params)
                return [cur.fetchall() if cur.description is not None else [cur.rowcount]]
            cursors = []
            with conn.pipeline(), conn.transaction():
                for text, params in statements:
                    cursors.append(conn.cursor().execute(self.sql(text), params))
            return [cur.fetchall() if cur.description is not None else [cur.rowcount] for cur in cursors]

    def transaction(self, work: Callable[[Callable[[str, Any], list[Any]]], T]) -> T:
        """*work* given a way to run statements one by one in one transaction of a pooled connection."""
        with self._conn() as conn, conn.transaction():

            def execute(text: str, params: Any) -> list[Any]:
                cur = conn.execute(self.sql(text), params)
                return cur.fetchall() if cur.description is not None else []

            return work(execute)

    def copy(self, text: str, rows: Iterable[Sequence[Any]], then: tuple[str, Any]) -> None:
        """COPY *rows* in with *text*, then run *then*, in one transaction of a pooled connection."""
        with self._conn() as conn, conn.transaction():
            copy_rows(conn, self.sql(text), rows, (self.sql(then[0]), then[1]))

    def server_time(self) -> datetime:
        (row,) = self.read("SELECT clock_timestamp()")
        value: datetime = row[0]
        return value

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
