"""A jobs row and its record: the codec reads the columns by position, so their order is the record's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs

from jobkit.model import JobRecord, JobStatus
from jobkit.stores.sqlite.codec import record_of, row_of
from jobkit.stores.sqlite.schema import COLUMNS


def test_the_columns_are_in_the_order_of_the_record_fields() -> None:
    assert COLUMNS == tuple(field.name for field in attrs.fields(JobRecord))


def test_a_record_whose_every_field_differs_comes_back_from_its_row_as_it_was() -> None:
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
    assert record_of(row_of(record)) == record
