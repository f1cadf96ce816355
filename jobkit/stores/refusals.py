"""What every store refuses before it writes, with the same errors: one home for the checks they share.

The CHECK constraints of SqliteStore's jobs table (:data:`INVARIANTS`, which MemoryStore
applies by hand), naive times, and the claim filters that are not what they claim to be
(a bare ``str`` where a collection of names belongs; a queue map with a bad name or
number); the filters, cursors and ids of the reads and deletes (each a ValidationError
naming the argument).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

from jobkit.errors import JobkitError, UnknownDependency, ValidationError
from jobkit.model import JobRecord, JobStatus, Postpone, Retry, Transition, check_queue, require_aware

INVARIANTS: tuple[tuple[str, Callable[[JobRecord], bool]], ...] = (
    ("length(job_name) > 0", lambda j: bool(j.job_name)),
    ("progress BETWEEN 0 AND 100", lambda j: 0 <= j.progress <= 100),
    ("attempt_count >= 0", lambda j: j.attempt_count >= 0),
    ("max_attempts >= 1", lambda j: j.max_attempts >= 1),
    (
        "a running job has worker_id and worker_expires_at",
        lambda j: j.status is not JobStatus.RUNNING or (j.worker_id is not None and j.worker_expires_at is not None),
    ),
    (
        "completed_at is set exactly when the job is finished",
        lambda j: (j.completed_at is not None) == j.status.finished,
    ),
    ("length(queue) > 0", lambda j: bool(j.queue)),
)


def check_times(jobs: Sequence[JobRecord]) -> None:
    """Refuse records holding a naive time (ValueError), before anything is written."""
    for job in jobs:
        require_aware(
            job.scheduled_for,
            job.created_at,
            job.updated_at,
            job.worker_started_at,
            job.worker_expires_at,
            job.completed_at,
        )


def check_transition_times(transitions: Sequence[Transition]) -> None:
    """Refuse outcomes holding a naive time (ValueError), before anything is written."""
    for t in transitions:
        require_aware(t.at, t.run_at if isinstance(t, (Retry, Postpone)) else None)


def check_records(jobs: Sequence[JobRecord]) -> None:
    """Refuse records that SqliteStore's table would refuse, with the same error types and in the same order."""
    check_times(jobs)
    for job in jobs:
        for rule, holds in INVARIANTS:
            if not holds(job):
                raise JobkitError(f"cannot add jobs: job {job.id!r} breaks the constraint {rule}")


def check_ids(jobs: Sequence[JobRecord], taken: Collection[str] = ()) -> None:
    """Refuse an add naming one id twice, or an id already *taken* (JobkitError), before anything is written.

    A store whose insert skips a job whose unique key is held must look first: that skip
    would pass over a taken id too.
    """
    ids = [job.id for job in jobs]
    if len(set(ids)) != len(ids) or not set(ids).isdisjoint(taken):
        raise JobkitError(f"cannot add jobs: a job id is already taken among {ids}")


def check_parents(parents: Collection[str], found: Collection[str]) -> None:
    """Refuse an add naming, in ``after``, a job that does not exist (ValidationError), before anything is written."""
    missing = sorted(set(parents) - set(found))
    if missing:
        raise UnknownDependency(
            f"after names no job with the id {', '.join(map(repr, missing))}; nothing was written", value=missing
        )


def _chosen(values: Collection[str] | None, what: str, of: str) -> list[str] | None:
    """*values*, sorted and once each; None for no limit; a bare str (one name, not its letters) is refused."""
    if values is None:
        return None
    if isinstance(values, str):
        raise TypeError(f"{what} must be a collection of {of} names, not the str {values!r}")
    return sorted(set(values))


def chosen_names(names: Collection[str] | None) -> list[str] | None:
    """The job names a claim is limited to, sorted and once each; None for any name."""
    return _chosen(names, "names", "job")


def chosen_queue_names(queues: Collection[str] | None) -> list[str] | None:
    """The queues a look at the backlog is limited to, sorted and once each; None for all."""
    return _chosen(queues, "queues", "queue")


def chosen_queues(queues: Mapping[str, int] | None) -> dict[str, int] | None:
    """The queues a claim is limited to, each with the most jobs it may give (at least 0); None for all."""
    if queues is None:
        return None
    if not isinstance(queues, Mapping):
        raise TypeError(f"queues must map queue names to numbers of jobs, not {queues!r}")
    chosen: dict[str, int] = {}
    for name, most in sorted(queues.items()):
        check_queue(name, what="a queue of the claim")
        if type(most) is not int or most < 0:
            raise ValueError(f"queue {name!r}: the most jobs to take must be an int of at least 0, not {most!r}")
        chosen[name] = most
    return chosen


# -- reading and deleting: the arguments of list_jobs, finished and delete -------------
def check_time(what: str, value: object, *, required: bool = False) -> None:
    """Refuse a *what* that is not a timezone-aware datetime (None too if *required*): a ValidationError naming it."""
    if value is not None or required:
        _aware(what, value, value)


def check_cursor(what: str, cursor: object) -> None:
    """Refuse a cursor that is not a (timezone-aware datetime, id) pair (None passes), naming *what*."""
    if cursor is None:
        return
    if not isinstance(cursor, tuple) or len(cursor) != 2 or not isinstance(cursor[1], str):
        raise ValidationError(f"{what} must be a (datetime, job id) pair, not {cursor!r}", value=cursor)
    _aware(what, cursor[0], cursor)


def _aware(what: str, value: object, given: object) -> None:
    """Refuse *value*, part of what was *given* as *what*, unless it is a timezone-aware datetime."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a timezone-aware datetime, not {value!r}", value=given)
    try:
        require_aware(value)
    except ValueError as exc:
        raise ValidationError(f"{what}: {exc}", value=given) from None


def check_text(text: object) -> None:
    """Refuse a text filter that no stored text could be searched for (None passes): a ValidationError naming it.

    Empty (every job would match: give None for no text filter), not a str, or holding
    U+0000 or a lone surrogate, which no store holds (:func:`jobkit.codec.storable_text`).
    """
    if text is None:
        return
    if not isinstance(text, str):
        raise ValidationError(f"text must be a str, not {text!r}", value=text)
    if not text:
        raise ValidationError("text must not be empty: give None for no text filter", value=text)
    if "\x00" in text or (not text.isascii() and _unencodable(text)):
        raise ValidationError(f"text {text!r} holds U+0000 or a lone surrogate, which no job's text holds", value=text)


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_limit(limit: object) -> int:
    """The most records a read may return: an int of at least 0, else a ValidationError naming ``limit``."""
    if type(limit) is not int or limit < 0:
        raise ValidationError(f"limit must be an int of at least 0, not {limit!r}", value=limit)
    return limit


def chosen_ids(job_ids: object) -> list[str]:
    """The job ids a call acts on, each once, in the order given; a ValidationError naming ``job_ids`` for
    anything but a sequence of str (a bare str is one id, not its letters)."""
    if isinstance(job_ids, str) or not isinstance(job_ids, Sequence):
        raise ValidationError(f"job_ids must be a sequence of job ids, not {job_ids!r}", value=job_ids)
    odd = [job_id for job_id in job_ids if not isinstance(job_id, str)]
    if odd:
        raise ValidationError(f"job_ids must be str, not {odd[0]!r}", value=job_ids)
    return list(dict.fromkeys(job_ids))


def too_deep(place: str, said: str, most: str) -> ValidationError:
    """The refusal of a write that ends a job whose chain of dependents (each after the one before) is longer
    than the database settles in one write (*most*, about how many): it can never succeed as it is, so it is
    refused like a bad row, and a worker writes the other outcomes of its round one by one."""
    return ValidationError(
        f"{place}: the database refused the write ({said}): the jobs waiting on it, each after the one before, "
        f"are more than {most} settles in one write; nothing was written",
        value=said,
    )
