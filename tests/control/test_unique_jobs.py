"""Unique jobs: ``later(unique_key=...)``, ``later_many(unique_keys=...)`` and ``jobs.job(unique=True)`` (every store).

While a job of a name holding a key is pending or running, later() with that key writes
nothing and returns that job's id (told as ``deduplicated``); once it ends, a new job is
made. Workers run in threads; handlers and tests meet on Events, and conditions are
polled with a deadline. The race of real processes adding one key at once is at the end.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import jobkit
from jobkit.events import Event
from jobkit.model import Lease, Postpone, Retry
from jobkit.store import Store
from jobkit.worker import tick
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    T0,
    TIMEOUT,
    Background,
    Gate,
    burst,
    collect,
    status_is,
    wait_until,
)
from tests.support import record as get

jobs = jobkit.Registry()


@jobs.job(name="unique.ship", max_attempts=1)
def ship(params: int, ctx: jobkit.Context) -> int:
    return params


@jobs.job(name="unique.other")
def other(params: int, ctx: jobkit.Context) -> int:
    return params


@jobs.job(name="unique.broken", max_attempts=1)
def broken(params: int, ctx: jobkit.Context) -> int:
    raise RuntimeError(f"broken: {params}")


@jobs.job(name="unique.digest", unique=True)
def digest(params: dict[str, int], ctx: jobkit.Context) -> int:
    return sum(params.values())


BAD_KEYS = [5, "", "x" * 201, b"bytes", 1.5, ["k"]]
BAD_KEY_LISTS = ["ab", b"ab", ["a"], ["a", "b", "c"], []]  # for two params: a bare str, and the wrong lengths


@pytest.fixture
def heard() -> Iterator[list[Event]]:
    """The enqueued and deduplicated events of this module's jobs, in order."""
    events: list[Event] = []
    unsubscribe = jobs.hooks.subscribe(events.append, "enqueued", "deduplicated")
    yield events
    unsubscribe()


def told(events: list[Event]) -> list[tuple[str, str]]:
    return [(event.kind, event.job_id) for event in events]


def total(store: Store) -> int:
    return sum(store.counts().values())


def params_key(data: object) -> str:
    """The key jobs.job(unique=True) gives params, worked out here: a SHA-256 of their JSON with keys sorted."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "params:" + hashlib.sha256(text.encode()).hexdigest()


# -- the rule --------------------------------------------------------------------------
def test_a_key_a_pending_job_holds_gives_that_job_s_id_and_writes_nothing(store: Store, heard: list[Event]) -> None:
    first = ship.later(1, store, unique_key="order-7")
    holder = get(store, first)
    assert holder.unique_key == "order-7" and holder.status is PENDING
    again = ship.later(
        2, store, unique_key="order-7", delay=3600, priority=9, queue="elsewhere", max_attempts=5, correlation_id="c"
    )
    assert again == first
    assert total(store) == 1
    assert get(store, first) == holder, "the holder keeps its own params, time, priority and queue"
    assert told(heard) == [("enqueued", first), ("deduplicated", first)]
    assert {event.job_name for event in heard} == {ship.name}


def test_keys_are_per_job_name_and_a_job_without_a_key_is_never_deduplicated(store: Store) -> None:
    ids = [
        ship.later(1, store, unique_key="k"),
        other.later(1, store, unique_key="k"),  # another name: another key
        ship.later(1, store, unique_key="k2"),
        ship.later(1, store),
        ship.later(1, store),
    ]
    assert len(set(ids)) == 5 and total(store) == 5
    assert [get(store, job_id).unique_key for job_id in ids] == ["k", "k", "k2", None, None]
    assert ship.later(9, store, unique_key="k") == ids[0] and other.later(9, store, unique_key="k") == ids[1]


def test_a_running_job_holds_its_key_and_once_it_completes_a_new_job_is_made(store: Store) -> None:
    gate = Gate()
    local = jobkit.Registry()
    events: list[Event] = []
    local.on("enqueued", "deduplicated")(events.append)

    @local.job(name="unique.held", max_attempts=1)
    def held(params: int, ctx: jobkit.Context) -> int:
        gate.enter()
        return params

    first = held.later(1, store, unique_key="k")
    with Background(store, local):
        assert gate.started.wait(TIMEOUT), "the holder never started"
        assert get(store, first).status is RUNNING
        assert held.later(2, store, unique_key="k") == first, "a running job holds its key"
        gate.open.set()
        wait_until(status_is(store, first, COMPLETED), "the holder to complete")
        second = held.later(3, store, unique_key="k")
        assert second != first
        wait_until(status_is(store, second, COMPLETED), "the new job to complete")
    assert gate.runs == 2 and total(store) == 2
    assert told(events) == [("enqueued", first), ("deduplicated", first), ("enqueued", second)]


def test_a_failed_or_cancelled_holder_frees_its_key(store: Store) -> None:
    failed = broken.later(1, store, unique_key="k")
    assert burst(store, jobs).failed == 1
    assert get(store, failed).status is FAILED
    after_failure = broken.later(2, store, unique_key="k")
    assert after_failure != failed
    assert jobkit.cancel(store, after_failure).status is CANCELLED
    after_cancel = broken.later(3, store, unique_key="k")
    assert after_cancel not in (failed, after_failure)
    assert broken.later(4, store, unique_key="k") == after_cancel
    assert total(store) == 3
    assert [get(store, job_id).unique_key for job_id in (failed, after_failure, after_cancel)] == ["k"] * 3


def test_a_job_pending_again_after_a_retry_a_snooze_a_give_back_or_a_lost_lease_still_holds_its_key(
    store: Store,
) -> None:
    job_id = other.later(1, store, unique_key="k")  # three attempts
    at = store.now()
    step = iter(range(1, 100))

    def claim() -> str:
        now = at + timedelta(seconds=next(step))
        token = f"w{now.timestamp()}"
        assert store.claim_job(job_id, now=now, token=token, lock_until=now + timedelta(seconds=5)) is not None
        assert other.later(2, store, unique_key="k") == job_id, "a running job holds its key"
        return token

    token = claim()
    now = at + timedelta(seconds=next(step))
    assert store.finish([Retry(job_id, token, "boom", None, at=now, run_at=now)]) == [True]
    assert get(store, job_id).status is PENDING and other.later(3, store, unique_key="k") == job_id

    token = claim()
    now = at + timedelta(seconds=next(step))
    assert store.finish([Postpone(job_id, token, at=now, run_at=now + timedelta(minutes=5))]) == [True]
    assert get(store, job_id).status is PENDING and other.later(4, store, unique_key="k") == job_id

    token = claim()
    assert store.release([Lease(job_id, token)], now=at + timedelta(seconds=next(step))) == [True]
    assert get(store, job_id).status is PENDING and other.later(5, store, unique_key="k") == job_id

    claim()
    reset = store.reset_expired(now=at + timedelta(minutes=1))
    assert reset.retried == [job_id]
    assert get(store, job_id).status is PENDING and other.later(6, store, unique_key="k") == job_id
    assert total(store) == 1 and get(store, job_id).params == "1"


# -- later_many ---------------------------------------------------------------------------
def test_later_many_dedupes_each_item_by_its_own_key(store: Store, heard: list[Event]) -> None:
    held = ship.later(0, store, unique_key="a")
    ids = ship.later_many([1, 2, 3, 4, 5], store, unique_keys=("a", None, "b", "b", None))
    assert ids[0] == held, "a key held before the call"
    assert ids[2] == ids[3], "items sharing a key make one job"
    assert len({held, ids[1], ids[2], ids[4]}) == 4 and total(store) == 4
    assert get(store, ids[2]).params == "3", "the first item of a key is the one made"
    assert [get(store, job_id).unique_key for job_id in ids] == ["a", None, "b", "b", None]
    assert told(heard) == [
        ("enqueued", held),
        ("deduplicated", held),
        ("enqueued", ids[1]),
        ("enqueued", ids[2]),
        ("deduplicated", ids[2]),
        ("enqueued", ids[4]),
    ]


def test_later_many_whose_items_all_share_a_key_makes_one_job_and_gives_its_id_to_each(store: Store) -> None:
    ids = ship.later_many([1, 2, 3], store, unique_keys=["k"] * 3)
    assert len(set(ids)) == 1 and total(store) == 1
    assert get(store, ids[0]).params == "1"
    assert ship.later_many([4, 5], store, unique_keys=["k", "j"])[0] == ids[0]
    assert total(store) == 2


# -- retry by hand -----------------------------------------------------------------------------
def test_retry_leaves_a_failed_job_whose_key_another_live_job_holds_and_of_two_sharing_a_key_sends_the_first(
    store: Store,
) -> None:
    failed = broken.later(1, store, unique_key="k")
    burst(store, jobs)
    holder = broken.later(2, store, unique_key="k")
    before = get(store, failed)
    assert before.status is FAILED and get(store, holder).status is PENDING
    assert jobkit.retry(store, [failed]) == [], "skipped: its key is held by a pending job"
    assert get(store, failed) == before
    assert broken.later(3, store, unique_key="k") == holder

    jobkit.cancel(store, holder)  # now no live job holds the key
    assert jobkit.retry(store, [holder, failed]) == [holder], "two live jobs never share a key"
    assert get(store, holder).status is PENDING and get(store, failed) == before
    assert broken.later(4, store, unique_key="k") == holder
    assert total(store) == 2


def test_retry_all_or_nothing_refuses_a_failed_job_whose_key_another_live_job_holds(store: Store) -> None:
    """all_or_nothing promises that nothing is retried unless every job given can be.

    A failed job whose key a pending job holds cannot be (the store skips it), so the
    call must refuse the lot, as it does a job in the wrong status, rather than retry the others.
    """
    free = broken.later(1, store)
    blocked = broken.later(2, store, unique_key="k")
    burst(store, jobs)
    holder = broken.later(3, store, unique_key="k")
    with pytest.raises(jobkit.JobStateError, match=blocked):
        jobkit.retry(store, [free, blocked], all_or_nothing=True)
    assert get(store, free).status is FAILED, "all or nothing: nothing was to be retried"
    assert get(store, blocked).status is FAILED and get(store, holder).status is PENDING


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", BAD_KEYS, ids=repr)
def test_a_bad_unique_key_is_a_validation_error_naming_it_and_writes_nothing(
    store: Store, heard: list[Event], bad: object
) -> None:
    ship.later(0, store, unique_key="fine")
    before, told_before = total(store), list(heard)
    with pytest.raises(jobkit.ValidationError, match=r"^unique_key must be a string of 1 to 200") as refused:
        ship.later(1, store, unique_key=bad)  # type: ignore[arg-type]
    assert refused.value.value == bad
    with pytest.raises(jobkit.ValidationError, match=r"^unique_keys\[1\]: unique_key must be"):
        ship.later_many([1, 2], store, unique_keys=["ok", bad])  # type: ignore[list-item]
    with pytest.raises(jobkit.ValidationError, match=r"unique_key"):
        digest.later({"a": 1}, store, unique_key=bad)  # type: ignore[arg-type]
    assert total(store) == before and heard == told_before
    existing = {job.id for job in store.list_jobs()}
    assert ship.later(1, store, unique_key="ok") not in existing, "no refused call left a job holding 'ok'"


@pytest.mark.parametrize("bad", BAD_KEY_LISTS, ids=repr)
def test_unique_keys_that_are_not_one_key_a_params_are_a_validation_error_and_write_nothing(
    store: Store, heard: list[Event], bad: Any
) -> None:
    with pytest.raises(jobkit.ValidationError, match=r"^unique_keys must hold one key \(or None\) for each of the 2"):
        ship.later_many([1, 2], store, unique_keys=bad)
    assert total(store) == 0 and heard == []


def test_a_key_of_200_characters_of_any_script_is_kept_as_it_is(store: Store) -> None:
    keys = ["x" * 200, "ключ-🙂", " spaces and\ttabs ", "'; DROP TABLE jobs; --"]
    ids = ship.later_many(list(range(len(keys))), store, unique_keys=keys)
    assert len(set(ids)) == len(keys)
    assert [get(store, job_id).unique_key for job_id in ids] == keys
    assert [ship.later(9, store, unique_key=key) for key in keys] == ids


# -- jobs.job(unique=True) ------------------------------------------------------------------------
def test_a_unique_spec_keys_each_job_by_its_params_whatever_their_order(store: Store, heard: list[Event]) -> None:
    first = digest.later({"a": 1, "b": 2}, store)
    assert get(store, first).unique_key == params_key({"a": 1, "b": 2})
    assert digest.later({"b": 2, "a": 1}, store) == first, "equal params in another key order"
    assert get(store, first).params == '{"a":1,"b":2}', "nothing of the second call was written"
    other_params = digest.later({"a": 1, "b": 3}, store)
    empty = digest.later({}, store)
    assert len({first, other_params, empty}) == 3 and total(store) == 3
    assert told(heard) == [
        ("enqueued", first),
        ("deduplicated", first),
        ("enqueued", other_params),
        ("enqueued", empty),
    ]


def test_a_unique_spec_takes_a_key_given_instead_of_its_params_one(store: Store) -> None:
    by_params = digest.later({"a": 1}, store)
    mine = digest.later({"a": 1}, store, unique_key="mine")
    assert mine != by_params and get(store, mine).unique_key == "mine"
    assert digest.later({"z": 0}, store, unique_key="mine") == mine
    ids = digest.later_many([{"a": 1}, {"q": 1}, {"q": 2}], store, unique_keys=[None, None, "mine"])
    assert ids[0] == by_params and ids[2] == mine
    assert get(store, ids[1]).unique_key == params_key({"q": 1})
    assert total(store) == 3


def test_a_unique_spec_makes_a_new_job_once_the_one_of_equal_params_completed(store: Store) -> None:
    first = digest.later({"a": 1}, store)
    assert burst(store, jobs).completed == 1
    second = digest.later({"a": 1}, store)
    assert second != first and get(store, second).status is PENDING
    assert digest.later({"a": 1}, store) == second


def test_schedules_never_carry_a_key_even_of_a_unique_spec(store: Store) -> None:
    local = jobkit.Registry()

    @local.job(name="unique.tock", unique=True)
    def tock(params: int, ctx: jobkit.Context) -> int:
        return params

    jobkit.schedule(store, tock, "* * * * *", 1, name="every-minute", clock=lambda: T0)
    for minutes in (1, 2):
        report = tick(store, local, limit=0, now=T0 + timedelta(minutes=minutes))
        assert report.cron_enqueued == 1
    fired = store.list_jobs(name=tock.name)
    assert len(fired) == 2 and {job.unique_key for job in fired} == {None}
    assert {job.status for job in fired} == {PENDING}
    keyed = tock.later(1, store)
    assert keyed not in {job.id for job in fired} and get(store, keyed).unique_key == params_key(1)


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_on_the_callers_connection_a_key_held_is_seen_and_one_added_exists_only_at_the_commit(store: Store) -> None:
    assert isinstance(store, jobkit.PostgresStore)
    holder = ship.later(0, store, unique_key="k")
    with psycopg.connect(store.dsn) as conn:
        assert ship.later(1, store, unique_key="k", connection=conn) == holder, "a committed holder"
        inside = ship.later(2, store, unique_key="fresh", connection=conn)
        assert ship.later(3, store, unique_key="fresh", connection=conn) == inside, "its own transaction's job"
        assert store.get(inside) is None
        conn.rollback()
    assert store.get(inside) is None and total(store) == 1
    with psycopg.connect(store.dsn) as conn:
        committed = ship.later(4, store, unique_key="fresh", connection=conn)
        conn.commit()
    assert get(store, committed).unique_key == "fresh" and ship.later(5, store, unique_key="fresh") == committed
    assert total(store) == 2


# -- a race of processes ----------------------------------------------------------------------
PROCESSES = 4
CALLS = 20
RACE_TIMEOUT = 60.0  # seconds a process may wait at the barrier, and the race may take


def enqueue_racing(target: str, options: dict[str, Any], barrier: Any, results: Any) -> None:
    """In a child process: once all are at *barrier*, later(unique_key="same") CALLS times; put (pid, ids)."""
    with jobkit.open_store(target, create=False, **options) as store:
        barrier.wait(RACE_TIMEOUT)
        ids = [ship.later(n, store, unique_key="same") for n in range(CALLS)]
    results.put((os.getpid(), ids))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_processes_adding_one_key_at_the_same_instant_leave_one_job_and_all_get_its_id(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    made: Store
    if kind == "sqlite":
        target, options = str(tmp_path / "jobs.sqlite"), {}
        made = jobkit.SqliteStore(target)
    else:
        pg: jobkit.PostgresStore = request.getfixturevalue("pg_schema_store")
        made, target, options = pg, pg.dsn, {"schema": pg.schema}
    context = multiprocessing.get_context("spawn")  # no fork of a process holding connections
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    procs = [
        context.Process(target=enqueue_racing, args=(target, options, barrier, results), name=f"enqueuer-{i}")
        for i in range(PROCESSES)
    ]
    try:
        for proc in procs:
            proc.start()
        reports = collect(results, procs, RACE_TIMEOUT)
        for proc in procs:
            proc.join(RACE_TIMEOUT)
            assert proc.exitcode == 0, f"{proc.name} (pid {proc.pid}) exited with {proc.exitcode}"
        stored = made.list_jobs(limit=1_000)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()  # by its pid
                proc.join(10)
        if kind == "sqlite":
            made.close()

    assert set(reports) == {proc.pid for proc in procs}, "every process reported"
    assert len(stored) == 1, f"{len(stored)} jobs were made for one key"
    (job,) = stored
    assert (job.job_name, job.unique_key, job.status) == (ship.name, "same", PENDING)
    given = [job_id for ids in reports.values() for job_id in ids]
    assert len(given) == PROCESSES * CALLS and set(given) == {job.id}, "a process was given another id"
