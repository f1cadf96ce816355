"""PostgresStore's listings read the indexes meant for them: EXPLAIN asked of a planner that analysed the table.

The newest-first listing (no filter, a cursor, a time range) reads the creation index
backwards and sorts nothing; ``finished`` reads three ranges of the finished index, one a
status, and merges them; ``delete`` finds its jobs by primary key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import jobkit
from jobkit.model import JobStatus
from jobkit.stores import filters
from jobkit.stores.postgres import listing
from jobkit.stores.postgres import queries as q
from tests.support import T0, make_job

STATUSES = [JobStatus.COMPLETED] * 8 + [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING]


@pytest.fixture
def store(pg_schema_store: jobkit.PostgresStore) -> Iterator[jobkit.PostgresStore]:
    """Ten thousand jobs, mostly completed, a second apart; analysed."""
    jobs = []
    for n in range(10_000):
        status, created = STATUSES[n % len(STATUSES)], T0 + timedelta(seconds=n)
        ended = created + timedelta(seconds=n % 7) if status.finished else None
        jobs.append(make_job(f"job-{n:05d}", status=status, created_at=created, updated_at=created, completed_at=ended))
    pg_schema_store.add(jobs)
    pg_schema_store._db.write([("ANALYZE {s}.jobs", None)])
    yield pg_schema_store


def plan(store: jobkit.PostgresStore, statement: tuple[str, Any]) -> str:
    text, params = statement
    return "\n".join(str(row[0]) for row in store._db.read(f"EXPLAIN {text}", params))


@pytest.mark.parametrize(
    "chosen",
    [
        {},
        {"after": (T0 + timedelta(seconds=5000), "job-05000")},
        {"created_from": T0 + timedelta(seconds=100), "created_until": T0 + timedelta(seconds=900)},
        {"text": "URL"},
    ],
    ids=lambda chosen: ",".join(chosen) or "none",
)
def test_a_listing_newest_first_reads_the_creation_index_backwards(
    store: jobkit.PostgresStore, chosen: dict[str, Any]
) -> None:
    found = plan(store, listing.listing(filters.listing(**chosen), 100))
    assert "Index Scan Backward using jobs_created_idx" in found, found
    assert "Sort" not in found and "Seq Scan" not in found, found


@pytest.mark.parametrize("after", [None, (T0 + timedelta(seconds=500), "job-00500")])
def test_finished_merges_a_range_of_the_finished_index_for_each_status(store: jobkit.PostgresStore, after: Any) -> None:
    found = plan(store, listing.finished(T0 + timedelta(days=1), 100, after))
    assert found.count("Index Scan using jobs_finished_idx") == 3, found
    assert "Merge Append" in found and "Seq Scan" not in found, found


def test_delete_finds_its_jobs_by_primary_key(store: jobkit.PostgresStore) -> None:
    found = plan(store, (q.DELETE, (["job-00001", "job-00002"],)))
    assert "Index Scan using jobs_pkey" in found, found
