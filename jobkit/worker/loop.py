"""The worker's loop: claim due jobs, hand them to the runner, write their outcomes in batches.

One loop thread owns every write a worker makes: it reaps expired locks, fires due cron
runs, claims as many jobs as it has free slots, hands them to a pool of threads (sync
handlers) or to one event loop (``async def`` handlers), and writes their outcomes in
batches, one transaction each, as they come back. The lease keeper
(:mod:`jobkit.lease`) extends the locks of running jobs independently of the handlers;
every write for an attempt is fenced by its token, so a worker that lost a job changes
nothing. Each job goes through :mod:`jobkit.run`'s steps, as ``now()`` and
``execute()`` do.

When idle, the loop sleeps on the store's waker: a commit by any process (new work)
or an outcome from a handler wakes it; ``poll_interval`` is only the fallback for jobs
that become due with time.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobkit import recurring, run
from jobkit.context import Context
from jobkit.errors import StoreError
from jobkit.lease import Held, LeaseKeeper, LeaseWatch
from jobkit.model import Clock, JobRecord, JobStatus, Outcome, Transition
from jobkit.options import WorkerOptions
from jobkit.spec import JobSpec
from jobkit.stages import timed_out
from jobkit.store import Store, clock_of
from jobkit.worker.outage import Outage
from jobkit.worker.pool import HandlerPool, event_loop, on_loop, semaphore
from jobkit.worker.reaping import reset_expired, reset_unrenewed
from jobkit.worker.report import Report
from jobkit.worker.resolve import Resolver
from jobkit.worker.retention import prune

if TYPE_CHECKING:  # imported when isolation="process" asks for it, ctypes and pipes (16 ms), and asyncio
    import asyncio  # when an async job first runs (16 ms more, ssl with it)

    from jobkit.worker.isolated import Children

logger = logging.getLogger("jobkit.worker")

STOP_CHECK = 0.1  # longest sleep before looking at the stop event (set from another thread)
GATHER = 0.002  # longest a few outcomes wait for more to share their transaction
TIMEOUT_EXIT = 75  # a --processes child that had to abandon a stuck job exits with this


class Worker:
    """Runs jobs from *store* until stopped; see :class:`WorkerOptions` for the settings.

    Up to ``concurrency`` sync handlers run at once on threads, and up to
    ``concurrency`` async handlers on the event loop. When jobs are short, the worker
    claims a few more than it has slots for (about 20 ms of work, measured as it goes),
    so that claims and outcomes travel in batches of many jobs per transaction; long
    jobs are never hoarded.
    """

    def __init__(
        self, store: Store, resolver: Resolver, options: WorkerOptions | None = None, *, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.options = options or WorkerOptions()
        self.clock = clock = clock_of(store, clock)  # the store's unless injected: what claims and delays follow
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(24):06x}"
        self.report = Report()
        self._waker = store.waker()
        self._keeper = LeaseKeeper(store, lock=self.options.lock, clock=clock, wake=self._waker.ring)
        self._claims = 0
        self._done: collections.deque[tuple[Held, Outcome | None]] = collections.deque()
        self._stopping = False
        self._pool: HandlerPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_slots: asyncio.Semaphore | None = None
        self._children: Children | None = None  # isolation="process": no process starts before a job needs one
        if self.options.isolation == "process":
            from jobkit.worker.isolated import Children

            self._children = Children()
        self._per_job = 1.0  # seconds a job takes, a moving average; starts pessimistic
        self._next_reap = 0.0
        self._next_prune = 0.0
        self._watch = LeaseWatch(self.options.lock)  # other workers' leases, as this one saw them
        self._unresettable: set[str] = set()  # lapsed jobs the store refused to reset, already logged
        self._outage = Outage()  # a store that refuses writes (a full disk): back off, log once
        self._one_pass = False  # run_once: reaps by the stored expiry, having watched nothing
        self._retention = (
            ((JobStatus.COMPLETED, JobStatus.CANCELLED), self.options.keep_completed),
            ((JobStatus.FAILED,), self.options.keep_failed),
        )

    @property
    def _held(self) -> dict[str, Held]:
        return self._keeper.held

    # -- public ---------------------------------------------------------------------
    def run(self, stop: threading.Event, *, burst: bool = False) -> Report:
        """Work until *stop* is set (or, with *burst*, until nothing is due); return the report."""
        ok, message = self.store.health()
        if not ok:
            self._waker.close()
            raise StoreError(message)
        logger.info("worker %s started: %s, concurrency %d", self.worker_id, message, self.options.concurrency)
        try:
            self.sync_schedules()
            while not stop.is_set():
                self._round(None)
                if burst and not self._held and not self._due_now():
                    break
                self._idle(stop)
        finally:
            self._shutdown()
        return self.report

    def sync_schedules(self) -> None:
        """Write the registry's declared schedules; disable the declared ones it dropped."""
        written, disabled = recurring.sync(self.store, self.resolver.registry, clock=self.clock)
        for name in written:
            logger.info("schedule %s written from code", name)
        for name in disabled:
            logger.warning("schedule %s is no longer declared in code; disabled", name)

    def run_once(self, limit: int) -> Report:
        """One pass: reset expired locks, enqueue due cron runs, claim up to *limit* jobs, run them."""
        self._one_pass = True
        try:
            self.sync_schedules()
            self._reap(force=True)
            self._round(limit)
            while self._held:
                if self._outage.since is not None and time.monotonic() - self._outage.since > self.options.grace:
                    self._give_up_writing()
                    break
                wake = self._keeper.next_due()
                if self._done:  # outcomes the store refused: try again after the outage's pause
                    wake = min(wake, self._outage.resume_at)
                self._waker.wait(max(0.0, wake - time.monotonic()), commits=False)
                self._round(0)  # record what came back; claim nothing more
        finally:
            self._close()
        return self.report

    def _give_up_writing(self) -> None:
        """End a tick (cron must see it end) whose store refused writes for ``grace``: those jobs run again."""
        self.report.unwritten = len(self._done)
        message = "could not write to the store for %gs; giving up on %d outcomes; they run again when their locks end"
        logger.error(message, self.options.grace, len(self._done))
        self._done.clear()
        self._held.clear()

    def stop_soon(self) -> None:
        """Wake the loop so it notices a stop request at once (any thread, or a signal handler)."""
        self._waker.ring()

    # -- one round ------------------------------------------------------------------
    def _target(self) -> int:
        """How many jobs to hold: the slots, plus about 20 ms of work when jobs are short."""
        concurrency = self.options.concurrency
        prefetch = int(concurrency * 0.02 / max(self._per_job, 1e-5))
        return concurrency + min(prefetch, 20 * concurrency, 200)

    def _round(self, want: int | None) -> None:
        """Write outcomes that came back and claim up to *want* more, in one transaction.

        *want* None fills the worker up to its target, counting the jobs just finished.
        """
        self._reap()
        batch = []
        while self._done:
            batch.append(self._done.popleft())
        finished = [(h, o) for h, o in batch if o is not None]
        give_back = [h for h, o in batch if o is None]
        now = self.clock()
        unresolved = self.options.unresolved_backoff
        transitions = [
            run.conclude(h, o, now, jitter=random.random(), unresolved_backoff=unresolved) for h, o in finished
        ]
        if want is None:
            want = self._target() - (len(self._held) - len(batch))
        want = max(want, 0) if not self._stopping else 0
        ending = {held.job.id for held, _ in batch}
        limits = self.options.claim_limits((h.job.queue for i, h in self._held.items() if i not in ending), want)
        self._claims += 1
        token = f"{self.worker_id}:{self._claims}"
        try:
            if give_back:
                self.report.released += sum(self.store.release([h.lease for h in give_back], now=now))
            applied, jobs = (
                self.store.finish_and_claim(
                    transitions,
                    limit=want,
                    now=now,
                    token=token,
                    lock_until=now + self.options.lock,
                    names=self.resolver.names(),
                    queues=limits,
                )
                if transitions or want > 0
                else ([], [])
            )
        except StoreError as exc:  # the database is in the way (a full disk, a long lock): keep all, back off
            self._outage.failed(exc)
            for held, _ in finished:
                held.unsure = True
            self._done.extendleft(reversed(batch))
            return
        except Exception as exc:  # not the database: something in this batch it cannot take
            if not batch:
                raise  # a claim alone; nothing of a job's is at stake here
            self._outage.failed(exc, f"writing {len(batch)} outcomes together")
            transitions, applied = self._one_by_one(give_back, finished, transitions)
            finished, jobs = finished[: len(applied)], []
        else:
            if transitions or want > 0:
                self._outage.worked()
        for held in give_back:
            self._keeper.forget(held)
        for (held, _), transition, ok in zip(finished, transitions, applied, strict=True):
            self._keeper.forget(held)
            committed = held.unsure and (held.lost or not ok) and run.written_before(self.store, held, transition)
            if committed:
                held.lost = False  # the write that failed had committed after all
            if run.recorded(held, transition, ok or committed, self.clock):
                self.report.count(transition)
            else:
                self.report.lost += 1
        self.report.claimed += len(jobs)
        for job in jobs:
            self._start(job)
        self._keeper.tend()
        if self.options.enforce_timeouts:
            self._enforce_timeouts()

    def _one_by_one(
        self, give_back: list[Held], finished: list[tuple[Held, Outcome]], transitions: list[Transition]
    ) -> tuple[list[Transition], list[bool]]:
        """Write a batch that failed as a whole one job at a time: what was written, in order.

        A job whose outcome the store cannot take is failed instead, spending its
        attempt (:func:`jobkit.run.finish_alone`); one whose failure cannot be written
        either is left to the reaper. A StoreError stops the writing: the rest wait in
        the queue for the next round.
        """
        for held in give_back:
            try:
                self.report.released += sum(self.store.release([held.lease], now=self.clock()))
            except Exception:  # its lock lapses and the reaper gives it back
                logger.exception("job %s: could not be given back", held.job.id)
        written: list[Transition] = []
        applied: list[bool] = []
        for index, ((held, _), transition) in enumerate(zip(finished, transitions, strict=True)):
            try:
                kept, ok = run.finish_alone(self.store, held, transition, self.clock)
            except StoreError as exc:
                self._outage.failed(exc)
                self._done.extendleft(reversed(finished[index:]))
                break
            except Exception:
                logger.exception("job %s: not even its failure could be written; its lock will lapse", held.job.id)
                kept, ok = transition, False
            written.append(kept)
            applied.append(ok)
        return written, applied

    def _guarded(self, step: Callable[[], None], what: str) -> None:
        """Run one housekeeping step; a failure (a locked database, a bad row) only postpones it.

        Each step is guarded on its own, so that one that keeps failing (say, a schedule
        row edited by hand into nonsense) does not hold up the others.
        """
        try:
            step()
        except StoreError as exc:
            logger.warning("%s postponed: %s", what, exc)
        except Exception:
            logger.exception("%s failed; trying again next round", what)

    def _reap(self, *, force: bool = False) -> None:
        """Fire due cron runs, reset expired locks, prune (once a ``reap_every``)."""
        if not force and time.monotonic() < self._next_reap:
            return
        self._next_reap = time.monotonic() + self.options.reap_every
        now = self.clock()
        self._guarded(lambda: self._fire_cron(now), "firing cron schedules")
        self._guarded(lambda: self._reset_expired(now), "resetting expired locks")
        self._guarded(lambda: self._prune(now), "pruning old jobs")

    def _fire_cron(self, now: datetime) -> None:
        fired = recurring.fire_due(self.store, now, names=self.resolver.names(), resolve=self.resolver.find)
        self.report.cron_enqueued += len(fired)
        if fired:
            logger.info("enqueued %d cron runs", len(fired))

    def _reset_expired(self, now: datetime) -> None:
        """Reset the jobs whose holders are gone; never one this worker holds (RELIABILITY.md 14).

        A running worker decides from renewals it watched not happen (:class:`LeaseWatch`),
        whatever any clock says. A one-pass tick cannot watch: before it holds anything, it
        trusts the stored expiry against its own clock (or its ``now``).
        """
        if self._one_pass and not self._held:
            reset = reset_expired(self.store, now)
            why = "lock expired"
        else:
            mine = {(held.lease.job_id, held.lease.token) for held in self._held.values()}
            marks = [m for m in self.store.leases() if (m.job_id, m.token) not in mine]
            due = self._watch.look(marks, time.monotonic())
            if not due:
                return
            reset = reset_unrenewed(self.store, due, now, self._unresettable)
            why = "lease not renewed"
        self.report.reset += len(reset.retried)
        self.report.lost_failed += len(reset.failed)
        self.report.cancelled += len(reset.cancelled)
        for job_id in reset.retried:
            logger.warning("job %s: its worker was lost (%s); back to pending", job_id, why)
        for job_id in reset.failed:
            logger.error("job %s: its worker was lost (%s) and its attempts are used up; failed", job_id, why)

    def _prune(self, now: datetime) -> None:
        """Delete old finished jobs, one small batch per kind at a time."""
        if time.monotonic() < self._next_prune:
            return
        deleted, full = prune(self.store, self._retention, now, self.options.prune_batch)
        self.report.purged += deleted
        # Still full after every batch means more is due now; else come back when the shortest keep may have new work.
        self._next_prune = time.monotonic() + (self.options.reap_every if full else self.options.prune_period)

    # -- running one job ------------------------------------------------------------------
    def _start(self, job: JobRecord) -> None:
        held = self._keeper.hold(job)
        prepared = run.prepare(held, self.resolver.resolve, self._keeper, self.clock)
        if not isinstance(prepared, tuple):
            self._finished(held, prepared)
            return
        spec, typed, ctx = prepared
        if spec.is_async:
            on_loop(self._event_loop(), self._run_async(held, spec, typed, ctx))
        elif self.options.isolation == "process":  # a handler thread waits on a child that runs it
            self._handlers().submit(lambda: self._run_isolated(held, spec, ctx))
        else:
            self._handlers().submit(lambda: self._run_sync(held, spec, typed, ctx))

    def _begin(self, held: Held) -> bool:
        """Called as a handler starts: False when the job must not start (stopping, or lost)."""
        if self._stopping or held.lost:
            self._finished(held, None)
            return False
        run.begin(held, self.clock)
        return True

    def _run_sync(self, held: Held, spec: JobSpec[Any, Any], typed: Any, ctx: Context) -> None:
        if self._begin(held):
            self._attempted(held, *run.attempt_held(held, spec, typed, ctx))

    def _run_isolated(self, held: Held, spec: JobSpec[Any, Any], ctx: Context) -> None:
        assert self._children is not None  # made in __init__ for isolation="process"
        if self._begin(held):
            self._attempted(held, *self._children.attempt(held, spec, ctx))

    async def _run_async(self, held: Held, spec: JobSpec[Any, Any], typed: Any, ctx: Context) -> None:
        if self._async_slots is None:
            self._async_slots = semaphore(self.options.concurrency)
        async with self._async_slots:
            if self._begin(held):
                self._attempted(held, *await run.attempt_held_async(held, spec, typed, ctx))

    def _attempted(self, held: Held, outcome: Outcome, fatal: BaseException | None) -> None:
        if fatal is not None:  # SystemExit or KeyboardInterrupt from a handler ends the job, not the worker
            logger.error("job %s: handler raised %s; recorded as a failure", held.job.id, type(fatal).__name__)
        if held.took is not None:
            self._per_job = 0.8 * self._per_job + 0.2 * held.took
        self._finished(held, outcome)

    def _finished(self, held: Held, outcome: Outcome | None) -> None:
        """Queue an outcome (None: give the job back) for the loop to write."""
        self._done.append((held, outcome))
        self._waker.ring()

    def _enforce_timeouts(self) -> None:
        """In a --processes child: a sync handler far past its timeout ends this process."""
        now = time.monotonic()
        for held in list(self._held.values()):
            spec = held.spec
            if spec is None or spec.is_async or spec.timeout is None or held.lost or held.started is None:
                continue
            if self.options.isolation == "process":  # its child is killed at the timeout instead
                continue
            if now - held.started > spec.timeout + max(1.0, spec.timeout * 0.1):
                logger.error("job %s: still running past its timeout of %gs; restarting", held.job.id, spec.timeout)
                self._stopping = True
                self._finished(held, timed_out(spec))
                self._round(0)
                self._release_all()
                logging.shutdown()
                os._exit(TIMEOUT_EXIT)

    # -- waiting ------------------------------------------------------------------------
    def _due_now(self) -> bool:
        due = self._next_due()
        return due is not None and due <= self.clock()

    def _next_due(self) -> datetime | None:
        queues = self.options.queues
        return self.store.next_due(self.resolver.names(), None if queues is None else list(queues))

    def _idle(self, stop: threading.Event) -> None:
        """Wait until something may have changed: an outcome, new work, or a timer."""
        start = time.monotonic()
        if self._outage.pausing():  # the store refused the last write: wait, not a busy loop
            while not stop.is_set() and self._outage.pausing():
                self._waker.wait(min(max(0.0, self._outage.resume_at - time.monotonic()), STOP_CHECK), commits=False)
            return
        if self._done:
            self._gather(start + GATHER)
            return
        deadline = min(start + self.options.poll_interval, self._keeper.next_due())
        if self._held:  # the once-a-reap look for expired locks and cron comes round on time
            deadline = min(deadline, max(start, self._next_reap))
        hungry = len(self._held) < self._target()
        if hungry:
            due = self._next_due()
            if due is not None:
                deadline = min(deadline, start + max(0.0, (due - self.clock()).total_seconds()))
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._waker.wait(min(remaining, STOP_CHECK), commits=hungry):
                return

    def _gather(self, deadline: float) -> None:
        """Let outcomes gather for a moment while most held jobs are still running.

        Each round is one transaction (one fsync at FULL durability), so a round for
        every outcome or two, as fast as short jobs finish, spends the write lock that
        other workers wait for. Once half the held jobs are back, or after
        :data:`GATHER`, the outcomes are written; a worker holding a job or two never waits.
        """
        while len(self._done) * 2 < len(self._held):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._waker.wait(remaining, commits=False):
                return

    # -- shutting down ------------------------------------------------------------------
    def _shutdown(self) -> None:
        """Let running jobs finish within the grace period; give back what did not start or finish."""
        self._stopping = True
        deadline = time.monotonic() + self.options.grace
        if self._held:
            logger.info("stopping: waiting up to %gs for %d held jobs", self.options.grace, len(self._held))
        while self._held and time.monotonic() < deadline:
            self._waker.wait(min(0.05, max(0.0, deadline - time.monotonic())), commits=False)
            self._round(0)
        self._round(0)
        self._release_all()
        self._close()
        logger.info("worker %s stopped: %s", self.worker_id, self.report)

    def _release_all(self) -> None:
        # A job whose outcome came back but could not be written is not given back (it
        # would run again); it stays running and returns only if its lock expires.
        finished = {id(held) for held, _ in self._done}
        left = [h for h in self._held.values() if not h.lost and id(h) not in finished]
        if left:
            released = self._keeper.release(left)
            self.report.released += released
            logger.warning("gave back %d unfinished jobs without spending an attempt", released)
        self._held.clear()

    def _close(self) -> None:
        """End the handler threads and the event loop once they are idle; close the waker."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
        if self._children is not None:
            self._children.close()
        self._waker.close()

    # -- executors ----------------------------------------------------------------------
    def _handlers(self) -> HandlerPool:
        if self._pool is None:
            self._pool = HandlerPool(self.options.concurrency)
        return self._pool

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = event_loop()
        return self._loop
