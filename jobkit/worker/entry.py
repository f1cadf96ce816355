"""The worker as a library: :func:`run_worker`, :func:`tick` and :func:`tick_handler`."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from jobkit.model import Clock
from jobkit.options import WorkerOptions
from jobkit.spec import Registry
from jobkit.store import Store
from jobkit.worker.loop import Worker
from jobkit.worker.report import Report
from jobkit.worker.resolve import Resolver

logger = logging.getLogger("jobkit.worker")


def _options(options: WorkerOptions | None, settings: dict[str, Any]) -> WorkerOptions:
    """*options* (the defaults when None) with *settings*, fields of WorkerOptions, put over it."""
    base = options or WorkerOptions()
    try:
        return attrs.evolve(base, **settings) if settings else base
    except TypeError as exc:  # a name that is not a setting
        fields = ", ".join(a.name for a in attrs.fields(WorkerOptions))
        raise TypeError(f"{exc}; the worker's settings are: {fields}") from None


def run_worker(
    store: Store,
    registry: Registry | None = None,
    *,
    options: WorkerOptions | None = None,
    burst: bool = False,
    stop: threading.Event | None = None,
    import_on_demand: bool | None = None,
    clock: Clock | None = None,
    **settings: Any,
) -> Report:
    """Run jobs from *store* until *stop* is set, SIGTERM/SIGINT arrive, or (*burst*) nothing is due.

    The settings are a :class:`WorkerOptions` (*options*), or its fields given as
    keywords (``concurrency=10, lock_timeout=60, grace=5, keep_completed=None, ...``),
    which win over *options*. With a *registry*, only its jobs are claimed; without one,
    job names are imported on demand (``import_on_demand`` overrides), which runs the
    top-level code of whatever module a row names: ``import_from=("shop",)`` allows
    only modules of those top-level packages. Called from the
    main thread, the first SIGTERM or SIGINT stops claiming and lets running jobs finish
    within ``grace`` seconds; a second exits at once. From another thread (a notebook),
    stop it with *stop*. Finished jobs older than ``keep_completed`` (completed,
    cancelled) and ``keep_failed`` (failed) are deleted in small batches as the worker
    goes; None keeps them forever. Claims, leases and delays follow the store's clock
    (:meth:`Store.now`); a *clock* given replaces it (tests inject one).
    """
    chosen = _options(options, settings)
    stop = stop or threading.Event()
    resolver = Resolver(
        registry or Registry(),
        import_on_demand=registry is None if import_on_demand is None else import_on_demand,
        import_from=chosen.import_from,
    )
    worker = Worker(store, resolver, chosen, clock=clock)
    with _signals_stop(stop, worker):
        return worker.run(stop, burst=burst)


def tick(
    store: Store,
    registry: Registry | None = None,
    *,
    limit: int = 5,
    now: datetime | None = None,
    options: WorkerOptions | None = None,
    **settings: Any,
) -> Report:
    """One stateless pass: reset expired locks, enqueue due cron runs, run up to *limit* jobs.

    *now* (timezone-aware) is the time the pass acts as; the store's clock by default
    (:meth:`Store.now`), so expired locks and due jobs are judged by the time every
    host shares. Settings as for :func:`run_worker` (``lock_timeout`` is the one that
    matters here).
    """
    if now is not None and now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, not {now!r}")
    clock: Clock | None = (lambda: now) if now is not None else None
    chosen = attrs.evolve(_options(options, settings), concurrency=max(limit, 1))
    resolver = Resolver(registry or Registry(), import_on_demand=registry is None, import_from=chosen.import_from)
    return Worker(store, resolver, chosen, clock=clock).run_once(limit)


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
