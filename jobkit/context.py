"""What a running handler gets as ``ctx``: its identity, progress, log, cancellation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, MutableMapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from jobkit.codec import storable_text
from jobkit.model import Clock, utc_now

if TYPE_CHECKING:
    from jobkit.spec import JobSpec
    from jobkit.store import Store

R = TypeVar("R")

logger = logging.getLogger("jobkit.job")

ProgressSink = Callable[[int, "str | None"], None]


class Signal(Protocol):
    """Something that is set once and read often: a threading.Event, or a :class:`Flag`."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


class Flag:
    """A flag that is set once and read often; lighter than an Event, as nothing waits on it."""

    __slots__ = ("_on",)

    def __init__(self) -> None:
        self._on = False

    def set(self) -> None:
        self._on = True

    def is_set(self) -> bool:
        return self._on


class JobLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that prefixes each message with the job's name and id, and carries both."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('job_name')} {extra.get('job_id')}] {msg}", kwargs


class Context:
    """Handed to every handler as its second argument.

    - ``job_id``, ``job_name``, ``attempt`` (1 for the first run)
    - ``progress(percent, message=None)``: clamped to 0..100, visible in the store while
      the job runs; a no-op when the run is not persisted
    - ``log``: a :class:`logging.LoggerAdapter` carrying the job id and name
    - ``store``: the store the job lives in (None when not persisted)
    - ``cancelled``: true once cancellation was asked or the timeout passed; a long
      handler should check it and stop (raise :class:`jobkit.Cancelled`)
    - ``now()``: the time, from the clock the job runs under
    - ``after``: the ids of the jobs this one runs after (``later(..., after=...)``), and
      ``results(spec)``: the typed results of those of them that are *spec*'s jobs
    """

    __slots__ = ("_cancel", "_clock", "_deadline", "_log", "_sink", "after", "attempt", "job_id", "job_name", "store")

    def __init__(
        self,
        *,
        job_id: str,
        job_name: str,
        attempt: int = 1,
        store: Store | None = None,
        sink: ProgressSink | None = None,
        cancel: Signal | None = None,
        timeout: float | None = None,
        clock: Clock = utc_now,
        after: tuple[str, ...] = (),
    ) -> None:
        self.job_id = job_id
        self.after = after
        self.job_name = job_name
        self.attempt = attempt
        self.store = store
        self._log: JobLog | None = None
        self._sink = sink
        self._cancel: Signal = cancel if cancel is not None else Flag()
        self._deadline = time.monotonic() + timeout if timeout else None
        self._clock = clock

    @property
    def log(self) -> JobLog:
        """A :class:`logging.LoggerAdapter` whose lines carry the job's name and id."""
        if self._log is None:  # made on first use: most handlers never log
            self._log = JobLog(logger, {"job_id": self.job_id, "job_name": self.job_name})
        return self._log

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report how far the job is, 0 to 100 (clamped); NaN is refused."""
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise TypeError(f"progress takes a number from 0 to 100, not {percent!r}")
        if math.isnan(percent):
            raise ValueError("progress takes a number from 0 to 100, not NaN")
        if message is not None and not isinstance(message, str):
            raise TypeError(f"a progress message must be a str, not {type(message).__name__}")
        if self._sink is not None:
            # A message naming a file from os.fsdecode must not break the progress write.
            self._sink(int(min(100.0, max(0.0, percent))), message if message is None else storable_text(message))

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to stop, or ran past its timeout."""
        if self._cancel.is_set():
            return True
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self._cancel.set()
            return True
        return False

    @property
    def timed_out(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def now(self) -> datetime:
        """The current time from the clock this job runs under."""
        return self._clock()

    def results(self, spec: JobSpec[Any, R]) -> list[R]:
        """The typed results of the jobs this one runs after that are *spec*'s jobs, in the order ``after`` names them.

        They have all completed (a job runs only once every job it runs after has). A
        :class:`jobkit.ValidationError` when a result no longer fits *spec*'s result type.
        """
        if self.store is None:
            raise RuntimeError("ctx.results needs a job run from a store (a worker, or now() with a store)")
        parents = [self.store.get(job_id) for job_id in dict.fromkeys(self.after)]
        return [spec.result_of(job).unwrap() for job in parents if job is not None and job.job_name == spec.name]

    def __repr__(self) -> str:
        return f"Context(job_id={self.job_id!r}, job_name={self.job_name!r}, attempt={self.attempt})"
