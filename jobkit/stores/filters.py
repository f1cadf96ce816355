"""What a listing keeps, as one value every store reads: the filters of ``list_jobs``, checked once.

The rules, stated here and applied by MemoryStore through :meth:`Listing.keeps` and by
the SQL stores in their WHERE clauses:

- *text*: the job's params (its JSON text as stored) or its error contain the text,
  with ASCII letters folded to lower case and nothing else folded. SQLite's ``lower()``
  folds exactly those; PostgreSQL's follows the database's locale (it folds ``Ü`` too)
  but for the "C" collation, so it folds under that one. The text given is folded here,
  once, for every store.
- *created_from* and *created_until*: ``created_from <= created_at < created_until``.
- *after*: the jobs that sort after the cursor newest first, ``(created_at, id) < after``.
"""

from __future__ import annotations

import string
from datetime import datetime

import attrs

from jobkit.errors import ValidationError
from jobkit.model import JobRecord, JobStatus
from jobkit.stores.refusals import check_cursor, check_limit, check_text, check_time

_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def folded(text: str) -> str:
    """*text* with ASCII letters in lower case, and every other character as it is."""
    return text.translate(_FOLD)


@attrs.frozen
class Listing:
    """The filters of one listing, checked; ``text`` already folded. None means no filter."""

    status: JobStatus | None = None
    name: str | None = None
    correlation_id: str | None = None
    queue: str | None = None
    text: str | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None
    after: tuple[datetime, str] | None = None

    @property
    def columns(self) -> dict[str, str | None]:
        """The filters that compare a column for equality, by column name."""
        return {"job_name": self.name, "correlation_id": self.correlation_id, "queue": self.queue}

    def keeps(self, job: JobRecord) -> bool:
        """Whether *job* belongs in this listing (before its limit)."""
        return (
            (self.status is None or job.status is self.status)
            and (self.name is None or job.job_name == self.name)
            and (self.correlation_id is None or job.correlation_id == self.correlation_id)
            and (self.queue is None or job.queue == self.queue)
            and (self.created_from is None or job.created_at >= self.created_from)
            and (self.created_until is None or job.created_at < self.created_until)
            and (self.after is None or (job.created_at, job.id) < self.after)
            and (self.text is None or self.text in folded(job.params) or self.text in folded(job.error or ""))
        )


def listing(
    *,
    status: JobStatus | None = None,
    name: str | None = None,
    correlation_id: str | None = None,
    queue: str | None = None,
    text: str | None = None,
    created_from: datetime | None = None,
    created_until: datetime | None = None,
    after: tuple[datetime, str] | None = None,
) -> Listing:
    """The :class:`Listing` of these filters; a ValidationError naming the first one refused, before any read."""
    check_cursor("after", after)
    check_time("created_from", created_from)
    check_time("created_until", created_until)
    check_text(text)
    return Listing(
        status=status,
        name=name,
        correlation_id=correlation_id,
        queue=queue,
        text=None if text is None else folded(text),
        created_from=created_from,
        created_until=created_until,
        after=after,
    )


def check_finished(after: tuple[datetime, str] | None, until: datetime, limit: int) -> None:
    """Refuse the arguments of ``Store.finished`` that are not what they claim to be, naming each."""
    check_cursor("after", after)
    check_time("until", until, required=True)
    check_limit(limit)


def finished_after(job: JobRecord, after: tuple[datetime, str] | None, until: datetime) -> bool:
    """Whether a record belongs among ``Store.finished(after=, until=)``: finished before *until*, after the cursor."""
    ended = job.completed_at
    return job.status.finished and ended is not None and ended < until and (after is None or (ended, job.id) > after)


def check_cursor_after(count: object, after: tuple[datetime, str] | None) -> int:
    """The arguments of ``Store.cursor_after``: *count* an int of at least 1, *after* a cursor (or None)."""
    if type(count) is not int or count < 1:
        raise ValidationError(f"count must be an int of at least 1, not {count!r}", value=count)
    check_cursor("after", after)
    return count
