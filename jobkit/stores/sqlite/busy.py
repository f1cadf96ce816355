"""How a SqliteStore connection waits for another process's write lock."""

from __future__ import annotations

import random
import time


class Patience:
    """A busy handler: wait for another writer in short, jittered naps, up to a limit.

    SQLite's own busy timeout sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries, so two
    processes that take turns at the write lock (workers committing every millisecond)
    lose most of their time asleep. Short naps hand the lock over promptly.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.since = 0.0

    def __call__(self, tries: int) -> bool:
        now = time.monotonic()
        if tries == 0:
            self.since = now
        elif now - self.since >= self.limit:
            return False
        time.sleep(min(0.0001 * (tries + 1), 0.005) * (0.5 + random.random()))
        return True
