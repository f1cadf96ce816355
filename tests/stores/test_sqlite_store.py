"""SqliteStore alone: times on disk, files, open_store."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apsw
import pytest

import jobkit
from jobkit.errors import StoreError
from jobkit.model import (
    Complete,
    JobRecord,
    JobStatus,
)
from jobkit.store import Store
from tests.stores.contract import at, claim_one
from tests.support import T0, TIMEOUT, make_job


# -- SqliteStore only -----------------------------------------------------------------
@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite"


def test_sqlite_reads_times_back_as_aware_utc(db: Path) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=plus_two)
    job = make_job("a", scheduled_for=local, created_at=at(0.000001), updated_at=at(1), completed_at=None)
    with jobkit.SqliteStore(db) as store:
        store.add([job])
        claimed = claim_one(store, "a", now=at(2.5), token="t")
        store.finish([Complete("a", "t", "1", at=at(3.123456))])
        got = store.get("a")
    assert got is not None
    times = {
        name: getattr(got, name)
        for name in ("scheduled_for", "created_at", "updated_at", "worker_started_at", "completed_at")
    }
    for name, value in times.items():
        assert value.tzinfo is timezone.utc, name
    assert times == {
        "scheduled_for": datetime(2026, 3, 4, 3, 6, 7, 891011, tzinfo=timezone.utc),
        "created_at": at(0.000001),
        "updated_at": at(3.123456),
        "worker_started_at": claimed.worker_started_at,
        "completed_at": at(3.123456),
    }
    assert got.worker_started_at == at(2.5)


def test_sqlite_stores_times_as_utc_text_that_sorts(db: Path) -> None:
    with jobkit.SqliteStore(db) as store:
        store.add([make_job("a", scheduled_for=datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))])
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT scheduled_for, created_at FROM jobs").fetchall()
    finally:
        conn.close()
    assert rows == [("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z")]


def test_sqlite_reopened_file_holds_the_jobs(db: Path) -> None:
    with jobkit.SqliteStore(db) as store:
        store.add([make_job("a"), make_job("b")])
        held = claim_one(store, "b", token="tok")
    with jobkit.SqliteStore(db) as store:
        assert store.get("a") == make_job("a")
        assert store.get("b") == held
        assert store.finish([Complete("b", "tok", "1", at=at(1))]) == [True]
    with jobkit.SqliteStore(db) as store:
        assert store.counts()[JobStatus.COMPLETED] == 1


def test_sqlite_two_stores_on_one_file_see_each_other(db: Path) -> None:
    with jobkit.SqliteStore(db) as one, jobkit.SqliteStore(db) as two:
        one.add([make_job("a")])
        assert two.get("a") == make_job("a")
        claimed = two.claim(limit=5, now=T0, token="two", lock_until=at(30))
        assert [j.id for j in claimed] == ["a"]
        assert one.get("a") == claimed[0]
        assert one.claim(limit=5, now=T0, token="one", lock_until=at(30)) == []
        assert one.finish([Complete("a", "one", "1", at=at(1))]) == [False]
        assert one.finish([Complete("a", "two", "1", at=at(1))]) == [True]
        assert two.get("a").status is JobStatus.COMPLETED  # type: ignore[union-attr]


def test_sqlite_stores_in_threads_never_share_a_job(db: Path) -> None:
    ids = [f"job-{i:03d}" for i in range(90)]
    with jobkit.SqliteStore(db) as store:
        store.add([make_job(i) for i in ids])
    workers = 3
    start = threading.Barrier(workers)

    def work(worker: int) -> list[str]:
        mine: list[str] = []
        with jobkit.SqliteStore(db) as own:
            start.wait(timeout=10)
            while batch := own.claim(limit=2, now=T0, token=f"w{worker}-{len(mine)}", lock_until=at(30)):
                mine.extend(j.id for j in batch)
        return mine

    with ThreadPoolExecutor(workers) as pool:
        claimed = [job_id for done in pool.map(work, range(workers)) for job_id in done]
    assert sorted(claimed) == ids
    with jobkit.SqliteStore(db) as store:
        assert store.counts()[JobStatus.RUNNING] == len(ids)


def test_sqlite_waker_wakes_when_another_store_commits(db: Path) -> None:
    with jobkit.SqliteStore(db) as store, jobkit.SqliteStore(db) as other:
        waker = store.waker()
        try:
            other.add([make_job("a")])
            assert waker.wait(TIMEOUT) is True
        finally:
            waker.close()


def test_sqlite_closed_store_refuses_use_and_reports_unhealthy(db: Path) -> None:
    store = jobkit.SqliteStore(db)
    with store as entered:
        assert entered is store
        store.add([make_job("a")])
    with pytest.raises(StoreError, match="closed"):
        store.get("a")
    ok, message = store.health()
    assert ok is False
    assert "closed" in message


def test_the_two_readings_of_a_repeated_local_hour_are_kept_apart(store: Store) -> None:
    """01:30 happens twice in New York on 2026-11-01; `fold` tells which, an hour apart."""
    from zoneinfo import ZoneInfo

    first = datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    second = first.replace(fold=1)
    assert first == second  # equal as Python compares them, which a cache keyed on them would trust
    store.add([make_job("a", scheduled_for=first), make_job("b", scheduled_for=second)])
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert b.scheduled_for - a.scheduled_for == timedelta(hours=1)


def test_open_store_takes_memory_a_str_path_or_a_pathlike(tmp_path: Path) -> None:
    assert isinstance(jobkit.open_store("memory:"), jobkit.MemoryStore)
    for target in (str(tmp_path / "a.sqlite"), tmp_path / "b.sqlite"):
        with jobkit.open_store(target) as opened:
            assert isinstance(opened, jobkit.SqliteStore)
            assert opened.path == str(target)
    given = jobkit.MemoryStore()
    assert jobkit.open_store(given) is given


def test_a_round_of_hundreds_of_outcomes_prepares_no_statement_again(db: Path) -> None:
    """Each outcome of a round passes through APSW's statement cache, a ring that evicts its oldest
    entry as a statement goes back: with room for only 100, a round of 100 outcomes pushed out the
    claim, BEGIN and COMMIT, prepared again every round (about 5% of a drained job's CPU)."""
    per_round = 250  # a worker claims at most concurrency + 200 a round
    jobs = [make_job(f"j{i:04d}", scheduled_for=at(0)) for i in range(3 * per_round)]
    with jobkit.SqliteStore(db) as store:
        store.add(jobs)

        def claim(finished: list[JobRecord]) -> list[JobRecord]:
            _, claimed = store.finish_and_claim(
                [Complete(job.id, "tok", "1", at=at(2)) for job in finished],
                limit=per_round,
                now=at(1),
                token="tok",
                lock_until=at(30),
            )
            return claimed

        held = claim(claim(claim([])))  # every statement of a round has been prepared once
        stats = store._connection().cache_stats()
        assert len(claim(held)) == 0  # a round of 250 outcomes and a claim (that finds none left)
        after = store._connection().cache_stats()
        assert store.counts()[JobStatus.COMPLETED] == 3 * per_round
    assert after["misses"] == stats["misses"], after


def test_a_batch_of_completions_is_a_few_statements_and_each_is_fenced_by_its_own_token(db: Path) -> None:
    """100 completions go as UPDATE ... FROM (VALUES ...) of 64, 32 and 4 rows; one whose token no
    longer holds its job, at either side of each boundary, changes nothing and is reported not applied."""
    jobs = [make_job(f"j{i:03d}", scheduled_for=at(0)) for i in range(100)]
    stale = {0, 63, 64, 95, 96, 99}
    with jobkit.SqliteStore(db) as store:
        store.add(jobs)
        assert len(store.claim(limit=100, now=at(1), token="tok", lock_until=at(30))) == 100
        statements: list[str] = []
        store._connection().exec_trace = lambda cursor, sql, bindings: statements.append(sql) or True
        applied = store.finish(
            [Complete(job.id, "old" if i in stale else "tok", f'"r{i}"', at=at(2)) for i, job in enumerate(jobs)]
        )
        store._connection().exec_trace = None
        assert applied == [i not in stale for i in range(100)]
        assert sum(sql.lstrip().startswith("UPDATE jobs") for sql in statements) == 3, statements
        for i, job in enumerate(jobs):
            got = store.get(job.id)
            assert got is not None
            if i in stale:
                assert (got.status, got.result, got.worker_id) == (JobStatus.RUNNING, None, "tok")
            else:
                assert (got.status, got.result, got.completed_at) == (JobStatus.COMPLETED, f'"r{i}"', at(2))
