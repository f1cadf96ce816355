"""MemoryStore's table: the jobs by id, the unique keys they hold, and the waker that sleeps on its writes."""

from __future__ import annotations

import threading
import time

from jobkit import lifecycle
from jobkit.model import JobRecord


class Table(dict[str, JobRecord]):
    """The jobs by id, counting writes and waking the store's wakers on each.

    Every write happens under the store's lock, which is *changed*'s lock.
    """

    def __init__(self, changed: threading.Condition) -> None:
        super().__init__()
        self.version = 0
        self.changed = changed
        self.held_keys: dict[lifecycle.Key, str] = {}  # each unique key held, and the id of the job holding it

    def __setitem__(self, job_id: str, job: JobRecord) -> None:
        self._drop_key(job_id)
        super().__setitem__(job_id, job)
        if lifecycle.holds_key(job):
            self.held_keys[lifecycle.key_of(job)] = job_id  # type: ignore[index]  # holds_key: it has one
        self.touch()

    def __delitem__(self, job_id: str) -> None:
        self._drop_key(job_id)
        super().__delitem__(job_id)
        self.touch()

    def _drop_key(self, job_id: str) -> None:
        old = self.get(job_id)
        if old is not None and lifecycle.holds_key(old):
            del self.held_keys[lifecycle.key_of(old)]  # type: ignore[arg-type]

    def touch(self) -> None:
        self.version += 1
        self.changed.notify_all()


class MemoryWaker:
    """Sleeps on the store's condition: every write, and every ring, wakes it at once."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._seen = table.version
        self._rung = False

    def ring(self) -> None:
        # The condition's lock is an RLock: a signal handler that interrupts this thread
        # while it holds the lock takes it again instead of waiting for itself.
        with self._table.changed:
            self._rung = True
            self._table.changed.notify_all()

    def wait(self, timeout: float, *, commits: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        with self._table.changed:
            while True:
                if self._rung:
                    self._rung = False
                    return True
                if commits and self._table.version != self._seen:
                    self._seen = self._table.version
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._table.changed.wait(remaining)

    def close(self) -> None:
        """Nothing to release."""
