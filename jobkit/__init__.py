"""jobkit: typed background jobs on SQLite, with no broker.

Define jobs with :class:`Registry`, run them ``now``, ``later`` or in a ``batch``
against a :class:`SqliteStore` (durable) or a :class:`MemoryStore` (tests, notebooks),
and drain the queue with ``python -m jobkit.worker jobs.sqlite``.
"""

from typing import TYPE_CHECKING, Any

from jobkit.context import Context
from jobkit.control import (
    attempts,
    cancel,
    cancel_many,
    pause,
    purge,
    purge_jobs,
    queues,
    resume,
    retry,
    wait,
    wait_async,
)
from jobkit.errors import (
    Cancelled,
    DuplicateJobError,
    JobFailed,
    JobkitError,
    JobNotFound,
    JobStateError,
    NotAJobkitDatabase,
    PayloadTooLarge,
    ScheduleError,
    SchemaTooNew,
    Snooze,
    StoreError,
    StoreFullError,
    UnknownDependency,
    UnknownJobError,
    UnknownScheduleError,
    ValidationError,
)
from jobkit.events import Event
from jobkit.model import Attempt, JobRecord, JobResult, JobStatus, QueueInfo, Schedule
from jobkit.options import WorkerOptions
from jobkit.recurring import disable, enable, schedule, schedules, unschedule
from jobkit.run import execute
from jobkit.spec import JobSpec, Registry
from jobkit.store import Store, Waker, open_store
from jobkit.stores.memory import MemoryStore
from jobkit.stores.sqlite import SqliteStore

if TYPE_CHECKING:
    from jobkit.stores.postgres import PostgresStore
    from jobkit.worker import run_worker, tick, tick_handler

    __version__: str

_DISTRIBUTION = "jobkit-queue"  # the name on PyPI ("jobkit" there is another project); the package is jobkit
_WORKER = ("run_worker", "tick", "tick_handler")
_LAZY = (*_WORKER, "PostgresStore", "__version__")


def __getattr__(name: str) -> Any:
    # jobkit.worker is imported on first use: a script that only enqueues does not pay
    # for the worker's imports (argparse, subprocess, the loop); nor for importlib.metadata.
    if name in _WORKER:
        from jobkit import worker

        return getattr(worker, name)
    if name == "PostgresStore":  # psycopg is an optional extra, imported only by those who use it
        from jobkit.store import _postgres

        return _postgres()
    if name == "__version__":
        globals()["__version__"] = version = _version()
        return version
    raise AttributeError(f"module 'jobkit' has no attribute {name!r}")


def _version() -> str:
    """The installed distribution's version; ``0+unknown`` when jobkit runs from a tree nobody installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Attempt",
    "Cancelled",
    "Context",
    "DuplicateJobError",
    "Event",
    "JobFailed",
    "JobNotFound",
    "JobRecord",
    "JobResult",
    "JobSpec",
    "JobStateError",
    "JobStatus",
    "JobkitError",
    "MemoryStore",
    "NotAJobkitDatabase",
    "PayloadTooLarge",
    "PostgresStore",
    "QueueInfo",
    "Registry",
    "Schedule",
    "ScheduleError",
    "SchemaTooNew",
    "Snooze",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreFullError",
    "UnknownDependency",
    "UnknownJobError",
    "UnknownScheduleError",
    "ValidationError",
    "Waker",
    "WorkerOptions",
    "attempts",
    "cancel",
    "cancel_many",
    "disable",
    "enable",
    "execute",
    "open_store",
    "pause",
    "purge",
    "purge_jobs",
    "queues",
    "resume",
    "retry",
    "run_worker",
    "schedule",
    "schedules",
    "tick",
    "tick_handler",
    "unschedule",
    "wait",
    "wait_async",
]
