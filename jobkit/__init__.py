"""jobkit: typed background jobs on SQLite, with no broker.

Define jobs with :class:`Registry`, run them ``now``, ``later`` or in a ``batch``
against a :class:`SqliteStore` (durable) or a :class:`MemoryStore` (tests, notebooks),
and drain the queue with ``python -m jobkit.worker jobs.sqlite``.
"""

from jobkit.context import Context
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
    StoreError,
    UnknownJobError,
    ValidationError,
)
from jobkit.executor import execute
from jobkit.model import JobRecord, JobResult, JobStatus
from jobkit.spec import JobSpec, Registry
from jobkit.store import Store, open_store
from jobkit.stores.memory import MemoryStore
from jobkit.stores.sqlite import SqliteStore

__all__ = [
    "Cancelled",
    "Context",
    "DuplicateJobError",
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
    "Registry",
    "ScheduleError",
    "SchemaTooNew",
    "SqliteStore",
    "Store",
    "StoreError",
    "UnknownJobError",
    "ValidationError",
    "execute",
    "open_store",
]
