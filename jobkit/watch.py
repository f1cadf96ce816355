"""Sleeping until something changes: outcomes in this process, commits in any other."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
from typing import Any, Literal

from jobkit.store import Store

logger = logging.getLogger("jobkit.worker")

WAKE_CHECK = 0.002  # seconds between looks for commits where inotify is missing


class Doorbell:
    """Wakes an idle loop: outcomes and signals from this process, commits from any other.

    Commits from other processes are seen through inotify on the file the store writes on
    every commit (SQLite's WAL), so an idle worker sleeps in ``select`` and wakes within
    a millisecond of an enqueue. Where inotify is missing it polls the store's
    ``data_version`` every few milliseconds instead.
    """

    def __init__(self, store: Store) -> None:
        self._event = threading.Event()
        self._sleeping = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._inotify = _watch(store.change_file())

    @property
    def watching(self) -> bool:
        return self._inotify is not None

    def ring(self) -> None:
        """Wake the loop (any thread, or a signal handler)."""
        # Set once until the loop clears it: a busy worker's outcomes would each pay
        # Event.set's lock and notify. (The loop clears it before it looks at what came.)
        if not self._event.is_set():
            self._event.set()
        if self._sleeping:
            with contextlib.suppress(BlockingIOError):
                os.write(self._write, b"!")

    def wait(self, timeout: float) -> bool:
        """Wait for a local ring up to *timeout*; True if rung. Ignores other processes."""
        if self._event.wait(timeout):
            self._event.clear()
            return True
        return False

    def wait_for_commit(self, timeout: float) -> Literal["rung", "written", None]:
        """Wait for a local ring or a write to the store by anyone; say which came first.

        Without inotify, every few milliseconds counts as "written" (the caller polls).
        """
        if self._inotify is None:
            return "rung" if self.wait(min(timeout, WAKE_CHECK)) else "written"
        self._sleeping = True
        try:
            if self._event.is_set():
                self._event.clear()
                return "rung"
            ready, _, _ = select.select([self._read, self._inotify.fileno()], [], [], timeout)
        finally:
            self._sleeping = False
        if self._read in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._read, 4096)
        if self._inotify.fileno() in ready:
            self._inotify.read(timeout=0)
        if self._event.is_set():
            self._event.clear()
            return "rung"
        return "written" if ready else None

    def close(self) -> None:
        for fd in (self._read, self._write):
            os.close(fd)
        if self._inotify is not None:
            self._inotify.close()


def _watch(path: str | None) -> Any:
    """An inotify watching *path* for writes, or None where that cannot be had."""
    if path is None or not sys.platform.startswith("linux"):
        return None
    try:
        from inotify_simple import INotify, flags

        inotify = INotify(nonblocking=True)
        inotify.add_watch(path, flags.MODIFY)
        return inotify
    except (ImportError, OSError) as exc:
        logger.debug("no inotify on %s (%s); polling for new jobs instead", path, exc)
        return None
