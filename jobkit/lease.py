"""The one lease keeper: the jobs a process holds stay locked, their progress written, their cancellations seen.

A claim holds a job until its lock expires. While the handler runs, the keeper extends
the lock every third of the lock timeout (a heartbeat), independently of the handler;
writes the handler's progress at most every :data:`PROGRESS_INTERVAL` per job (the one
progress throttle); and looks once a second for cancellations asked from elsewhere.
Every write is fenced by the claim's token: a keeper that finds a job no longer held
marks it lost and asks its handler to stop.

Two drivers call :meth:`LeaseKeeper.tend`: the worker's loop thread, between its
claims, and :meth:`LeaseKeeper.kept`, a thread of its own for a job that ``now()`` or
``execute()`` runs in the caller's thread.

The other side of a lease is :class:`LeaseWatch`: how a worker decides that someone
else's lease is lost, from renewals it saw not happen, never from comparing clocks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from jobkit import lifecycle
from jobkit.context import Flag
from jobkit.errors import StoreError
from jobkit.model import Clock, JobRecord, Lease, LeaseMark

if TYPE_CHECKING:
    from jobkit.spec import JobSpec
    from jobkit.store import Store

logger = logging.getLogger("jobkit.lease")

PROGRESS_INTERVAL = 0.2  # seconds between progress writes of one job
CANCEL_LOOK = 1.0  # seconds between looks for cancellations asked from elsewhere
BEAT_RETRY = 1.0  # seconds before a heartbeat that failed (a busy or full store) is tried again


@attrs.define(eq=False)
class Held:
    """A job this process holds: claimed, and its outcome not yet written."""

    job: JobRecord
    lease: Lease
    spec: JobSpec[Any, Any] | None = None
    cancel: Flag = attrs.field(factory=Flag)
    started: float | None = None  # time.monotonic() when the handler started
    took: float | None = None  # seconds the handler ran
    progress: tuple[int, str | None] | None = None  # reported, not yet written
    progress_at: float = 0.0
    lost: bool = False
    unsure: bool = False  # a write of its outcome failed, and may have committed all the same
    cancel_requested: bool = False
    expires: datetime | None = None  # the expiry last written for this lease (the claim's, then each beat's)


class LeaseKeeper:
    """Keeps the leases of the jobs one worker (or one ``now()``/``execute()`` call) holds.

    *wake* is called (from a handler's thread) when progress is ready to be written, so
    the driver (the worker's loop, the one thread that writes for a worker) need not
    poll for it. Without *wake*, a handler's progress is written from its own thread as
    soon as the throttle lets it, so that it is in the store when ``ctx.progress``
    returns.
    """

    def __init__(self, store: Store, *, lock: timedelta, clock: Clock, wake: Callable[[], None] | None = None) -> None:
        self.store = store
        self.lock = lock
        self.clock = clock
        self.held: dict[str, Held] = {}
        self._wake = wake
        self._writing = threading.Lock()  # the handler's thread and the keeper's may both write progress
        self._reported = threading.Lock()  # a report and the swap that takes it: none is lost between them
        self._next_beat = 0.0
        self._next_look = 0.0
        self._postponed: set[str] = set()  # steps whose last try met a StoreError

    @property
    def beat_every(self) -> float:
        return self.lock.total_seconds() / 3

    # -- holding ------------------------------------------------------------------
    def hold(self, job: JobRecord) -> Held:
        """Start keeping a job just claimed (its ``worker_id`` is the token)."""
        held = Held(job, Lease(job.id, job.worker_id or ""), expires=job.worker_expires_at)
        older = self.held.get(job.id)
        if older is not None:
            # This process stalled past its own lock and took the job again: the older
            # attempt has lost its lease and must not be kept in place of this one.
            self.lose(older)
        if not self.held:
            self._next_beat = time.monotonic() + self.beat_every
        self.held[job.id] = held
        return held

    def forget(self, held: Held) -> None:
        """Stop keeping *held*; a newer attempt of the same job is kept."""
        if self.held.get(held.job.id) is held:
            del self.held[held.job.id]

    def lose(self, held: Held) -> None:
        """The lease of *held* is gone: its outcome will be dropped; ask its handler to stop."""
        if not held.lost:
            held.lost = True
            held.cancel.set()
            logger.warning("job %s: lease lost (another worker holds it now); asking the handler to stop", held.job.id)

    def ask_to_cancel(self, held: Held) -> None:
        if not held.cancel_requested:
            held.cancel_requested = True
            held.cancel.set()
            logger.info("job %s: cancellation requested; asking the handler to stop", held.job.id)

    def release(self, helds: Sequence[Held]) -> int:
        """Give *helds* back without spending their attempts; how many were still held."""
        for held in helds:
            held.cancel.set()
            self.forget(held)
        leases = [h.lease for h in helds if not h.lost]
        return sum(self.store.release(leases, now=self.clock())) if leases else 0

    # -- progress -----------------------------------------------------------------
    def report(self, held: Held, percent: int, message: str | None) -> None:
        """A handler's progress (from its thread): kept for the next write, at most one per interval."""
        with self._reported:
            held.progress = (percent, message)
        if time.monotonic() - held.progress_at < PROGRESS_INTERVAL:
            return
        if self._wake is not None:
            self._wake()
        else:
            self.write_progress()

    def write_progress(self, *, force: bool = False) -> None:
        """Write the progress that is due (all that is reported, with *force*)."""
        with self._writing:
            now = time.monotonic()
            for held in list(self.held.values()):
                if held.progress is None or (not force and now - held.progress_at < PROGRESS_INTERVAL):
                    continue
                with self._reported:
                    (percent, message), held.progress = held.progress, None
                held.progress_at = now
                if not self.store.progress(held.lease, percent, message, now=self.clock()):
                    self.lose(held)

    # -- heartbeats and cancellations -----------------------------------------------
    def beat(self) -> None:
        """Extend the locks of held jobs when a third of the lock timeout has passed."""
        if not self.held or time.monotonic() < self._next_beat:
            return
        # A beat that fails is tried again soon, not a third of the lock later: two
        # failures in a row would otherwise let the lease run out under a live worker.
        self._next_beat = time.monotonic() + min(self.beat_every, BEAT_RETRY)
        now = self.clock()
        beating = [h for h in self.held.values() if not h.lost]
        until = renewal(now + self.lock, [h.expires for h in beating], self.lock)
        answered = self.store.heartbeat([h.lease for h in beating], now=now, lock_until=until)
        self._next_beat = time.monotonic() + self.beat_every
        for held in list(self.held.values()):
            if held.job.id not in answered:
                if not held.unsure:  # its handler is done; the outcome's write tells whether it was lost
                    self.lose(held)
            else:
                held.expires = until
                if answered[held.job.id]:
                    self.ask_to_cancel(held)

    def look_for_cancellations(self) -> None:
        """Once a second while jobs are held: ask the handlers of jobs cancelled elsewhere to stop."""
        if not self.held or time.monotonic() < self._next_look:
            return
        self._next_look = time.monotonic() + CANCEL_LOOK
        for job_id in self.store.cancelling():
            held = self.held.get(job_id)
            if held is not None:
                self.ask_to_cancel(held)

    def tend(self) -> None:
        """Do what is due: progress writes, heartbeats, the look for cancellations.

        Each step is guarded on its own: a busy database postpones it, anything else
        (a row edited by hand into nonsense) is logged and tried again next time, and
        neither holds up the other steps or ends the driver.
        """
        for step in (self.write_progress, self.beat, self.look_for_cancellations):
            what = step.__name__.replace("_", " ")
            try:
                step()
            except StoreError as exc:  # once an incident: a store that is down for long must not fill the log
                if what in self._postponed:
                    logger.debug("%s postponed again: %s", what, exc)
                else:
                    self._postponed.add(what)
                    logger.warning("%s postponed: %s", what, exc)
                continue
            except Exception:
                logger.exception("%s failed; trying again next time", what)
                continue
            if what in self._postponed:
                self._postponed.discard(what)
                logger.warning("%s works again", what)

    def next_due(self) -> float:
        """The ``time.monotonic()`` by which :meth:`tend` has something to do (infinity: nothing held)."""
        if not self.held:
            return float("inf")
        due = min(self._next_beat, self._next_look)
        if any(h.progress is not None for h in self.held.values()):
            due = min(due, time.monotonic() + PROGRESS_INTERVAL)
        return due

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """Tend these leases from a thread of their own while the body runs; write the last progress after."""
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(max(0.0, min(self.next_due() - time.monotonic(), PROGRESS_INTERVAL))):
                self.tend()

        thread = threading.Thread(target=keep, name="jobkit-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            try:
                self.write_progress(force=True)
            except StoreError as exc:
                logger.warning("last progress write postponed: %s", exc)


# -- watching the leases of others ------------------------------------------------------
def renewal(until: datetime, written: Collection[datetime | None], lock: timedelta) -> datetime:
    """The expiry a heartbeat writes: *until*, or just past every expiry these leases hold, if that is later.

    Reapers know a lease was renewed by its expiry changing, so a heartbeat must never
    write one it wrote before: a clock that stands still, or steps back a little, would.
    Only a step back by more than *lock* lets the expiry move back, to a time far from
    any it held lately; so a stepped clock never leaves a lease meant to last long.
    """
    later = [last for last in written if last is not None and until <= last < until + lock]
    return max(later) + timedelta(microseconds=1) if later else until


class LeaseWatch:
    """What one reaper has seen of the leases it does not hold, timed on its own monotonic clock.

    A holder renews its lease every third of its lock timeout, each time writing a new
    expiry. A lease whose mark (token and expiry) stays the same while this reaper
    watches it for the lease's length (this reaper's lock timeout, or the longer one
    the holder wrote) was not renewed: its holder is gone (dead, frozen, cut off). No
    wall clock is compared with another's: a holder whose clock steps, or runs ahead or
    behind, still writes a new expiry each time, and the reaper's monotonic clock only
    times what the reaper saw itself. A reaper that just started has seen nothing, so it
    reaps nothing before one lease length has passed.
    """

    def __init__(self, lock: timedelta) -> None:
        self.lock = lock
        # job id -> (the mark's token and expiry, when first seen so, seconds to wait)
        self._seen: dict[str, tuple[tuple[str, datetime | None], float, float]] = {}

    def look(self, marks: Iterable[LeaseMark], at: float) -> list[LeaseMark]:
        """Note *marks*, read at *at* (a ``time.monotonic()``); return those unrenewed for their length.

        *marks* are every lease there is but the reaper's own; one no longer among them
        is forgotten. A mark is due only once seen unchanged on two looks at least its
        length apart, never on the look that first saw it.
        """
        seen: dict[str, tuple[tuple[str, datetime | None], float, float]] = {}
        due = []
        for mark in marks:
            key = (mark.token, mark.expires_at)
            first = self._seen.get(mark.job_id)
            if first is None or first[0] != key:
                first = (key, at, max(self.lock, lifecycle.stated_length(mark)).total_seconds())
            elif at - first[1] >= first[2]:
                due.append(mark)
            seen[mark.job_id] = first
        self._seen = seen
        return due
