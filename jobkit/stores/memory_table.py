"""MemoryStore's table: the jobs by id, the unique keys they hold, who waits on whom, and the waker on its writes."""

from __future__ import annotations

import threading
import time

from jobkit import lifecycle
from jobkit.model import LIVE, JobRecord


class Table(dict[str, JobRecord]):
    """The jobs by id, counting writes and waking the store's wakers on each.

    Every write happens under the store's lock, which is *changed*'s lock. A write that
    ends a job settles the jobs that run after it (:func:`lifecycle.after_parent_ended`),
    and theirs in turn, as the SQL stores' triggers do.
    """

    def __init__(self, changed: threading.Condition) -> None:
        super().__init__()
        self.version = 0
        self.changed = changed
        self.held_keys: dict[lifecycle.Key, str] = {}  # each unique key held, and the id of the job holding it
        self.dependents: dict[str, list[str]] = {}  # each job that others run after, and those others

    def __setitem__(self, job_id: str, job: JobRecord) -> None:
        old = self._put(job_id, job)
        if old is not None and old.status in LIVE and job.status.finished and job_id in self.dependents:
            self._settle(job)
        self.touch()

    def _put(self, job_id: str, job: JobRecord) -> JobRecord | None:
        old = self.get(job_id)
        self._drop_key(job_id)
        super().__setitem__(job_id, job)
        if lifecycle.holds_key(job):
            self.held_keys[lifecycle.key_of(job)] = job_id  # type: ignore[index]  # holds_key: it has one
        return old

    def _settle(self, parent: JobRecord) -> None:
        ended = [parent]
        while ended:
            done = ended.pop()
            for child_id in self.dependents.get(done.id, ()):
                child = self.get(child_id)
                after = lifecycle.after_parent_ended(child, done) if child is not None else None
                if after is not None and after is not child:
                    self._put(child_id, after)
                    if after.status.finished:
                        ended.append(after)

    def parents(self, job: JobRecord) -> list[str]:
        """The jobs *job* still runs after: those it named that are still here, as the jobs they were
        (a job deleted since counts as done, even when a new job takes its id), as job_deps holds them."""
        return [p for p in dict.fromkeys(job.depends_on) if job.id in self.dependents.get(p, ())]

    def depend(self, job: JobRecord) -> None:
        """Note that *job* runs after the jobs it names."""
        for parent in dict.fromkeys(job.depends_on):
            self.dependents.setdefault(parent, []).append(job.id)

    def __delitem__(self, job_id: str) -> None:
        self._drop_key(job_id)
        job = super().pop(job_id)
        self.dependents.pop(job_id, None)
        for parent in dict.fromkeys(job.depends_on):  # a job purged waits on no one: its id may come back
            waiting = self.dependents.get(parent)
            if waiting is not None and job_id in waiting:
                waiting.remove(job_id)
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
        if self._rung:  # rung and not yet taken (the wait clears it under the lock): the waiter sees both
            return
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
