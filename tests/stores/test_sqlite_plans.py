"""SqliteStore's reads go through the indexes meant for them, whatever values are bound.

Each connection runs with SQLite's query planner stability guarantee (QPSG), so a plan
may not depend on a bound value: a status that picks a partial index must be in the SQL
text. These tests record the statements a store runs and ask SQLite for their plans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE"))
        for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", bindings)
    ]


@pytest.mark.parametrize(
    ("status", "index"),
    [
        (jobkit.JobStatus.PENDING, "jobs_pending_idx"),
        (jobkit.JobStatus.RUNNING, "jobs_status_expires_idx"),
        (jobkit.JobStatus.COMPLETED, "jobs_finished_idx"),
        (jobkit.JobStatus.FAILED, "jobs_finished_idx"),
        (jobkit.JobStatus.CANCELLED, "jobs_finished_idx"),
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
        (jobkit.JobStatus.FAILED, "jobs_finished_idx"),
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
