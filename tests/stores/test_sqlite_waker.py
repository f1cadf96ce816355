"""SqliteWaker: a commit by any connection or process, or a ring, wakes it; nothing else does.

Waits are bounded by generous timeouts and assert what woke them, never how fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jobkit
from jobkit.stores.sqlite import SqliteWaker
from tests.support import TIMEOUT, counted, make_job, poll

QUIET = 0.05  # how long a wait that nothing should wake is given to go wrong


def job(job_id: str) -> jobkit.JobRecord:
    return make_job(job_id, job_name="shop:resize", params="1")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[jobkit.SqliteStore]:
    with jobkit.SqliteStore(db) as made:
        yield made


@pytest.fixture
def waker(store: jobkit.SqliteStore) -> Iterator[SqliteWaker]:
    made = store.waker()
    yield made
    made.close()


def in_thread(work: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def when_asleep(waker: SqliteWaker, then: Callable[[], Any]) -> threading.Thread:
    """Run *then* in a thread once the waker's thread sleeps in select (so the pipe is what wakes it)."""

    def work() -> None:
        poll(lambda: waker._sleeping)
        then()

    return in_thread(work)


def timed_wait(waker: SqliteWaker, timeout: float = TIMEOUT, **options: Any) -> tuple[bool, float]:
    start = time.monotonic()
    woke = waker.wait(timeout, **options)
    return woke, time.monotonic() - start


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_on_linux_it_watches_the_wal(waker: SqliteWaker) -> None:
    assert waker.watching


def test_a_commit_by_another_connection_wakes_it(db: Path, store: jobkit.SqliteStore, waker: SqliteWaker) -> None:
    with jobkit.SqliteStore(db) as other:
        writer = when_asleep(waker, lambda: other.add([job("a")]))
        woke, took = timed_wait(waker)
        writer.join(TIMEOUT)
    assert woke
    assert took < TIMEOUT / 2
    assert store.get("a") is not None  # woken by the commit, which this thread now sees


CHILD = """
import sys
from datetime import datetime, timezone
import jobkit
t = datetime(2026, 1, 1, tzinfo=timezone.utc)
with jobkit.SqliteStore(sys.argv[1]) as store:
    store.add([jobkit.JobRecord(id="from-child", job_name="shop:resize", params="1",
                                status=jobkit.JobStatus.PENDING, scheduled_for=t, created_at=t, updated_at=t)])
"""


def test_a_commit_by_another_process_wakes_it(db: Path, store: jobkit.SqliteStore, waker: SqliteWaker) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stderr=subprocess.PIPE, text=True)
    try:
        woke, took = timed_wait(waker, 60.0)
    finally:
        _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert woke
    assert took < 30.0
    assert store.get("from-child") is not None


def test_without_inotify_it_looks_for_commits_itself(db: Path, store: jobkit.SqliteStore, tmp_path: Path) -> None:
    waker = SqliteWaker(store._connection, str(tmp_path / "no-such-wal"))
    try:
        assert not waker.watching
        with jobkit.SqliteStore(db) as other:
            writer = when_asleep(waker, lambda: other.add([job("a")]))
            woke, took = timed_wait(waker)
            writer.join(TIMEOUT)
        assert woke
        assert took < TIMEOUT / 2
        assert store.get("a") is not None
    finally:
        waker.close()


def test_a_commit_counts_once(db: Path, waker: SqliteWaker) -> None:
    with jobkit.SqliteStore(db) as other:
        other.add([job("a")])
        assert waker.wait(TIMEOUT)
        assert not waker.wait(QUIET)
        other.add([job("b")])
        assert waker.wait(TIMEOUT)


def test_its_own_stores_commits_on_other_threads_count(store: jobkit.SqliteStore, waker: SqliteWaker) -> None:
    in_thread(lambda: store.add([job("a")])).join(TIMEOUT)  # another thread: another connection
    assert waker.wait(TIMEOUT)


@pytest.mark.parametrize("commits", [True, False])
def test_a_ring_from_another_thread_wakes_it(waker: SqliteWaker, commits: bool) -> None:
    ringer = when_asleep(waker, waker.ring)
    woke, took = timed_wait(waker, commits=commits)
    ringer.join(TIMEOUT)
    assert woke
    assert took < TIMEOUT / 2
    assert not waker.wait(QUIET, commits=commits)  # one ring, one wake-up


def test_many_rings_while_it_sleeps_write_the_pipe_once(waker: SqliteWaker, monkeypatch: pytest.MonkeyPatch) -> None:
    # A busy worker's handlers each ring as they finish; only the first may pay a system call.
    writes = counted(monkeypatch, os, "write")

    def ring_often() -> None:
        for _ in range(50):
            waker.ring()

    ringer = when_asleep(waker, ring_often)
    woke, _ = timed_wait(waker, commits=False)
    ringer.join(TIMEOUT)
    assert woke
    assert len(writes) == 1
    waker.ring()  # taken by the wait: the next ring is a new one
    assert waker.wait(0, commits=False)


def test_a_ring_before_the_wait_is_kept(waker: SqliteWaker) -> None:
    waker.ring()
    assert waker.wait(0)
    assert not waker.wait(0)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals")
def test_a_ring_from_a_signal_handler_wakes_it(waker: SqliteWaker) -> None:
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: waker.ring())
    try:
        sender = when_asleep(waker, lambda: os.kill(os.getpid(), signal.SIGUSR1))
        woke, took = timed_wait(waker, commits=False)
        sender.join(TIMEOUT)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert woke
    assert took < TIMEOUT / 2


def test_without_commits_a_commit_does_not_wake_it(db: Path, waker: SqliteWaker) -> None:
    with jobkit.SqliteStore(db) as other:
        other.add([job("a")])
        assert not waker.wait(QUIET, commits=False)
        assert waker.wait(TIMEOUT)  # the commit still counts for the next wait that asks


def test_the_time_runs_out_with_nothing_happening(waker: SqliteWaker) -> None:
    assert not waker.wait(0)
    assert not waker.wait(QUIET)
    assert not waker.wait(QUIET, commits=False)
    assert not waker.wait(-1)


def test_on_another_thread_it_says_maybe_once(waker: SqliteWaker) -> None:
    seen: list[bool] = []
    in_thread(lambda: seen.extend([waker.wait(0), waker.wait(QUIET)])).join(TIMEOUT)
    assert seen == [True, False]  # that thread's connection has its own data version
    assert waker.wait(0)  # and back on the first thread, once again
    assert not waker.wait(0)


def test_close_releases_it_once(store: jobkit.SqliteStore) -> None:
    waker = store.waker()
    fds = (waker._read, waker._write)
    waker.close()
    waker.close()
    waker.ring()  # a late ring (say, from a signal handler) writes nowhere
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


class _LateCommit:
    """A connection whose data_version moves only when told: a commit that shows after its WAL write."""

    def __init__(self) -> None:
        self.version = 1

    def execute(self, sql: str) -> Any:
        assert sql == "PRAGMA data_version"
        return self

    def fetchall(self) -> list[tuple[int]]:
        return [(self.version,)]


def test_a_commit_that_shows_after_its_write_was_read_is_seen_within_a_recheck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers' WAL writes read by one wake-up, the second commit visible only after its fsync.

    Nothing more is written to the WAL once it shows, so the waker must look at the data
    version on its own: it never sleeps longer than RECHECK between looks. (A wait once
    slept a whole second here.)
    """
    from jobkit.stores.sqlite import waker as waker_module

    wal = tmp_path / "jobs.sqlite-wal"
    wal.write_bytes(b"")
    connection = _LateCommit()
    naps: list[float] = []
    real_select = waker_module.select.select

    def recording_select(read: Any, write: Any, error: Any, timeout: float) -> Any:
        naps.append(timeout)
        if len(naps) == 3:  # well past the first write's settling: now the commit shows
            connection.version = 2
        return real_select(read, write, error, timeout)

    monkeypatch.setattr(waker_module.select, "select", recording_select)
    monkeypatch.setattr(waker_module, "SETTLE", 0.0)  # the settling looks end before the commit shows
    late = SqliteWaker(lambda: connection, str(wal))  # type: ignore[arg-type, return-value]
    try:
        assert late.watching
        with wal.open("ab") as f:  # the write whose inotify event the first sleep reads
            f.write(b"frame")
        assert late.wait(60.0) is True, "the late commit was never seen"
    finally:
        late.close()
    assert max(naps) <= waker_module.RECHECK, naps
