"""Concurrent add() calls from the threads of one process: every job is written once and each call gets its own answer.

On the SQL stores the calls that arrive while a write is under way share the next
transaction (group commit); a call the store refuses among them fails alone. Which calls
wait together is arranged, not hoped for: another connection holds the write lock while
they queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest

import jobkit
from jobkit.errors import JobkitError, UnknownDependency
from jobkit.model import JobRecord
from jobkit.store import Store
from tests.support import TIMEOUT, make_job, wait_until


def in_threads(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run each call in a thread of its own, started together; what each returned or raised."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait(TIMEOUT)
        try:
            results[index] = calls[index]()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    return results


def test_adds_from_many_threads_at_once_write_every_job_once(store: Store) -> None:
    batches = [[make_job(f"t{t}-{n}") for n in range(25)] for t in range(8)]
    results = in_threads([lambda b=b: store.add(b) for b in batches])  # type: ignore[misc]
    assert results == [[job.id for job in b] for b in batches]
    assert store.counts()[jobkit.JobStatus.PENDING] == 200
    assert {job.id for job in store.list_jobs(limit=1000)} == {job.id for b in batches for job in b}


# -- the SQL stores: calls that queue behind a write share the next one -----------------------
@contextmanager
def writes_held(store: Store) -> Iterator[Callable[[], None]]:
    """Another connection keeps *store*'s adds waiting (SQLite: the write lock; PostgreSQL: a lock on the
    jobs table) until the release it yields is called."""
    if isinstance(store, jobkit.SqliteStore):
        conn: Any = apsw.Connection(store.path)
        conn.execute("BEGIN IMMEDIATE")
        finish: Callable[[], None] = lambda: conn.execute("COMMIT")  # noqa: E731
    else:
        import psycopg

        assert isinstance(store, jobkit.PostgresStore)
        conn = psycopg.connect(store.dsn)
        conn.execute(f'LOCK TABLE "{store.schema}".jobs IN EXCLUSIVE MODE')
        finish = conn.commit
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            finish()
            released = True

    try:
        yield release
    finally:
        release()
        conn.close()


def added_behind_a_lock(store: Any, calls: Sequence[Sequence[JobRecord]]) -> list[Any]:
    """A first add waits for a lock another connection holds; *calls* queue behind it; then the lock goes."""
    results: list[Any] = [None] * (len(calls) + 1)

    def add(index: int, jobs: Sequence[JobRecord]) -> None:
        try:
            results[index] = store.add(jobs)
        except Exception as exc:
            results[index] = exc

    with writes_held(store) as release:
        first = threading.Thread(target=add, args=(0, [make_job("first")]))
        first.start()
        wait_until(lambda: store._adds._writing, "the first add writing (waiting for the lock)")
        threads = [threading.Thread(target=add, args=(i + 1, jobs)) for i, jobs in enumerate(calls)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(store._adds._waiting) == len(calls), "every other add queued behind it")
        release()
        for thread in [first, *threads]:
            thread.join(TIMEOUT)
            assert not thread.is_alive()
    return results


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        with jobkit.SqliteStore(tmp_path / "jobs.sqlite", busy_timeout=TIMEOUT) as store:
            yield store
    else:
        yield request.getfixturevalue("pg_schema_store")


def test_adds_that_queue_behind_a_write_share_one_transaction(sql_store: Any) -> None:
    calls = [[make_job(f"c{t}-{n}") for n in range(3)] for t in range(7)]
    results = added_behind_a_lock(sql_store, calls)
    assert results == [["first"], *[[job.id for job in jobs] for jobs in calls]]
    assert (sql_store._adds.batches, sql_store._adds.calls) == (2, 8), "the first alone, then the seven together"
    assert sql_store.counts()[jobkit.JobStatus.PENDING] == 22


def test_a_refused_add_among_those_written_together_fails_alone(sql_store: Any) -> None:
    sql_store.add([make_job("taken")])
    calls = [
        [make_job("a1"), make_job("a2")],
        [make_job("b1"), make_job("taken")],  # an id already taken: this call, all of it, is refused
        [make_job("c1", depends_on=("no-such-job",))],  # runs after a job that does not exist
        [make_job("d1", unique_key="k"), make_job("d2", unique_key="k")],  # deduplicated: d2 is d1
        [make_job("e1", depends_on=("a1",))],  # after a job written in this same batch
        [make_job("f1")],
    ]
    results = added_behind_a_lock(sql_store, calls)
    assert results[1] == ["a1", "a2"] and results[6] == ["f1"]
    assert isinstance(results[2], JobkitError) and "cannot add jobs" in str(results[2])
    assert isinstance(results[3], UnknownDependency) and "no-such-job" in str(results[3])
    assert results[4] == ["d1", "d1"]
    assert results[5] == ["e1"]
    assert sql_store.get("b1") is None and sql_store.get("c1") is None, "a refused call leaves none of its jobs"
    listed = sorted(job.id for job in sql_store.list_jobs(limit=100))
    assert listed == ["a1", "a2", "d1", "e1", "f1", "first", "taken"]


def test_sqlite_a_transaction_that_fails_as_a_whole_fails_each_call_and_writes_none(tmp_path: Path) -> None:
    """A disk that fills (PRAGMA max_page_count, on every connection the store opens) fails the batch as a whole."""
    path = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(path, busy_timeout=TIMEOUT) as store:
        pages = store._read("PRAGMA page_count")[0][0]

        def full(conn: apsw.Connection) -> None:
            conn.execute(f"PRAGMA max_page_count = {pages}")

        apsw.connection_hooks.append(full)
        try:
            big = '{"blob": "' + "x" * 20_000 + '"}'  # more than a page: no row fits in the space there is
            calls = [[make_job(f"c{t}", params=big)] for t in range(4)]
            results = added_behind_a_lock(store, calls)
        finally:
            apsw.connection_hooks.remove(full)
        assert results[0] == ["first"], "a small row fits"
        assert all(isinstance(r, jobkit.StoreError) and "full" in str(r) for r in results[1:]), results
        assert all("savepoint" not in str(r) for r in results[1:]), results
        assert (store._adds.batches, store._adds.calls) == (2, 5)
        assert [job.id for job in store.list_jobs(limit=100)] == ["first"], "none of the batch is written"


def test_a_value_the_database_cannot_take_fails_only_its_own_call(sql_store: Any) -> None:
    """A priority past 64 bits (Store.add takes records as they are: later() refuses it before this)."""
    calls = [[make_job("good")], [make_job("huge", priority=2**70)], [make_job("also-good")]]
    results = added_behind_a_lock(sql_store, calls)
    assert results[1] == ["good"] and results[3] == ["also-good"], results
    assert isinstance(results[2], JobkitError), results
    assert sql_store.get("huge") is None


# -- SQLite: plain calls written together are one statement ------------------------------------
@contextmanager
def statements_run() -> Iterator[list[str]]:
    """The SQL of every statement run on the connections opened meanwhile (an executemany: once a row)."""
    run: list[str] = []

    def trace(cursor: Any, sql: str, bindings: Any) -> bool:
        run.append(" ".join(sql.split()))
        return True

    def hook(conn: apsw.Connection) -> None:
        conn.exec_trace = trace

    apsw.connection_hooks.append(hook)
    try:
        yield run
    finally:
        apsw.connection_hooks.remove(hook)


def test_sqlite_plain_calls_written_together_are_one_insert(tmp_path: Path) -> None:
    """One call into SQLite for the batch: every statement stepped lets go of the GIL, which busy threads take."""
    calls = [[make_job(f"c{t}-{n}") for n in range(3)] for t in range(7)]
    with statements_run() as run, jobkit.SqliteStore(tmp_path / "jobs.sqlite", busy_timeout=TIMEOUT) as store:
        results = added_behind_a_lock(store, calls)
        assert results == [["first"], *[[job.id for job in jobs] for jobs in calls]]
        assert (store._adds.batches, store._adds.calls) == (2, 8)
        writes = [sql for sql in run if sql.startswith(("INSERT INTO jobs", "SAVEPOINT"))]
        assert len(writes) == 2, writes  # the first alone, then the seven calls' 21 rows, no savepoint
        assert writes[1].count("?") == 21 * len(jobkit.stores.sqlite.schema.COLUMNS)
        assert store.counts()[jobkit.JobStatus.PENDING] == 22


def test_sqlite_a_refused_row_among_plain_calls_fails_its_call_alone(tmp_path: Path) -> None:
    """The one INSERT is refused as a whole (a taken id): then each call goes in a savepoint of its own."""
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite", busy_timeout=TIMEOUT) as store:
        store.add([make_job("taken")])
        calls = [[make_job("a1"), make_job("a2")], [make_job("b1"), make_job("taken")], [make_job("c1")]]
        results = added_behind_a_lock(store, calls)
        assert results[1] == ["a1", "a2"] and results[3] == ["c1"], results
        assert isinstance(results[2], JobkitError) and "cannot add jobs" in str(results[2])
        assert sorted(job.id for job in store.list_jobs(limit=100)) == ["a1", "a2", "c1", "first", "taken"]


def test_sqlite_plain_calls_of_more_rows_than_one_insert_holds_are_all_written(tmp_path: Path) -> None:
    rows = jobkit.stores.sqlite.queries.SHARED_INSERT_ROWS
    calls = [[make_job(f"c{t}-{n}") for n in range(rows // 2 + 1)] for t in range(2)]
    with statements_run() as run, jobkit.SqliteStore(tmp_path / "jobs.sqlite", busy_timeout=TIMEOUT) as store:
        results = added_behind_a_lock(store, calls)
        assert results[1:] == [[job.id for job in jobs] for jobs in calls]
        assert sum(sql.startswith("SAVEPOINT") for sql in run) == 2, "each call in a savepoint of its own"
        assert store.counts()[jobkit.JobStatus.PENDING] == 2 * (rows // 2 + 1) + 1
