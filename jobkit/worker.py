"""The worker: claim due jobs, run them, record what happened; and ``python -m jobkit.worker``.

One loop thread owns every write a worker makes: it reaps expired locks, claims as many
jobs as it has free slots, hands them to a pool of threads (sync handlers) or to one
event loop (``async def`` handlers), and writes their outcomes in batches, one
transaction each, as they come back. Heartbeats extend the locks of running jobs every
third of the lock timeout, independently of the handlers; every write for an attempt is
fenced by its token, so a worker that lost a job changes nothing.

When idle, the loop checks every few milliseconds whether another connection has
committed (SQLite's ``data_version``, a read of a counter in shared memory), so a newly
enqueued job starts within milliseconds without a busy loop; ``poll_interval`` is only
the fallback for jobs that become due with time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import logging
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from jobkit import executor, recurring
from jobkit.context import Context, Flag
from jobkit.errors import StoreError, UnknownJobError
from jobkit.events import Event
from jobkit.model import (
    Cancel,
    Clock,
    Complete,
    Fail,
    Failed,
    JobRecord,
    JobStatus,
    Lease,
    Outcome,
    Retry,
    Stopped,
    Transition,
    utc_now,
)
from jobkit.spec import JobSpec, Registry
from jobkit.store import Store
from jobkit.watch import Doorbell

logger = logging.getLogger("jobkit.worker")

STOP_CHECK = 0.1  # longest sleep before looking at the stop event (set from another thread)
SETTLE = 0.05  # after a write to the WAL, how long to look for its commit
SETTLE_CHECK = 0.001  # and how often
REAP_EVERY = 1.0  # seconds between looks for expired locks, due cron runs and cancellations
PRUNE_EVERY = 600.0  # seconds between deletions of old finished jobs
PRUNE_BATCH = 500  # jobs deleted in one transaction
KEEP_COMPLETED = timedelta(days=7)  # how long completed and cancelled jobs are kept by default
KEEP_FAILED = timedelta(days=30)  # and failed ones
PROGRESS_EVERY = 0.2  # seconds between progress writes of one job
TIMEOUT_EXIT = 75  # a --processes child that had to abandon a stuck job exits with this


# -- finding specs by name ------------------------------------------------------------
class Resolver:
    """Finds the spec for a job name.

    With *import_on_demand*, a name ``"module:qualname"`` not in the registry is imported
    and used when it leads to a :class:`JobSpec`; otherwise only registered names run.
    """

    def __init__(self, registry: Registry, *, import_on_demand: bool) -> None:
        self.registry = registry
        self.import_on_demand = import_on_demand
        self._found: dict[str, JobSpec[Any, Any] | UnknownJobError] = {}

    def names(self) -> Collection[str] | None:
        """The names this worker claims: None for any."""
        return None if self.import_on_demand else set(self.registry.names())

    def find(self, name: str) -> JobSpec[Any, Any] | None:
        """The spec for *name*, or None."""
        try:
            return self.resolve(name)
        except UnknownJobError:
            return None

    def resolve(self, name: str) -> JobSpec[Any, Any]:
        spec = self.registry.get(name)
        if spec is not None:
            return spec
        if name not in self._found:
            self._found[name] = self._import(name)
        found = self._found[name]
        if isinstance(found, UnknownJobError):
            raise found
        return found

    def _import(self, name: str) -> JobSpec[Any, Any] | UnknownJobError:
        if not self.import_on_demand:
            return UnknownJobError(name, "this worker runs only the jobs given with --jobs")
        module_name, _, qualname = name.partition(":")
        if not module_name or not qualname:
            return UnknownJobError(name, "the name is not of the form 'module:function'")
        if module_name == "__main__":
            return UnknownJobError(name, "it was defined in a script run as __main__, which a worker cannot import")
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as exc:
            return UnknownJobError(name, f"cannot import {module_name!r}: {type(exc).__name__}: {exc}")
        for part in qualname.split("."):
            target = getattr(target, part, None)
        if not isinstance(target, JobSpec):
            return UnknownJobError(name, f"{module_name}.{qualname} is not a job spec")
        if target.name != name:
            return UnknownJobError(name, f"{module_name}.{qualname} is registered as {target.name!r}")
        return target


def load_registry(target: str) -> Registry:
    """Import ``MODULE[:ATTRIBUTE]`` and return its Registry (the one registry in it by default)."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, Registry):
            raise ValueError(f"{target}: {attribute!r} is not a jobkit.Registry")
        return found
    registries = [value for value in vars(module).values() if isinstance(value, Registry)]
    if len(registries) != 1:
        raise ValueError(
            f"{target}: expected one jobkit.Registry in {module_name}, found {len(registries)}; name it as MODULE:NAME"
        )
    return registries[0]


def merge(registries: Iterable[Registry]) -> Registry:
    """One registry holding every spec of *registries*."""
    merged = Registry()
    for registry in registries:
        merged.include(registry)
    return merged


# -- reports ------------------------------------------------------------------------
@attrs.define
class Report:
    """What a worker (or one tick) did."""

    reset: int = 0
    lost_failed: int = 0
    cron_enqueued: int = 0
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    lost: int = 0
    released: int = 0
    purged: int = 0

    def count(self, transition: Transition) -> None:
        match transition:
            case Complete():
                self.completed += 1
            case Retry():
                self.retried += 1
            case Fail():
                self.failed += 1
            case Cancel():
                self.cancelled += 1

    def __str__(self) -> str:
        parts = [
            f"{self.claimed} claimed",
            f"{self.completed} completed",
            f"{self.failed} failed",
            f"{self.retried} retried",
        ]
        for label, n in (
            ("cancelled", self.cancelled),
            ("expired locks reset", self.reset),
            ("failed after their worker was lost", self.lost_failed),
            ("cron runs enqueued", self.cron_enqueued),
            ("leases lost", self.lost),
            ("given back", self.released),
            ("old jobs purged", self.purged),
        ):
            if n:
                parts.append(f"{n} {label}")
        return ", ".join(parts)


@attrs.define(eq=False)
class _Running:
    """A job this worker holds: claimed, and its outcome not yet written."""

    job: JobRecord
    lease: Lease
    spec: JobSpec[Any, Any] | None = None
    cancel: Flag = attrs.field(factory=Flag)
    started: float | None = None
    progress: tuple[int, str | None] | None = None
    progress_at: float = 0.0
    lost: bool = False
    cancel_requested: bool = False


class _Pool:
    """A fixed set of daemon threads: a stuck handler never blocks the process from exiting."""

    def __init__(self, size: int) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._size = size
        for n in range(size):
            threading.Thread(target=self._serve, name=f"jobkit-handler-{n}", daemon=True).start()

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            task()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def close(self) -> None:
        """Let each thread end once the tasks before this call are done."""
        for _ in range(self._size):
            self._tasks.put(None)


# -- the worker -----------------------------------------------------------------------
class Worker:
    """Runs jobs from *store* until stopped. See :func:`run_worker` for the options.

    Up to *concurrency* sync handlers run at once on threads, and up to *concurrency*
    async handlers on the event loop. When jobs are short, the worker claims a few more
    than it has slots for (about 20 ms of work, measured as it goes), so that claims and
    outcomes travel in batches of many jobs per transaction; long jobs are never hoarded.
    """

    def __init__(
        self,
        store: Store,
        resolver: Resolver,
        *,
        concurrency: int = 5,
        lock_timeout: float = 300.0,
        poll_interval: float = 1.0,
        grace: float = 30.0,
        clock: Clock = utc_now,
        enforce_timeouts: bool = False,
        keep_completed: timedelta | None = KEEP_COMPLETED,
        keep_failed: timedelta | None = KEEP_FAILED,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if lock_timeout <= 0 or poll_interval <= 0 or grace < 0:
            raise ValueError("lock_timeout and poll_interval must be positive, grace not negative")
        self.store = store
        self.resolver = resolver
        self.concurrency = concurrency
        self.lock = timedelta(seconds=lock_timeout)
        self.poll_interval = poll_interval
        self.grace = grace
        self.clock = clock
        self.enforce_timeouts = enforce_timeouts
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(24):06x}"
        self.report = Report()
        self._claims = 0
        self._held: dict[str, _Running] = {}
        self._done: collections.deque[tuple[_Running, Outcome | None]] = collections.deque()
        self._bell = Doorbell(store)
        self._stopping = False
        self._pool: _Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_slots: asyncio.Semaphore | None = None
        self._per_job = 1.0  # seconds a job takes, a moving average; starts pessimistic
        self._next_reap = 0.0
        self._next_beat = 0.0
        self._version = -1
        self._next_prune = 0.0
        self._retention = (
            ((JobStatus.COMPLETED, JobStatus.CANCELLED), keep_completed),
            ((JobStatus.FAILED,), keep_failed),
        )

    # -- public ---------------------------------------------------------------------
    def run(self, stop: threading.Event, *, burst: bool = False) -> Report:
        """Work until *stop* is set (or, with *burst*, until nothing is due); return the report."""
        ok, message = self.store.health()
        if not ok:
            raise StoreError(message)
        logger.info("worker %s started: %s, concurrency %d", self.worker_id, message, self.concurrency)
        self.sync_schedules()
        try:
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
        try:
            self.sync_schedules()
            self._reap(force=True)
            self._round(limit)
            while self._held:
                self._bell.wait(self._until_beat())
                self._round(0)  # record what came back; claim nothing more
        finally:
            self._close()
        return self.report

    def stop_soon(self) -> None:
        """Wake the loop so it notices a stop request at once."""
        self._bell.ring()

    # -- one round ------------------------------------------------------------------
    def _target(self) -> int:
        """How many jobs to hold: the slots, plus about 20 ms of work when jobs are short."""
        prefetch = int(self.concurrency * 0.02 / max(self._per_job, 1e-5))
        return self.concurrency + min(prefetch, 20 * self.concurrency, 200)

    def _round(self, want: int | None) -> None:
        """Write outcomes that came back and claim up to *want* more, in one transaction.

        *want* None fills the worker up to its target, counting the jobs just finished.
        """
        self._reap()
        batch = []
        while self._done:
            batch.append(self._done.popleft())
        finished = [(r, o) for r, o in batch if o is not None]
        give_back = [r for r, o in batch if o is None]
        now = self.clock()
        transitions = [
            executor.decide(r.spec, r.job, Stopped() if r.cancel_requested else o, now, jitter=random.random())
            for r, o in finished
        ]
        if want is None:
            want = self._target() - (len(self._held) - len(batch))
        want = max(want, 0) if not self._stopping else 0
        self._claims += 1
        token = f"{self.worker_id}:{self._claims}"
        try:
            if give_back:
                self.report.released += sum(self.store.release([r.lease for r in give_back], now=now))
            applied, jobs = (
                self.store.finish_and_claim(
                    transitions,
                    limit=want,
                    now=now,
                    token=token,
                    lock_until=now + self.lock,
                    names=self.resolver.names(),
                )
                if transitions or want > 0
                else ([], [])
            )
        except StoreError as exc:
            logger.warning("could not write to the store yet (%s); will retry", exc)
            self._done.extendleft(reversed(batch))
            return
        for running in give_back:
            self._forget(running)
        for (running, _), transition, ok in zip(finished, transitions, applied, strict=True):
            self._forget(running)
            hooks = running.spec.hooks if running.spec is not None else None
            if not ok or running.lost:
                self.report.lost += 1
                logger.warning("job %s: lease lost; this worker's outcome was dropped", running.job.id)
                if hooks:
                    hooks.emit(
                        Event("lease_lost", running.job.id, running.job.job_name, now, running.job.attempt_count)
                    )
                continue
            self.report.count(transition)
            self._log(running, transition)
            if hooks:
                took = time.monotonic() - running.started if running.started is not None else None
                hooks.emit(executor.event_of(running.job, transition, took))
        self.report.claimed += len(jobs)
        for job in jobs:
            self._start(job, token)
        self._guarded(self._beat)
        self._guarded(self._write_progress)

    def _guarded(self, write: Callable[[], None], what: str | None = None) -> None:
        """Run one housekeeping step; a failure (a locked database, a bad row) only postpones it.

        Each step is guarded on its own, so that one that keeps failing (say, a schedule
        row edited by hand into nonsense) does not hold up the others.
        """
        try:
            write()
        except StoreError as exc:
            logger.warning("%s postponed: %s", what or write.__name__.strip("_").replace("_", " "), exc)
        except Exception:
            logger.exception("%s failed; trying again next round", what or write.__name__.strip("_").replace("_", " "))

    def _reap(self, *, force: bool = False) -> None:
        """Fire due cron runs, reset expired locks, look for cancellations, prune (once a second)."""
        if not force and time.monotonic() < self._next_reap:
            return
        self._next_reap = time.monotonic() + REAP_EVERY
        now = self.clock()
        self._guarded(lambda: self._fire_cron(now), "firing cron schedules")
        self._guarded(lambda: self._reset_expired(now), "resetting expired locks")
        self._guarded(self._look_for_cancellations)
        self._guarded(lambda: self._prune(now), "pruning old jobs")

    def _fire_cron(self, now: datetime) -> None:
        fired = recurring.fire_due(self.store, now, names=self.resolver.names(), resolve=self.resolver.find)
        self.report.cron_enqueued += len(fired)
        if fired:
            logger.info("enqueued %d cron runs", len(fired))

    def _look_for_cancellations(self) -> None:
        for job_id in self.store.cancelling():
            running = self._held.get(job_id)
            if running is not None:
                self._asked_to_cancel(running)

    def _reset_expired(self, now: datetime) -> None:
        reset = self.store.reset_expired(now=now)
        self.report.reset += len(reset.retried)
        self.report.lost_failed += len(reset.failed)
        self.report.cancelled += len(reset.cancelled)
        for job_id in reset.retried:
            logger.warning("job %s: its worker was lost (lock expired); back to pending", job_id)
        for job_id in reset.failed:
            logger.error("job %s: its worker was lost (lock expired) and its attempts are used up; failed", job_id)

    def _forget(self, running: _Running) -> None:
        """Stop holding *running*; a newer attempt of the same job held here is kept."""
        if self._held.get(running.job.id) is running:
            del self._held[running.job.id]

    def _start(self, job: JobRecord, token: str) -> None:
        running = _Running(job, Lease(job.id, token))
        older = self._held.get(job.id)
        if older is not None:
            # This worker stalled past its own lock and took the job again: the older
            # attempt has lost its lease and must not be tracked in place of this one.
            self._lose(older)
        self._held[job.id] = running
        try:
            spec = self.resolver.resolve(job.job_name)
        except UnknownJobError as exc:
            self._finished(running, Failed(f"UnknownJobError: {exc}", retryable=False))
            return
        try:
            typed = executor.stored_params(spec, job)
        except Exception as exc:  # one bad row harms only itself (a RecursionError from deep JSON, too)
            self._finished(running, executor.unreadable(exc))
            return
        running.spec = spec
        ctx = Context(
            job_id=job.id,
            job_name=job.job_name,
            attempt=job.attempt_count,
            store=self.store,
            sink=lambda percent, message: self._progress(running, percent, message),
            cancel=running.cancel,
            timeout=spec.timeout,
            clock=self.clock,
        )
        if spec.is_async:
            asyncio.run_coroutine_threadsafe(self._run_async(running, spec, typed, ctx), self._event_loop())
        else:
            self._handlers().submit(lambda: self._run_sync(running, spec, typed, ctx))

    def _begin(self, running: _Running) -> bool:
        """Called as a handler starts: False when the job must not start (stopping, or lost)."""
        if self._stopping or running.lost:
            self._finished(running, None)
            return False
        running.started = time.monotonic()
        job = running.job
        if logger.isEnabledFor(logging.INFO):  # spares a busy worker the arguments
            logger.info(
                "job %s %s: started (attempt %d of %d)", job.id, job.job_name, job.attempt_count, job.max_attempts
            )
        if running.spec is not None and running.spec.hooks:
            running.spec.hooks.emit(Event("started", job.id, job.job_name, self.clock(), job.attempt_count))
        return True

    def _run_sync(self, running: _Running, spec: JobSpec[Any, Any], typed: Any, ctx: Context) -> None:
        if self._begin(running):
            self._attempted(running, *executor.attempt(spec, typed, ctx))

    async def _run_async(self, running: _Running, spec: JobSpec[Any, Any], typed: Any, ctx: Context) -> None:
        if self._async_slots is None:
            self._async_slots = asyncio.Semaphore(self.concurrency)
        async with self._async_slots:
            if self._begin(running):
                self._attempted(running, *await executor.attempt_async(spec, typed, ctx))

    def _attempted(self, running: _Running, outcome: Outcome, fatal: BaseException | None) -> None:
        if fatal is not None:  # SystemExit or KeyboardInterrupt from a handler ends the job, not the worker
            logger.error("job %s: handler raised %s; recorded as a failure", running.job.id, type(fatal).__name__)
        if running.started is not None:
            took = time.monotonic() - running.started
            self._per_job = 0.8 * self._per_job + 0.2 * took
        self._finished(running, outcome)

    def _finished(self, running: _Running, outcome: Outcome | None) -> None:
        """Queue an outcome (None: give the job back) for the loop to write."""
        self._done.append((running, outcome))
        self._bell.ring()

    def _log(self, running: _Running, transition: Transition) -> None:
        job = running.job
        match transition:
            case Complete():
                if logger.isEnabledFor(logging.INFO):
                    took = time.monotonic() - running.started if running.started is not None else 0.0
                    logger.info("job %s %s: completed in %.3fs", job.id, job.job_name, took)
            case Retry(error=error, run_at=run_at):
                logger.warning(
                    "job %s %s: attempt %d failed: %s; retry at %s",
                    job.id,
                    job.job_name,
                    job.attempt_count,
                    error,
                    run_at.isoformat(timespec="seconds"),
                )
            case Fail(error=error):
                logger.error("job %s %s: failed after %d attempts: %s", job.id, job.job_name, job.attempt_count, error)
            case Cancel(reason=reason):
                logger.info("job %s %s: cancelled (%s)", job.id, job.job_name, reason)

    def _progress(self, running: _Running, percent: int, message: str | None) -> None:
        running.progress = (percent, message)
        if time.monotonic() - running.progress_at >= PROGRESS_EVERY:
            self._bell.ring()

    def _write_progress(self) -> None:
        now = time.monotonic()
        for running in list(self._held.values()):
            if running.progress is None or now - running.progress_at < PROGRESS_EVERY:
                continue
            (percent, message), running.progress = running.progress, None
            running.progress_at = now
            if not self.store.progress(running.lease, percent, message, now=self.clock()):
                self._lose(running)

    def _until_beat(self) -> float:
        return max(0.0, self._next_beat - time.monotonic())

    def _beat(self) -> None:
        if not self._held or time.monotonic() < self._next_beat:
            return
        self._next_beat = time.monotonic() + self.lock.total_seconds() / 3
        now = self.clock()
        leases = [r.lease for r in self._held.values() if not r.lost]
        held = self.store.heartbeat(leases, now=now, lock_until=now + self.lock)
        for running in list(self._held.values()):
            if running.job.id not in held:
                self._lose(running)
            elif held[running.job.id]:
                self._asked_to_cancel(running)
        if self.enforce_timeouts:
            self._enforce_timeouts()

    def _asked_to_cancel(self, running: _Running) -> None:
        if not running.cancel_requested:
            running.cancel_requested = True
            running.cancel.set()
            logger.info("job %s: cancellation requested; asking the handler to stop", running.job.id)

    def _prune(self, now: datetime) -> None:
        """Delete old finished jobs, one small batch per kind at a time."""
        if time.monotonic() < self._next_prune:
            return
        full = False
        for statuses, keep in self._retention:
            if keep is not None:
                try:
                    before = now - keep
                except OverflowError:  # kept longer than the calendar reaches: nothing is that old
                    continue
                deleted = self.store.purge(statuses=statuses, before=before, limit=PRUNE_BATCH)
                self.report.purged += deleted
                full = full or deleted == PRUNE_BATCH
        self._next_prune = time.monotonic() + (REAP_EVERY if full else PRUNE_EVERY)

    def _lose(self, running: _Running) -> None:
        if not running.lost:
            running.lost = True
            running.cancel.set()
            logger.warning(
                "job %s: lease lost (another worker holds it now); asking the handler to stop", running.job.id
            )

    def _enforce_timeouts(self) -> None:
        """In a --processes child: a sync handler far past its timeout ends this process."""
        now = time.monotonic()
        for running in list(self._held.values()):
            spec = running.spec
            if spec is None or spec.is_async or spec.timeout is None or running.lost or running.started is None:
                continue
            if now - running.started > spec.timeout + max(1.0, spec.timeout * 0.1):
                logger.error("job %s: still running past its timeout of %gs; restarting", running.job.id, spec.timeout)
                self._stopping = True
                self._finished(running, executor.timed_out(spec))
                self._round(0)
                self._release_all()
                logging.shutdown()
                os._exit(TIMEOUT_EXIT)

    # -- waiting ------------------------------------------------------------------------
    def _due_now(self) -> bool:
        due = self.store.next_due(self.resolver.names())
        return due is not None and due <= self.clock()

    def _idle(self, stop: threading.Event) -> None:
        """Wait until something may have changed: an outcome, new work, or a timer."""
        if self._done:
            return
        start = time.monotonic()
        deadline = start + self.poll_interval
        if self._held:
            # Heartbeats, and the once-a-second look for cancellations, come round on time.
            deadline = min(deadline, self._next_beat, max(start, self._next_reap))
            if any(r.progress is not None for r in self._held.values()):
                deadline = min(deadline, start + PROGRESS_EVERY)
        hungry = len(self._held) < self._target()
        if hungry:
            due = self.store.next_due(self.resolver.names())
            if due is not None:
                deadline = min(deadline, start + max(0.0, (due - self.clock()).total_seconds()))
        settling = 0.0
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not hungry:
                if self._bell.wait(min(remaining, STOP_CHECK)):
                    return
                continue
            if time.monotonic() < settling:
                # A write to the WAL comes before its commit is visible: look again shortly.
                if self._bell.wait(min(remaining, SETTLE_CHECK)):
                    return
            else:
                woke = self._bell.wait_for_commit(min(remaining, STOP_CHECK))
                if woke == "rung":
                    return
                if woke == "written":
                    settling = time.monotonic() + SETTLE
            version = self.store.data_version()
            if version != self._version:
                self._version = version
                return

    # -- shutting down ------------------------------------------------------------------
    def _shutdown(self) -> None:
        """Let running jobs finish within the grace period; give back what did not start or finish."""
        self._stopping = True
        deadline = time.monotonic() + self.grace
        if self._held:
            logger.info("stopping: waiting up to %gs for %d held jobs", self.grace, len(self._held))
        while self._held and time.monotonic() < deadline:
            self._bell.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            self._round(0)
        self._round(0)
        self._release_all()
        self._close()
        logger.info("worker %s stopped: %s", self.worker_id, self.report)

    def _release_all(self) -> None:
        # A job whose outcome came back but could not be written is not given back (it
        # would run again); it stays running and returns only if its lock expires.
        finished = {id(running) for running, _ in self._done}
        left = [r for r in self._held.values() if not r.lost and id(r) not in finished]
        for running in left:
            running.cancel.set()
        if left:
            released = self.store.release([r.lease for r in left], now=self.clock())
            self.report.released += sum(released)
            logger.warning("gave back %d unfinished jobs without spending an attempt", sum(released))
        self._held.clear()

    def _close(self) -> None:
        """End the handler threads and the event loop once they are idle; close the doorbell."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
        self._bell.close()

    # -- executors ----------------------------------------------------------------------
    def _handlers(self) -> _Pool:
        if self._pool is None:
            self._pool = _Pool(self.concurrency)
        return self._pool

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="jobkit-async", daemon=True).start()
            self._loop = loop
        return self._loop


# -- library entry points -------------------------------------------------------------
def run_worker(
    store: Store,
    registry: Registry | None = None,
    *,
    concurrency: int = 5,
    lock_timeout: float = 300.0,
    poll_interval: float = 1.0,
    grace: float = 30.0,
    burst: bool = False,
    stop: threading.Event | None = None,
    import_on_demand: bool | None = None,
    enforce_timeouts: bool = False,
    keep_completed: timedelta | None = KEEP_COMPLETED,
    keep_failed: timedelta | None = KEEP_FAILED,
    clock: Clock = utc_now,
) -> Report:
    """Run jobs from *store* until *stop* is set, SIGTERM/SIGINT arrive, or (*burst*) nothing is due.

    With a *registry*, only its jobs are claimed; without one, job names are imported on
    demand (``import_on_demand`` overrides). Called from the main thread, the first
    SIGTERM or SIGINT stops claiming and lets running jobs finish within *grace*
    seconds; a second exits at once. From another thread (a notebook), stop it with
    *stop*. *enforce_timeouts* ends the process when a sync handler overruns its
    timeout (for children of a supervisor, which starts another). Finished jobs older
    than *keep_completed* (completed, cancelled) and *keep_failed* (failed) are deleted
    in small batches as the worker goes; None keeps them forever.
    """
    stop = stop or threading.Event()
    resolver = Resolver(
        registry or Registry(), import_on_demand=registry is None if import_on_demand is None else import_on_demand
    )
    worker = Worker(
        store,
        resolver,
        concurrency=concurrency,
        lock_timeout=lock_timeout,
        poll_interval=poll_interval,
        grace=grace,
        clock=clock,
        enforce_timeouts=enforce_timeouts,
        keep_completed=keep_completed,
        keep_failed=keep_failed,
    )
    with _signals_stop(stop, worker):
        return worker.run(stop, burst=burst)


def tick(
    store: Store,
    registry: Registry | None = None,
    *,
    limit: int = 5,
    now: datetime | None = None,
    lock_timeout: float = 300.0,
) -> Report:
    """One stateless pass: reset expired locks, enqueue due cron runs, run up to *limit* jobs.

    *now* (timezone-aware) is the time the pass acts as; the clock by default.
    """
    if now is not None and now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, not {now!r}")
    clock: Clock = (lambda: now) if now is not None else utc_now
    resolver = Resolver(registry or Registry(), import_on_demand=registry is None)
    worker = Worker(store, resolver, concurrency=max(limit, 1), lock_timeout=lock_timeout, clock=clock)
    return worker.run_once(limit)


def tick_handler(
    open_store: Callable[[], Store], registry: Registry | None = None, *, limit: int = 5
) -> Callable[..., Report]:
    """A plain ``(event=None, context=None) -> report`` callable for serverless schedulers."""

    def handler(event: object = None, context: object = None) -> Report:
        with open_store() as store:
            return tick(store, registry, limit=limit)

    return handler


class _signals_stop:
    """In the main thread: first SIGTERM/SIGINT sets *stop*; a second exits at once."""

    def __init__(self, stop: threading.Event, worker: Worker) -> None:
        self.stop, self.worker = stop, worker
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.stop.is_set():
            logger.warning(
                "second %s: exiting now; running jobs return when their locks expire", signal.strsignal(signum)
            )
            logging.shutdown()
            os._exit(128 + signum)
        logger.info("%s: finishing running jobs, claiming no more", signal.strsignal(signum))
        self.stop.set()
        self.worker.stop_soon()

    def __exit__(self, *_: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


# -- the command ----------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobkit.worker",
        description="Run queued jobs from a jobkit SQLite database until stopped (SIGTERM or Ctrl-C).",
    )
    parser.add_argument("database", help="path of the jobs database (it must exist: create it by enqueuing)")
    parser.add_argument(
        "--jobs",
        action="append",
        default=[],
        metavar="MODULE[:REGISTRY]",
        help="run only the jobs of this module's Registry, importing nothing else (repeatable). "
        "Without it, job names 'module:function' are imported on demand",
    )
    parser.add_argument("--concurrency", type=int, default=5, help="jobs run at once per process (default 5)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes under one supervisor that restarts a child that dies (default 1)",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long a claim holds a job without a heartbeat before another worker may take it (default 300)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="longest wait between looks for due jobs; new jobs wake the worker sooner (default 1)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long running jobs may take to finish before they are given back (default 30)",
    )
    parser.add_argument(
        "--keep-completed",
        type=_duration,
        default=KEEP_COMPLETED,
        metavar="DURATION",
        help="delete completed and cancelled jobs this long after they end, e.g. 12h, 7d; 'forever' keeps them "
        "(default 7d)",
    )
    parser.add_argument(
        "--keep-failed",
        type=_duration,
        default=KEEP_FAILED,
        metavar="DURATION",
        help="delete failed jobs this long after they end; 'forever' keeps them (default 30d)",
    )
    parser.add_argument(
        "--durability",
        choices=("full", "normal"),
        default="full",
        help="SQLite synchronous mode: full survives power loss (default), normal only a crash",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass: reset expired locks, run up to N jobs, exit")
    mode.add_argument("--burst", action="store_true", help="run until nothing is due, then exit 0")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", "-q", action="store_true", help="log only warnings, errors and the summary")
    verbosity.add_argument("--verbose", "-v", action="store_true", help="log debug detail too")
    return parser


def _duration(text: str) -> timedelta | None:
    from jobkit.control import parse_duration
    from jobkit.errors import ValidationError

    if text.strip().lower() == "forever":
        return None
    try:
        return parse_duration(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _fail(message: str) -> int:
    print(f"jobkit.worker: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jobkit.worker``: returns the exit code."""
    args = _parser().parse_args(argv)
    for name, value in (("concurrency", args.concurrency), ("processes", args.processes)):
        if value < 1:
            return _fail(f"--{name} must be at least 1, not {value}")
    for name, value in (("lock-timeout", args.lock_timeout), ("poll-interval", args.poll_interval)):
        if not value > 0:
            return _fail(f"--{name} must be a positive number of seconds, not {value}")
    if not os.path.isfile(args.database):
        return _fail(f"{args.database}: no such database file")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        stream=sys.stderr,
    )
    if args.processes > 1 and not args.once:
        return supervise(list(argv if argv is not None else sys.argv[1:]), args.processes)

    from jobkit.errors import JobkitError
    from jobkit.stores.sqlite import SqliteStore

    sys.path.insert(0, os.getcwd())
    try:
        registry = merge(load_registry(target) for target in args.jobs) if args.jobs else None
    except (ImportError, ValueError) as exc:
        return _fail(f"--jobs: {exc}")
    try:
        store = SqliteStore(args.database, durability=args.durability, create=False)
    except JobkitError as exc:
        return _fail(str(exc))
    with store:
        if args.once:
            report = tick(store, registry, limit=args.concurrency, lock_timeout=args.lock_timeout)
            print(f"jobkit.worker --once: {report}")
            return 0
        report = run_worker(
            store,
            registry,
            concurrency=args.concurrency,
            lock_timeout=args.lock_timeout,
            poll_interval=args.poll_interval,
            grace=args.grace,
            burst=args.burst,
            enforce_timeouts=os.environ.get("JOBKIT_SUPERVISED") == "1",
            keep_completed=args.keep_completed,
            keep_failed=args.keep_failed,
        )
        print(f"jobkit.worker: {report}", file=sys.stderr)
    return 0


def _child_args(argv: Sequence[str]) -> list[str]:
    """*argv* without --processes (both its forms)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return out


def supervise(argv: Sequence[str], processes: int) -> int:
    """Run *processes* worker children; restart one that dies; pass SIGTERM/SIGINT on."""
    command = [sys.executable, "-m", "jobkit.worker", *_child_args(argv)]
    env = {**os.environ, "JOBKIT_SUPERVISED": "1"}
    stopping = threading.Event()
    received: list[int] = []
    children: list[subprocess.Popen[bytes]] = []

    def spawn() -> subprocess.Popen[bytes]:
        # A session of its own: a Ctrl-C in the terminal reaches the supervisor only, which
        # passes it on once (twice would make a child exit at once, abandoning its jobs).
        child = subprocess.Popen(command, env=env, start_new_session=True)
        if received:  # a signal came while it was starting
            child.send_signal(received[0])
        return child

    def forward(signum: int, _frame: object) -> None:
        if stopping.is_set():
            for child in children:
                child.kill()
            os._exit(128 + signum)
        received.append(signum)
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    children.extend(spawn() for _ in range(processes))
    logger.info("supervisor %d: started %d workers: %s", os.getpid(), processes, [c.pid for c in children])
    restarts: collections.deque[float] = collections.deque(maxlen=10)
    while True:
        alive = [c for c in children if c.poll() is None]
        if not alive and (stopping.is_set() or all(c.returncode == 0 for c in children)):
            failed = [c.pid for c in children if c.returncode != 0]
            if failed:
                logger.error("workers %s did not stop cleanly", failed)
            return 1 if failed else 0
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or code == 0 or stopping.is_set():
                continue
            restarts.append(time.monotonic())
            if len(restarts) == restarts.maxlen and restarts[-1] - restarts[0] < 10:
                logger.error("workers keep dying (%d restarts in 10s); waiting before the next", len(restarts))
                stopping.wait(5)
            if stopping.is_set():
                break
            logger.warning("worker %d exited with %d; starting another", child.pid, code)
            children[i] = spawn()
        stopping.wait(0.1)


if __name__ == "__main__":
    sys.exit(main())
