"""SqliteStore's reads go through the indexes meant for them, whatever values are bound.

Each connection runs with SQLite's query planner stability guarantee (QPSG), so a plan
may not depend on a bound value: a status that picks a partial index must be in the SQL
text. These tests record the statements a store runs and ask SQLite for their plans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import jobkit
from jobkit.stores.sqlite import queries
from tests.support import T0, make_job


@pytest.fixture
def store(tmp_path: Path) -> Iterator[jobkit.SqliteStore]:
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as made:
        yield made


def pending(name: str) -> jobkit.JobRecord:
    return make_job("0193c0de-0000-7000-8000-000000000001", job_name=name, params="1")


def plans(store: jobkit.SqliteStore, call: Callable[[], Any]) -> list[str]:
    """The query plan lines of every statement *call* makes the store run."""
    conn = store._connection()
    seen: list[tuple[str, Any]] = []

    def trace(cursor: Any, sql: str, bindings: Any) -> bool:
        seen.append((sql, bindings))
        return True

    conn.exec_trace = trace
    try:
        call()
    finally:
        conn.exec_trace = None
    return [
        row[3]
        for sql, bindings in seen
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))
        for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", bindings)
    ]


@pytest.mark.parametrize(
    ("status", "index"),
    [
        (jobkit.JobStatus.PENDING, "jobs_pending_idx"),
        (jobkit.JobStatus.RUNNING, "jobs_status_expires_idx"),
        (jobkit.JobStatus.COMPLETED, "jobs_created_idx"),  # most of the table: read newest first, no sort
        (jobkit.JobStatus.FAILED, "jobs_unhappy_idx"),  # in creation order: no sort (schema version 5)
        (jobkit.JobStatus.CANCELLED, "jobs_unhappy_idx"),
    ],
)
def test_listing_by_status_uses_that_status_index(store: jobkit.SqliteStore, status: Any, index: str) -> None:
    lines = plans(store, lambda: store.list_jobs(status=status))
    assert any(index in line for line in lines), lines
    assert not any(line == "SCAN jobs" for line in lines), lines


@pytest.mark.parametrize(
    ("status", "index"),
    [
        (jobkit.JobStatus.PENDING, "jobs_pending_idx"),
        (jobkit.JobStatus.RUNNING, "jobs_status_expires_idx"),
        (jobkit.JobStatus.FAILED, "jobs_unhappy_idx"),
    ],
)
@pytest.mark.parametrize("name", [None, "shop:resize"])
def test_a_later_page_by_status_still_uses_that_status_index(
    store: jobkit.SqliteStore, status: Any, index: str, name: str | None
) -> None:
    after = (T0, "0193c0de-0000-7000-8000-000000000001")
    lines = plans(store, lambda: store.list_jobs(status=status, name=name, limit=10, after=after))
    assert any(index in line for line in lines), lines
    assert not any(line == "SCAN jobs" for line in lines), lines


def test_a_later_page_by_name_reads_no_whole_table(store: jobkit.SqliteStore) -> None:
    after = (T0, "0193c0de-0000-7000-8000-000000000001")
    lines = plans(store, lambda: store.list_jobs(name="shop:resize", limit=10, after=after))
    assert any("jobs_name_idx" in line for line in lines), lines
    assert not any(line == "SCAN jobs" for line in lines), lines


def test_listing_by_name_reads_no_whole_table(store: jobkit.SqliteStore) -> None:
    lines = plans(store, lambda: store.list_jobs(name="shop:resize"))
    assert any("jobs_name_idx" in line for line in lines), lines
    assert not any(line == "SCAN jobs" for line in lines), lines


def test_claims_read_the_queue_index(store: jobkit.SqliteStore) -> None:
    store.add([pending("shop:resize")])
    lines = plans(
        store, lambda: store.claim(limit=5, now=T0, token="t", lock_until=T0, names=["shop:resize", "shop:other"])
    )
    assert any("jobs_pending_idx" in line for line in lines), lines
    assert not any(line == "SCAN jobs" for line in lines), lines


def test_a_worker_serving_more_names_than_sqlite_binds_still_claims(store: jobkit.SqliteStore) -> None:
    names = [f"module:job_{i}" for i in range(40_000)]  # SQLite binds at most 32,766 values
    job = pending(names[-1])
    store.add([job])
    assert len(names) > queries.BOUND_NAMES
    assert store.next_due(names) == T0
    assert [j.id for j in store.claim(limit=5, now=T0, token="t", lock_until=T0, names=names)] == [job.id]


SORTED = "USE TEMP B-TREE FOR ORDER BY"
LATER = (T0, "0193c0de-0000-7000-8000-000000000001")


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"after": LATER},
        {"status": jobkit.JobStatus.COMPLETED},
        {"status": jobkit.JobStatus.COMPLETED, "after": LATER},
        {"created_from": T0},
        {"created_until": T0, "after": LATER},
        {"created_from": T0, "created_until": T0 + timedelta(hours=1)},
        {"status": jobkit.JobStatus.COMPLETED, "created_from": T0, "created_until": T0 + timedelta(hours=1)},
        {"text": "Resize"},
        {"queue": "emails"},
    ],
    ids=lambda filters: ",".join(filters) or "none",
)
def test_a_listing_newest_first_reads_the_creation_index_and_sorts_nothing(
    store: jobkit.SqliteStore, filters: dict[str, Any]
) -> None:
    lines = plans(store, lambda: store.list_jobs(limit=10, **filters))
    assert any("jobs_created_idx" in line for line in lines), lines
    assert SORTED not in lines, lines
    assert not any(line == "SCAN jobs" for line in lines), lines


def test_a_time_range_is_a_range_of_the_creation_index(store: jobkit.SqliteStore) -> None:
    lines = plans(store, lambda: store.list_jobs(created_from=T0, created_until=T0 + timedelta(hours=1)))
    assert lines == ["SEARCH jobs USING INDEX jobs_created_idx (created_at>? AND created_at<?)"]


@pytest.mark.parametrize("after", [None, LATER])
def test_finished_merges_three_ranges_of_the_finished_index(store: jobkit.SqliteStore, after: Any) -> None:
    lines = plans(store, lambda: store.finished(after=after, until=T0, limit=10))
    searches = [line for line in lines if line.startswith("SEARCH")]
    assert len(searches) == 3 and all("jobs_finished_idx (status=?" in line for line in searches), lines
    assert "MERGE (UNION ALL)" in lines, lines
    assert SORTED not in lines and not any(line.startswith("SCAN") for line in lines), lines


def test_delete_finds_its_jobs_by_id(store: jobkit.SqliteStore) -> None:
    store.add([pending("shop:resize")])
    lines = plans(store, lambda: store.delete(["0193c0de-0000-7000-8000-000000000001", "other"]))
    assert any("jobs USING PRIMARY KEY (id=?)" in line for line in lines), lines
    assert "SCAN jobs" not in lines, lines


@pytest.mark.parametrize("status", [jobkit.JobStatus.FAILED, jobkit.JobStatus.CANCELLED])
def test_a_page_of_failed_or_cancelled_jobs_is_read_in_creation_order_not_sorted(
    store: jobkit.SqliteStore, status: Any
) -> None:
    lines = plans(store, lambda: store.list_jobs(status=status, limit=50))
    assert SORTED not in lines, lines


def test_deleting_a_job_that_ran_after_another_finds_its_dependency_rows_by_index(store: jobkit.SqliteStore) -> None:
    done = {"status": jobkit.JobStatus.COMPLETED, "completed_at": T0, "attempt_count": 1}
    store.add([make_job("parent", **done)])
    store.add([make_job("child", depends_on=("parent",), **done)])
    lines = plans(store, lambda: store.delete(["child"]))
    assert any("job_deps USING COVERING INDEX job_deps_child_idx" in line for line in lines), "\n".join(lines)
    assert "SCAN job_deps" not in lines, lines
    assert store.get("child") is None
