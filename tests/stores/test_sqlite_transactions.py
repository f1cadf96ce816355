"""Nothing but statements runs inside a SqliteStore write transaction.

A handler that holds the GIL (a long regex, a C call that never lets go) stalls every
Python thread of its process. A thread stalled between BEGIN IMMEDIATE and COMMIT keeps
SQLite's one write lock from every writer on the machine for the whole stall. So each
write verb encodes its rows before BEGIN and decodes what came back after COMMIT; in
between, the only calls are into APSW. These tests watch each verb's transaction with a
profiler and name every Python function, or C function other than APSW's, called inside.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import apsw
import pytest

from jobkit.model import Cancel, Complete, Fail, JobRecord, JobStatus, Lease, Retry, Schedule
from jobkit.stores.sqlite.store import SqliteStore
from tests.support import T0, make_job

RUNNING = JobStatus.RUNNING


def at(seconds: float) -> Any:
    return T0 + timedelta(seconds=seconds)


class Watched:
    """An APSW connection that profiles its thread from BEGIN IMMEDIATE to COMMIT."""

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn
        self.transactions = 0
        self.inside: list[str] = []  # what was called inside a transaction that should not be

    def execute(self, sql: str, bindings: Any = ()) -> Any:
        if sql == "COMMIT":
            sys.setprofile(None)
        cursor = self._conn.execute(sql, bindings)
        if sql == "BEGIN IMMEDIATE":
            self.transactions += 1
            sys.setprofile(self._look)
        return cursor

    def executemany(self, sql: str, bindings: Any) -> Any:
        return self._conn.executemany(sql, bindings)

    def changes(self) -> int:
        return int(self._conn.changes())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _look(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            own = code in _PROXY_CODES
            body = frame.f_back is not None and frame.f_back.f_code is SqliteStore._write.__code__
            if not (own or body):
                self.inside.append(f"{code.co_name} ({Path(code.co_filename).name}:{code.co_firstlineno})")
        elif event == "c_call":
            owner = getattr(arg, "__self__", None)
            if isinstance(owner, (apsw.Connection, apsw.Cursor)):
                return
            if isinstance(owner, list) and arg.__name__ == "append":  # collecting the raw rows
                return
            if arg is sys.setprofile:  # this watch ending, at COMMIT
                return
            self.inside.append(f"{getattr(arg, '__qualname__', arg)} (C)")


_PROXY_CODES = {f.__code__ for f in (Watched.execute, Watched.executemany, Watched.changes, Watched.__getattr__)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "jobs.sqlite") as store:
        yield store


def running(job_id: str, token: str, **fields: Any) -> JobRecord:
    values: dict[str, Any] = {
        "status": RUNNING,
        "worker_id": token,
        "worker_started_at": T0,
        "worker_expires_at": at(30),
        "attempt_count": 1,
        "max_attempts": 3,
    }
    return make_job(job_id, **{**values, **fields})


def schedule(name: str) -> Schedule:
    return Schedule(
        id=f"s-{name}",
        name=name,
        job_name="t:tick",
        cron_expression="* * * * *",
        params="{}",
        timezone="UTC",
        enabled=True,
        next_run_at=at(60),
        created_at=T0,
        updated_at=T0,
    )


def _setup_running(store: SqliteStore) -> None:
    store.add(
        [
            running("a", "ta"),
            running("b", "tb"),
            running("c", "tc", cancel_requested=True),
            running("d", "td", attempt_count=3),
            make_job("p1"),
            make_job("p2"),
        ]
    )


WRITES: dict[str, Callable[[SqliteStore], object]] = {
    "add": lambda s: s.add([make_job("n1"), make_job("n2")]),
    "claim": lambda s: s.claim(limit=5, now=at(1), token="new", lock_until=at(31)),
    "claim_job": lambda s: s.claim_job("p1", now=at(1), token="new", lock_until=at(31)),
    "heartbeat": lambda s: s.heartbeat(
        [Lease("a", "ta"), Lease("b", "tb"), Lease("c", "tc"), Lease("a", "stale")], now=at(1), lock_until=at(31)
    ),
    "finish": lambda s: s.finish(
        [
            Complete("a", "ta", "1", at=at(1)),
            Complete("b", "tb", "2", at=at(1)),
            Retry("c", "tc", "E", None, at=at(1), run_at=at(9)),
            Fail("d", "td", "E", "tb", at=at(1)),
            Cancel("d", "td", "again", at=at(1)),
            Cancel("d", "td", "twice", at=at(1)),  # a run naming one job twice: one statement a write
        ]
    ),
    "finish_and_claim": lambda s: s.finish_and_claim(
        [Complete("a", "ta", "1", at=at(1)), Fail("b", "tb", "E", None, at=at(1))],
        limit=5,
        now=at(1),
        token="new",
        lock_until=at(31),
        names=["shop.tasks:resize"],
    ),
    "release": lambda s: s.release([Lease("a", "ta"), Lease("c", "tc"), Lease("b", "stale")], now=at(1)),
    "reset_expired": lambda s: s.reset_expired(now=at(60)),
    "cancel": lambda s: s.cancel("p1", now=at(1)),
    "retry": lambda s: s.retry(["a", "b", "p1"], now=at(1)),
    "purge": lambda s: s.purge(statuses=[JobStatus.COMPLETED], before=at(100), limit=10),
    "put_schedule": lambda s: s.put_schedule(schedule("other")),
    "fire_schedule": lambda s: s.fire_schedule(
        "every-minute", expected=at(60), fire_time=at(60), next_run_at=at(120), job=make_job("fired", created_at=at(60))
    ),
}


@pytest.mark.parametrize("verb", sorted(WRITES))
def test_a_write_transaction_runs_nothing_but_statements(store: SqliteStore, verb: str) -> None:
    _setup_running(store)
    store.put_schedule(schedule("every-minute"))
    if verb in ("retry", "purge"):  # give them finished jobs to act on
        store.finish([Complete("a", "ta", "1", at=at(1)), Fail("b", "tb", "E", None, at=at(1))])
    watched = Watched(store._connection())
    store._local.conn = watched
    # A garbage collection inside the transaction would run other code's finalizers and gc
    # callbacks (a psycopg pool's __del__, Hypothesis' timer) there: not jobkit's work.
    gc.collect()
    gc.disable()
    try:
        WRITES[verb](store)
    finally:
        sys.setprofile(None)
        gc.enable()
        store._local.conn = watched._conn
    assert watched.transactions == 1, f"{verb} took {watched.transactions} write transactions"
    assert watched.inside == [], f"{verb} ran Python work while it held the write lock: {watched.inside}"


def test_a_fired_schedule_enqueues_its_run_only_when_the_fire_took_effect(store: SqliteStore) -> None:
    """The one decision inside fire_schedule's transaction is SQLite's: no run without the fire."""
    store.put_schedule(schedule("every-minute"))
    job = make_job("fired", created_at=at(60))
    stale = store.fire_schedule("every-minute", expected=at(30), fire_time=at(30), next_run_at=at(90), job=job)
    assert stale is False and store.get("fired") is None
    fresh = store.fire_schedule("every-minute", expected=at(60), fire_time=at(60), next_run_at=at(120), job=job)
    assert fresh is True and store.get("fired") is not None


def test_a_reset_decided_on_a_read_is_fenced_by_it(store: SqliteStore) -> None:
    """reset_expired decides outside its transaction: a job heartbeated in between is not reset."""
    store.add([running("a", "ta")])
    real = store._read

    def read_then_renewed(sql: str, bindings: Any = ()) -> list[Any]:
        rows = real(sql, bindings)
        store.heartbeat([Lease("a", "ta")], now=at(59), lock_until=at(600))
        return rows

    store._read = read_then_renewed  # type: ignore[method-assign]
    report = store.reset_expired(now=at(60))
    assert report.retried == [] and report.failed == [] and report.cancelled == []
    job = store.get("a")
    assert job is not None and job.status is RUNNING and job.worker_expires_at == at(600)
