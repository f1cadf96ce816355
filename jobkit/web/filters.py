"""The jobs page's filter and cursor as values: read from a query string, written back into URLs.

Pure: a :class:`JobFilter` is what a shareable URL says (``?status=failed&queue=emails``),
checked once here, so the page, the bulk actions and the count before a confirmation all
mean the same jobs. A bad value raises :class:`ValidationError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import attrs

from jobkit.errors import ValidationError
from jobkit.model import JobStatus

FIELDS = ("status", "queue", "name", "correlation_id", "text", "created_from", "created_until")
CURSOR_SEPARATOR = "~"  # between the created_at and the id of a cursor: in neither of them


def parse_time(field: str, text: str) -> datetime:
    """An ISO 8601 time from a form: ``2026-12-04T19:00`` (taken as UTC, as the page says) or with an offset."""
    example = "2026-12-04T19:00 (UTC)"
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: a time UTC cannot hold (year 1 west of Greenwich)
        raise ValidationError(f"{field} must be a time such as {example}, not {text!r}", value=text) from None


def _time_text(value: datetime | None) -> str | None:
    """A time as the filter's form and URLs write it: UTC without an offset, to the microsecond it has."""
    return None if value is None else value.astimezone(timezone.utc).replace(tzinfo=None).isoformat()


@attrs.frozen
class JobFilter:
    """Which jobs the jobs page lists and a bulk action takes: every field given must match."""

    status: JobStatus | None = None
    queue: str | None = None
    name: str | None = None
    correlation_id: str | None = None
    text: str | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> JobFilter:
        """The filter a query string (or a form) states; empty fields mean "any"."""
        given = {field: query[field].strip() for field in FIELDS if query.get(field, "").strip()}
        status = given.pop("status", None)
        if status is not None and status not in {s.value for s in JobStatus}:
            known = ", ".join(s.value for s in JobStatus)
            raise ValidationError(f"status must be one of {known}, not {status!r}", value=status)
        times = {
            field: parse_time(field, text) for field in ("created_from", "created_until") if (text := given.get(field))
        }
        return cls(
            status=JobStatus(status) if status else None,
            queue=given.get("queue"),
            name=given.get("name"),
            correlation_id=given.get("correlation_id"),
            text=given.get("text"),
            created_from=times.get("created_from"),
            created_until=times.get("created_until"),
        )

    def is_empty(self) -> bool:
        return self == JobFilter()

    def query(self) -> dict[str, str]:
        """The query-string fields that say this filter (only those given)."""
        values = attrs.asdict(self, recurse=False)
        values["status"] = self.status.value if self.status else None
        values["created_from"] = _time_text(self.created_from)
        values["created_until"] = _time_text(self.created_until)
        return {field: str(value) for field, value in values.items() if value is not None}

    def url(self, base: str, **extra: str) -> str:
        """*base* with this filter (and *extra* fields) as its query string."""
        fields = {**self.query(), **extra}
        return f"{base}?{urlencode(fields)}" if fields else base

    def store_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`jobkit.store.Store.list_jobs` that list these jobs."""
        return {
            "status": self.status,
            "queue": self.queue,
            "name": self.name,
            "correlation_id": self.correlation_id,
            "text": self.text,
            "created_from": self.created_from,
            "created_until": self.created_until,
        }

    def search_start(self, after: tuple[datetime, str] | None) -> tuple[datetime, str] | None:
        """Where a page of this filter starts counting the jobs it reads: after the cursor, before created_until."""
        until = None if self.created_until is None else (self.created_until, "")  # "" sorts before every id
        return min((c for c in (after, until) if c is not None), default=None)

    def reading_back_to(self, edge: datetime | None) -> JobFilter | None:
        """This filter kept to jobs created at or after *edge* (where a bounded search stops), or None when its own
        created_from already stops it there or sooner."""
        if edge is None or (self.created_from is not None and self.created_from >= edge):
            return None
        return attrs.evolve(self, created_from=edge)

    def describe(self) -> str:
        """``status=failed, queue=emails``, or ``every job``: what a confirmation names."""
        return ", ".join(f"{field}={value}" for field, value in self.query().items()) or "every job"


def parse_cursor(text: str | None) -> tuple[datetime, str] | None:
    """A page's cursor from ``after=<created_at>~<id>``: the last job of the page before."""
    if not text:
        return None
    created, separator, job_id = text.partition(CURSOR_SEPARATOR)
    if not separator or not job_id:
        raise ValidationError(f"after must be <time>{CURSOR_SEPARATOR}<job id>, not {text!r}", value=text)
    return parse_time("after", created), job_id


def format_cursor(created_at: datetime, job_id: str) -> str:
    """The ``after`` of the page that follows a job (its full-precision created_at and its id)."""
    return f"{created_at.astimezone(timezone.utc).isoformat()}{CURSOR_SEPARATOR}{job_id}"
