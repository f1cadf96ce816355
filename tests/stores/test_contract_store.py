"""The Store contract on the store itself: its waker, health, the context manager, the protocol, threads.

Every test here runs on MemoryStore and on SqliteStore (the ``store`` fixture).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import jobkit
from jobkit.model import (
    Complete,
    JobStatus,
)
from jobkit.store import Store
from tests.stores.contract import at, snapshot
from tests.support import T0, TIMEOUT, make_job


# -- waking: the store's waker ----------------------------------------------------------
def test_a_waker_sleeps_through_reads_and_times_out(store: Store) -> None:
    store.add([make_job("a")])
    waker = store.waker()
    try:
        store.get("a")
        store.list_jobs()
        store.counts()
        store.claim(limit=1, now=at(-1), token="t", lock_until=at(30))  # nothing due: no write
        assert waker.wait(0.05) is False
    finally:
        waker.close()


def test_a_waker_wakes_when_another_thread_commits(store: Store) -> None:
    waker = store.waker()
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(store.add, [make_job("a")]).result()
        assert waker.wait(TIMEOUT) is True
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: store.claim(limit=1, now=T0, token="t", lock_until=at(30))).result()
        assert waker.wait(TIMEOUT) is True
        assert waker.wait(0.05) is False, "one commit woke it twice"
    finally:
        waker.close()


def test_a_waker_wakes_on_a_ring_and_ignores_commits_when_told(store: Store) -> None:
    waker = store.waker()
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(store.add, [make_job("a")]).result()
        assert waker.wait(0.05, commits=False) is False
        waker.ring()
        assert waker.wait(TIMEOUT, commits=False) is True
    finally:
        waker.close()


# -- lifecycle ------------------------------------------------------------------------
def test_health_is_ok_with_a_message(store: Store) -> None:
    ok, message = store.health()
    assert ok is True
    assert message


def test_store_is_a_context_manager_returning_itself(store: Store) -> None:
    with store as entered:
        assert entered is store


def test_store_fits_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.shared is not isinstance(store, jobkit.MemoryStore)


def test_threads_claim_each_job_exactly_once(store: Store) -> None:
    ids = [f"job-{i:03d}" for i in range(120)]
    store.add([make_job(i) for i in ids])
    workers = 4
    start = threading.Barrier(workers)

    def work(worker: int) -> list[str]:
        start.wait(timeout=10)
        mine: list[str] = []
        for round_ in range(len(ids)):
            token = f"w{worker}-{round_}"
            batch = store.claim(limit=3, now=T0, token=token, lock_until=at(30))
            if not batch:
                return mine
            assert store.finish([Complete(j.id, token, "null", at=at(1)) for j in batch]) == [True] * len(batch)
            mine.extend(j.id for j in batch)
        return mine

    with ThreadPoolExecutor(workers) as pool:
        claimed = [job_id for done in pool.map(work, range(workers)) for job_id in done]
    assert sorted(claimed) == ids
    assert store.counts()[JobStatus.COMPLETED] == len(ids)
    assert all(j.attempt_count == 1 for j in snapshot(store))
