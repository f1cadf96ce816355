"""SqliteWaker: sleeping until a commit by any process, or a ring from this one.

A commit shows in ``PRAGMA data_version``, read on the waiting thread's own connection
(only the pragma, not ``Connection.data_version()``, sees other connections' commits).
To learn when to read it without polling, the waker sleeps in ``select`` on inotify on
the WAL, which every commit writes to, and on a self-pipe that :meth:`SqliteWaker.ring`
writes to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import apsw

logger = logging.getLogger("jobkit")

SETTLE = 0.05  # after a write to the WAL, how long to look for its commit to show
SETTLE_CHECK = 0.001  # between those looks
RECHECK = 0.1  # longest sleep between looks at the data version, for commits whose write woke an earlier look
POLL = 0.002  # between looks at the data version where inotify is missing


class SqliteWaker:
    """Wakes one waiting thread on a ring (any thread, or a signal handler) or on a commit by anyone.

    *connection* gives the calling thread's connection to the store (one per thread);
    *wal* is the file each commit writes to. Where inotify cannot watch it (not Linux,
    no WAL yet, or the watch fails) the waker looks at the data version every 2 ms.
    """

    def __init__(self, connection: Callable[[], apsw.Connection], wal: str) -> None:
        self._connection = connection
        # data_version is per connection, so per thread: a reading compares only with its own.
        self._thread = threading.get_ident()
        self._seen = self._version()  # first: a closed store raises here, holding nothing yet
        # A flag, not a threading.Event: a signal handler that interrupts the waiting
        # thread inside the event's own lock would wait for itself.
        self._rung = False
        self._sleeping = False
        self._closed = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._inotify = _watch(wal)

    @property
    def watching(self) -> bool:
        """Whether commits are seen through inotify (rather than by looking every few ms)."""
        return self._inotify is not None

    def ring(self) -> None:
        """Wake the waiting thread now (any thread, or a signal handler)."""
        if self._rung:  # rung and not yet taken: the waiter sees this ring with that one
            return
        self._rung = True
        # The pipe only while the waiter sleeps in select, and once per ring it takes: a
        # busy worker's outcomes would each pay a system call, and wait for the GIL after
        # it. (The waiter marks itself asleep before it looks at the flag.)
        if self._sleeping:
            with contextlib.suppress(BlockingIOError):
                os.write(self._write, b"!")

    def wait(self, timeout: float, *, commits: bool = True) -> bool:
        """Sleep up to *timeout* seconds; True when rung or, with *commits*, when anyone committed.

        A commit counts when it became visible since the previous wait returned (or since
        the waker was made). Called from another thread than the last one that looked,
        it cannot tell, and returns True at once (from then on it compares on this thread).
        With *commits* False it waits for a ring alone. False when the time ran out.
        """
        deadline = time.monotonic() + timeout
        if self._take_ring():
            return self._woken(commits)
        if commits and threading.get_ident() != self._thread:
            self._thread, self._seen = threading.get_ident(), self._version()
            return True
        if commits and self._changed():
            return True
        settling = 0.0  # until when to look often, after a write to the WAL
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return False
            if not commits:
                nap, watch = remaining, False
            elif self._inotify is None:
                nap, watch = min(remaining, POLL), False
            elif now < settling:
                # A WAL write comes before its commit is visible, by as long as the
                # writer's fsync takes, and nothing more is written to watch for once it is.
                nap, watch = min(remaining, SETTLE_CHECK), False
            else:
                # Two commits can be written before one wake-up reads both their events,
                # and the later may show only after its fsync: so sleep at most RECHECK.
                nap, watch = min(remaining, RECHECK), True
            rung, written = self._sleep(nap, watch=watch)
            if rung:
                return self._woken(commits)
            if written:
                settling = time.monotonic() + SETTLE
            if commits and self._changed():
                return True

    def close(self) -> None:
        """Close the pipe and the inotify; the waker is not used again."""
        if self._closed:
            return
        self._closed = True
        for fd in (self._read, self._write):
            os.close(fd)
        if self._inotify is not None:
            self._inotify.close()

    def __repr__(self) -> str:
        return f"SqliteWaker(watching={self.watching})"

    # -- inside -----------------------------------------------------------------------
    def _version(self) -> int:
        return int(self._connection().execute("PRAGMA data_version").fetchall()[0][0])  # type: ignore[arg-type]

    def _changed(self) -> bool:
        """Whether the data version moved since the last reading; take this one as the new baseline."""
        version = self._version()
        if version == self._seen:
            return False
        self._seen = version
        return True

    def _woken(self, commits: bool) -> bool:
        """True, for a ring; a wait for commits also takes the data version of now as seen."""
        if commits:
            self._thread, self._seen = threading.get_ident(), self._version()
        return True

    def _take_ring(self) -> bool:
        if self._rung:
            self._rung = False
            return True
        return False

    def _sleep(self, timeout: float, *, watch: bool) -> tuple[bool, bool]:
        """Sleep in select up to *timeout* on the pipe (and the WAL's inotify if *watch*): (rung, written)."""
        fds = [self._read]
        if watch and self._inotify is not None:
            fds.append(self._inotify.fileno())
        self._sleeping = True
        try:
            if self._take_ring():  # after marking asleep: a ring from now on writes the pipe
                return True, False
            ready, _, _ = select.select(fds, [], [], timeout)
        finally:
            self._sleeping = False
        if self._read in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._read, 4096)
        written = any(fd != self._read for fd in ready)
        if written:
            self._inotify.read(timeout=0)
        return self._take_ring(), written


def _watch(path: str) -> Any:
    """An inotify watching *path* for writes, or None where that cannot be had."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        from inotify_simple import INotify, flags

        inotify = INotify(nonblocking=True)
    except (ImportError, OSError) as exc:
        logger.debug("no inotify (%s); looking for commits every %g ms instead", exc, POLL * 1000)
        return None
    try:
        inotify.add_watch(path, flags.MODIFY)
    except OSError as exc:
        inotify.close()
        logger.debug("no inotify on %s (%s); looking for commits every %g ms instead", path, exc, POLL * 1000)
        return None
    return inotify
