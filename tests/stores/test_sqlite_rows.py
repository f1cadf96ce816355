"""A jobs row and its record: both stores' codecs read the columns by position, so their order is the record's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs
import pytest

from jobkit.model import JobRecord, JobStatus
from jobkit.stores.postgres import queries as postgres
from jobkit.stores.sqlite.codec import record_of, row_of
from jobkit.stores.sqlite.schema import COLUMNS


def test_the_columns_are_in_the_order_of_the_record_fields() -> None:
    assert tuple(field.name for field in attrs.fields(JobRecord)) == COLUMNS


def every_field_differs() -> JobRecord:
    start = datetime(2026, 12, 8, 3, 0, tzinfo=timezone.utc)
    record = JobRecord(
        id="job-1",
        job_name="send_email",
        params='{"to": "a@example.com"}',
        status=JobStatus.RUNNING,
        scheduled_for=start,
        created_at=start - timedelta(seconds=1),
        updated_at=start + timedelta(seconds=1),
        max_attempts=7,
        attempt_count=2,
        priority=-3,
        correlation_id="order-9",
        result='"done"',
        progress=42,
        progress_message="half way",
        error="TimeoutError: slow",
        traceback="Traceback ...",
        worker_id="host:1:abc:1",
        worker_started_at=start + timedelta(seconds=2),
        worker_expires_at=start + timedelta(seconds=3),
        completed_at=start + timedelta(seconds=4),
        cancel_requested=True,
        queue="emails",
        unique_key="key-1",
        depends_on=("job-0",),
        waiting_for=1,
    )
    return record


def test_a_record_whose_every_field_differs_comes_back_from_its_sqlite_row_as_it_was() -> None:
    record = every_field_differs()
    assert record_of(row_of(record)) == record


def test_a_record_whose_every_field_differs_comes_back_from_its_postgres_row_as_it_was() -> None:
    assert postgres.COLUMNS == COLUMNS
    record = every_field_differs()
    assert postgres.record_of(postgres.row_of(record)) == record


def test_a_postgres_row_of_another_width_is_refused() -> None:
    row = postgres.row_of(every_field_differs())
    with pytest.raises(ValueError, match="25 columns, not 24"):
        postgres.record_of(row[:-1])
