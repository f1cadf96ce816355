"""jobkit.present: records as JSON-ready values and the text of times, pure (``now`` passed in)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import attrs

import jobkit
from jobkit.model import JobRecord, JobStatus, Schedule, utc_now
from jobkit.present import (
    decoded,
    first_line,
    format_age,
    format_relative,
    format_since,
    format_time,
    job_json,
    pretty,
    schedule_json,
    summary_json,
)
from tests import admin_jobs

T0 = datetime(2026, 1, 1, 12, 0, 3, 900_000, tzinfo=timezone.utc)


def test_format_age() -> None:
    assert format_age(timedelta(seconds=-5)) == "0s"
    assert format_age(timedelta(seconds=45.9)) == "45s"
    assert format_age(timedelta(minutes=3, seconds=12)) == "3m 12s"
    assert format_age(timedelta(hours=2, minutes=5, seconds=9)) == "2h 5m"
    assert format_age(timedelta(days=3, hours=4, minutes=1)) == "3d 4h"
    now = utc_now()
    assert format_relative(now - timedelta(seconds=3), now) == "3s ago"
    assert format_relative(now + timedelta(minutes=5), now) == "in 5m 0s"


def test_format_time_is_utc_to_the_second() -> None:
    assert format_time(None) == "-"
    assert format_time(T0) == "2026-01-01 12:00:03Z"
    elsewhere = T0.astimezone(timezone(timedelta(hours=-5)))
    assert format_time(elsewhere) == "2026-01-01 12:00:03Z"
    assert format_since(None, T0) == "-"
    assert format_since(T0, T0 + timedelta(minutes=3, seconds=12)) == "2026-01-01 12:00:03Z (3m 12s ago)"


def test_first_line() -> None:
    assert first_line(None) == ""
    assert first_line("  \n ") == ""
    assert first_line("  boom\nmore") == "boom"
    assert first_line("x" * 100, 10) == "x" * 9 + "…"


def test_decoded_and_pretty_keep_text_that_is_not_json() -> None:
    assert decoded(None) is None
    assert decoded('{"a": [1, 2]}') == {"a": [1, 2]}
    assert decoded("not {json") == "not {json"
    assert pretty('{"a":1,"b":"é"}') == '{\n  "a": 1,\n  "b": "é"\n}'
    assert pretty(None) == "null"


def test_job_json_is_every_field_as_json_data() -> None:
    record = JobRecord(
        id="j1",
        job_name="tasks:add",
        params='{"a": 1}',
        status=JobStatus.COMPLETED,
        scheduled_for=T0,
        created_at=T0,
        updated_at=T0,
        attempt_count=1,
        result="3",
        completed_at=T0,
    )
    data = job_json(record)
    assert set(data) == {field.name for field in attrs.fields(JobRecord)}
    assert data["status"] == "completed" and data["params"] == {"a": 1} and data["result"] == 3
    assert data["created_at"] == T0.isoformat() and data["worker_started_at"] is None
    assert json.loads(json.dumps(data)) == data, "plain JSON"


def test_schedule_json_decodes_params() -> None:
    with jobkit.MemoryStore() as store:
        jobkit.schedule(store, admin_jobs.add, "*/5 * * * *", {"a": 1}, name="five")
        (entry,) = jobkit.schedules(store)
    data = schedule_json(entry)
    assert set(data) == {field.name for field in attrs.fields(Schedule)}
    assert data["params"] == {"a": 1, "b": 0} and data["name"] == "five" and data["enabled"] is True
    assert json.loads(json.dumps(data)) == data


def test_summary_json_of_an_empty_queue() -> None:
    now = utc_now()
    with jobkit.MemoryStore() as store:
        data = summary_json(store.summary(since=now), now, backlog=store.backlog(now=now))
    assert data["counts"] == dict.fromkeys(("pending", "running", "completed", "failed", "cancelled"), 0)
    assert data["oldest_pending"] is None and data["oldest_pending_age"] is None
    assert data["due"] == {"count": 0, "oldest": None} and data["scheduled"] == {"count": 0, "next": None}
    assert data["leases"] == []
    assert data["failed_last_hour"] == 0 and data["running"] == [] and data["at"] == now.isoformat()


def test_summary_json_counts_and_ages() -> None:
    with jobkit.MemoryStore() as store:
        admin_jobs.populate(store)
        now = utc_now() + timedelta(seconds=10)
        data = summary_json(store.summary(since=now - timedelta(hours=1)), now, backlog=store.backlog(now=now))
    assert data["counts"] == {"pending": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 1}
    assert data["by_name"][admin_jobs.explode.name]["failed"] == 1
    assert data["oldest_pending_age"] >= 10
    assert [job["progress"] for job in data["running"]] == [40]
