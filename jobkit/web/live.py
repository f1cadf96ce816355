"""What the overview shows, read at most once a second however many people look.

One :class:`Hub` per app holds the latest :class:`Snapshot` (counts, backlog, queues,
running jobs, schedules are not in it: they change by hand). A page or an event stream
asks for it; when it is older than :data:`FRESH` one thread reads the store again (every
store call blocks) while the others are answered from the one before. So ten open
browser tabs cost the database what one does, and on a queue of a million jobs a page
answers from the snapshot instead of counting again.

The reads are the store's own short read transactions, done before anything is rendered:
the dashboard never holds a write transaction, nor a read one while it renders.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs
from starlette.concurrency import run_in_threadpool

from jobkit.model import Backlog, JobRecord, QueueInfo, Summary
from jobkit.store import Store
from jobkit.web.tally import Tally

FRESH = 1.0  # seconds a snapshot is shown before it is read again, at least
QUICK = 0.1  # seconds: a store read this fast is waited for, so a page shows what is there now
READ_SHARE = 3.0  # ... and at least this many times as long as it took to read: on a big queue the
# counting (a scan of the table on SQLite) costs the database at most a third of one core
FAILED_WINDOW = timedelta(hours=1)  # "failed in the last hour", as the status command says


@attrs.frozen
class Snapshot:
    """The queue at one moment of the store's clock."""

    at: datetime
    summary: Summary
    backlog: Backlog
    queues: list[QueueInfo]


def read_snapshot(store: Store, tally: Tally) -> Snapshot:
    """Read everything the overview shows, each part in the store's own read transaction."""
    now = store.now()
    tally.look(store, now)
    return Snapshot(
        at=now,
        summary=store.summary(since=now - FAILED_WINDOW),
        backlog=store.backlog(now=now),
        queues=store.queues(),
    )


class Hub:
    """The latest snapshot, shared by every request of one app (and by every event loop: tests start several).

    When the last read was quick (under :data:`QUICK`) a stale snapshot is read again and
    waited for, so a page shows what the store holds now. When it was slow (a queue of a
    million jobs), the stale one is answered at once while one fresh read runs in a
    background thread: a page never waits for the counting, and the live updates bring the
    news a moment later. With no snapshot at all (at the start, or after an action) the
    caller always waits.
    """

    def __init__(self, store: Store, tally: Tally, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.tally = tally
        self._clock = clock
        self._reading = threading.Lock()  # one read at a time
        self._latest: tuple[float, Snapshot] | None = None
        self._fresh = FRESH  # how long the latest snapshot stays fresh
        self._quick = True  # whether the last read took under QUICK
        self._generation = 0  # bumped by forget(): a read begun before it is not kept
        self._stopping = False  # set by settle(): no more background reads

    async def snapshot(self) -> Snapshot:
        """The latest snapshot; a stale one is read again (in the background, if there is one to answer with)."""
        latest = self._latest
        if latest is not None and self._clock() - latest[0] < self._fresh:
            return latest[1]
        if latest is not None and not self._quick:
            if not self._reading.locked() and not self._stopping:
                threading.Thread(target=self._read, name="jobkit-web-snapshot", daemon=True).start()
            return latest[1]
        return await run_in_threadpool(self._read)

    def _read(self) -> Snapshot:
        with self._reading:
            latest, generation = self._latest, self._generation
            if latest is not None and self._clock() - latest[0] < self._fresh:
                return latest[1]  # read by someone else while this one waited
            began = self._clock()
            snapshot = read_snapshot(self.store, self.tally)
            done = self._clock()
            self._fresh = max(FRESH, READ_SHARE * (done - began))
            self._quick = done - began < QUICK
            if generation == self._generation:
                self._latest = (done, snapshot)
            return snapshot

    def settle(self, timeout: float = 60.0) -> None:
        """Start no more background reads and wait for one under way: the app stops, and its store may close next."""
        self._stopping = True
        if self._reading.acquire(timeout=timeout):
            self._reading.release()

    def forget(self) -> None:
        """Make the snapshot stale: an action changed the queue, and the page it redirects to is to show that.

        On a quick store that page waits for the fresh read; on a slow one it shows the last
        snapshot while the read runs, and the live updates bring the change a moment later
        (an action does not make its user wait for a million jobs to be counted).
        """
        self._generation += 1
        latest = self._latest
        self._latest = None if latest is None or self._quick else (float("-inf"), latest[1])

    async def job(self, job_id: str) -> JobRecord | None:
        return await run_in_threadpool(self.store.get, job_id)
