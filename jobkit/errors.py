"""Every error jobkit raises.

One root, :class:`JobkitError`; each leaf also subclasses the builtin a caller would
catch without knowing jobkit, and keeps the offending value::

    JobkitError
    ├── ValidationError (ValueError)        params or a result that do not fit their type
    │   ├── PayloadTooLarge                 an encoded payload over the size cap
    │   └── UnknownDependency               after=[...] names a job that does not exist
    ├── DuplicateJobError (ValueError)      a second spec under a taken name
    ├── UnknownJobError (LookupError)       a job name that leads to no spec
    ├── JobNotFound (LookupError)           no job has the given id
    ├── JobStateError (RuntimeError)        an operation the job's status does not allow
    ├── JobFailed (RuntimeError)            JobResult.unwrap() on a failed job
    ├── Cancelled                           raised by a handler that stops on request
    ├── Snooze                              raised by a handler to run again later, spending no attempt
    ├── ScheduleError (ValueError)          a cron expression or schedule that cannot work
    ├── UnknownScheduleError (LookupError)  no schedule has the given name
    └── StoreError (RuntimeError)           the database cannot be used
        ├── StoreFullError                  the disk (or the database's size limit) is full
        ├── NotAJobkitDatabase              a file that jobkit did not create
        └── SchemaTooNew                    a file from a newer jobkit
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobkit.model import JobResult


class JobkitError(Exception):
    """The root of every error jobkit raises."""


class ValidationError(JobkitError, ValueError):
    """Params or a result that do not fit their declared type or cannot be stored.

    ``errors`` lists one line per problem, each ending with the path of the offending
    field (``@ params.width``); ``value`` is what was given.
    """

    def __init__(self, message: str, *, errors: Sequence[str] = (), value: Any = None):
        super().__init__(message)
        self.errors = list(errors)
        self.value = value


class UnknownDependency(ValidationError):
    """``later(..., after=[...])`` named a job that does not exist; nothing was written."""


class PayloadTooLarge(ValidationError):
    """An encoded payload is larger than the configured cap."""

    def __init__(self, message: str, *, size: int, limit: int, value: Any = None):
        super().__init__(message, errors=[message], value=value)
        self.size = size
        self.limit = limit


class DuplicateJobError(JobkitError, ValueError):
    """A second job spec was registered under a name that is taken."""

    def __init__(self, name: str):
        super().__init__(
            f"a job named {name!r} is already registered; give one of them another name with job(name=...)"
        )
        self.name = name


class UnknownJobError(JobkitError, LookupError):
    """A job name that leads to no registered or importable spec."""

    def __init__(self, name: str, reason: str = ""):
        detail = f": {reason}" if reason else ""
        super().__init__(f"no job named {name!r}{detail}")
        self.name = name


class JobNotFound(JobkitError, LookupError):
    """No job has the given id (or ids: ``job_ids`` lists every unknown one, ``job_id`` is the first)."""

    def __init__(self, job_id: str, *more: str):
        ids = [job_id, *more]
        if more:
            super().__init__(f"no jobs with ids {', '.join(repr(i) for i in ids)}")
        else:
            super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id
        self.job_ids = ids


class JobStateError(JobkitError, RuntimeError):
    """The job exists but its status does not allow the operation.

    ``job_id`` and ``status`` name the (first) offending job; ``jobs`` maps every
    offending job's id to its status, for an operation on many jobs.
    """

    def __init__(
        self, message: str, *, job_id: str, status: str | None = None, jobs: Mapping[str, str | None] | None = None
    ):
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.jobs = dict(jobs) if jobs is not None else {job_id: status}


class JobFailed(JobkitError, RuntimeError):
    """Raised by :meth:`JobResult.unwrap` when the job did not complete."""

    def __init__(self, result: JobResult[Any]):
        super().__init__(f"job {result.job_id} {result.status}: {result.error}")
        self.result = result


class Cancelled(JobkitError):
    """Raise from a handler to stop a job whose cancellation was requested.

    The job then ends ``cancelled`` instead of ``failed``.
    """


class Snooze(JobkitError):
    """Raise from a handler to run the job again in *seconds*, spending no attempt.

    The job is pending again, due then; its history records the attempt as snoozed. A
    job asked to cancel ends cancelled instead. *seconds* (or a timedelta) from 0 to a
    year; anything else is a ValidationError.
    """

    MOST = 366 * 24 * 3600.0

    def __init__(self, seconds: float | timedelta):
        value = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= self.MOST:
            raise ValidationError(f"Snooze(seconds) takes 0 to {self.MOST:g} seconds, not {seconds!r}", value=seconds)
        super().__init__(f"snoozed for {value:g}s")
        self.delay = timedelta(seconds=value)


class ScheduleError(JobkitError, ValueError):
    """A cron expression, timezone or schedule that cannot work."""

    def __init__(self, message: str, *, value: Any = None):
        super().__init__(message)
        self.value = value


class UnknownScheduleError(JobkitError, LookupError):
    """No schedule has the given name."""

    def __init__(self, name: str):
        super().__init__(f"no schedule named {name!r}")
        self.name = name


class StoreError(JobkitError, RuntimeError):
    """The database cannot be opened or used."""

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path


class StoreFullError(StoreError):
    """The disk holding the database is full: nothing of the call was written; free space and try again."""


class NotAJobkitDatabase(StoreError):
    """The file exists but was not created by jobkit; it was left untouched."""


class SchemaTooNew(StoreError):
    """The file comes from a newer jobkit; it was left untouched."""
