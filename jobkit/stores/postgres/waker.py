"""PostgresWaker: sleeping until someone commits a change to the jobs, by LISTEN/NOTIFY, or polling.

Every transaction that makes work due or ends a job sends one NOTIFY on the store's
channel (see :mod:`.queries`); PostgreSQL delivers it at commit, to every session
listening. The waker holds one connection of its own, LISTENing, and sleeps in
``select`` on its socket and on a self-pipe that :meth:`PostgresWaker.ring` writes to.

When the connection is lost the waker says True (look again) at least every
:data:`POLL` seconds and reconnects at most every :data:`RECONNECT` seconds, noting (at
INFO: the worker's own warning about the outage is the incident's one line) when it
loses the connection and when it has it back. With ``listen=False``
(PgBouncer in transaction mode cannot LISTEN) it only polls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from collections.abc import Callable

import psycopg

logger = logging.getLogger("jobkit")

POLL = 0.5  # without a listening connection, how often callers are told to look again
RECONNECT = 1.0  # between attempts to get the listening connection back

Connect = Callable[[], "psycopg.Connection[tuple[object, ...]]"]


class PostgresWaker:
    """Wakes one waiting thread on a ring (any thread, or a signal handler) or on a NOTIFY on *channel*."""

    def __init__(self, connect: Connect | None, channel: str, place: str) -> None:
        self._connect = connect
        self._channel = channel
        self._place = place
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._next_try = 0.0
        self._lost = False
        self._rung = False  # a flag, not an Event: a signal handler must never wait for a lock
        self._closed = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        if connect is not None:
            self._listen()

    def _listen(self) -> bool:
        """Open the listening connection; False (and a note for the next try) when it cannot be had."""
        assert self._connect is not None
        self._next_try = time.monotonic() + RECONNECT
        try:
            conn = self._connect()
            conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(self._channel)))
        except (psycopg.Error, OSError) as exc:
            if not self._lost:
                logger.info("jobkit: %s: cannot listen for new jobs (%s); polling until it can", self._place, exc)
            self._lost = True
            return False
        if self._lost:
            logger.info("jobkit: %s: listening for new jobs again", self._place)
        self._lost = False
        self._conn = conn
        return True

    def _drop(self, exc: BaseException) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        if not self._lost:
            logger.info(
                "jobkit: %s: lost the listening connection (%s); polling until it is back",
                self._place,
                " ".join(str(exc).split()),
            )
        self._lost = True

    def ring(self) -> None:
        if self._rung:  # rung and not yet taken: the byte that ring wrote wakes the waiter for both
            return
        self._rung = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write, b"\0")

    def _heard(self) -> bool:
        """True when a notification came, or the connection failed (dropped: callers must look again)."""
        try:
            return self._notified()
        except psycopg.Error as exc:
            self._drop(exc)
            return True

    def _notified(self) -> bool:
        """Read what the socket holds; True when a notification came."""
        assert self._conn is not None
        pgconn = self._conn.pgconn
        pgconn.consume_input()
        got = False
        while pgconn.notifies() is not None:
            got = True
        return got

    def wait(self, timeout: float, *, commits: bool = True) -> bool:
        if self._closed:
            raise RuntimeError("the waker is closed")
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._take_ring():
                return True
            listening = commits and self._connect is not None
            if listening and self._conn is None and time.monotonic() >= self._next_try and self._listen():
                return True  # notifications sent while it was away are lost: look again
            now = time.monotonic()
            if now >= deadline:
                return False
            fds = [self._read]
            pause = deadline - now
            if listening and self._conn is not None:
                fds.append(self._conn.pgconn.socket)
                if self._heard():  # what came while the caller was busy
                    return True
            elif commits:  # polling: no way to hear of commits, so look again now and then
                pause = min(pause, POLL)
            ready, _, _ = select.select(fds, [], [], pause)
            if self._read in ready:
                self._drain()  # a byte whose ring was taken already must not wake every select after it
                continue  # the ring: taken at the top
            if len(fds) > 1:
                if ready and self._heard():
                    return True
                continue  # nothing yet, or the time ran out: decided at the top
            if commits and time.monotonic() < deadline:
                return True  # a poll interval passed with no way to hear of commits: look again

    def _take_ring(self) -> bool:
        if not self._rung:
            return False
        self._rung = False
        self._drain()
        return True

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._read, 512):
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
