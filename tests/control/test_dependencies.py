"""Dependencies: ``later(..., after=[job_id, ...])``: jobs that run once those they name completed (every store).

A job waiting for its parents is pending with ``depends_on`` and ``waiting_for``; no claim
takes it until every parent completed, and when one fails or is cancelled it ends
cancelled naming that parent, and its own dependents after it. Most tests drive the
store's verbs (claim_job, finish, release, reset_expired) at times taken from the store's
clock, so that PostgreSQL's times are never mixed with this host's; the rest run one-pass
ticks or a worker in a thread. Handlers and tests meet on Events, conditions are polled
with a deadline, and nothing sleeps to wait.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

import jobkit
from jobkit.errors import UnknownDependency
from jobkit.model import (
    CANCELLED_WHILE_LOST,
    Cancel,
    Complete,
    Fail,
    JobRecord,
    JobStatus,
    Lease,
    Retry,
    worker_lost,
)
from jobkit.store import Store
from jobkit.worker import Report, tick
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    TIMEOUT,
    Background,
    Pair,
    Total,
    make_job,
    status_is,
    wait_until,
)
from tests.support import record as get

SECOND = timedelta(seconds=1)
LOCK = timedelta(seconds=30)

jobs = jobkit.Registry()
BROKEN = threading.Event()  # while set, deps.flaky raises
seen: list[tuple[tuple[str, ...], list[int], list[Total]]] = []  # what deps.gather read of its parents


@jobs.job(name="deps.plain", max_attempts=1)
def plain(n: int, ctx: jobkit.Context) -> int:
    return n


@jobs.job(name="deps.retried", max_attempts=3, retry_backoff=0)
def retried(n: int, ctx: jobkit.Context) -> int:
    return n


@jobs.job(name="deps.total", max_attempts=1)
def total(pair: Pair, ctx: jobkit.Context) -> Total:
    return Total(pair.a + pair.b)


@jobs.job(name="deps.flaky", max_attempts=1)
def flaky(n: int, ctx: jobkit.Context) -> int:
    if BROKEN.is_set():
        raise RuntimeError(f"broken: {n}")
    return n


@jobs.job(name="deps.gather", max_attempts=1)
def gather(n: int, ctx: jobkit.Context) -> int:
    numbers, totals = ctx.results(plain), ctx.results(total)
    seen.append((ctx.after, numbers, totals))
    return n + sum(numbers) + sum(t.sum for t in totals)


# The three stages of a pipeline: fetch a page, measure it, report the sizes.
@jobs.job(name="deps.fetch", max_attempts=1)
def fetch(url: str, ctx: jobkit.Context) -> str:
    return f"<html>{url}</html>"


@jobs.job(name="deps.measure", max_attempts=1)
def measure(url: str, ctx: jobkit.Context) -> int:
    [page] = ctx.results(fetch)
    assert url in page, f"{url} measured the page of another fetch: {page}"
    return len(page)


@jobs.job(name="deps.report", max_attempts=1)
def report(title: str, ctx: jobkit.Context) -> str:
    return f"{title}: {sum(ctx.results(measure))} characters"


@pytest.fixture(autouse=True)
def _fresh() -> None:
    BROKEN.clear()
    seen.clear()


# -- helpers -------------------------------------------------------------------------------
def claim(store: Store, job_id: str, token: str, now: datetime) -> JobRecord:
    held = store.claim_job(job_id, now=now, token=token, lock_until=now + LOCK)
    assert held is not None, f"{job_id} could not be claimed"
    return held


def claimable(store: Store, job_id: str) -> bool:
    """Whether a claim of *job_id* alone takes it now (it is then running under the token "probe")."""
    now = store.now()
    return store.claim_job(job_id, now=now, token="probe", lock_until=now + LOCK) is not None


def complete(store: Store, job_id: str, result: str = "1") -> datetime:
    """Claim *job_id* and complete it a second on; the time it completed."""
    now = store.now()
    claim(store, job_id, f"w:{job_id}", now)
    assert store.finish([Complete(job_id, f"w:{job_id}", result, at=now + SECOND)]) == [True]
    return now + SECOND


def fail(store: Store, job_id: str) -> datetime:
    now = store.now()
    claim(store, job_id, f"w:{job_id}", now)
    assert store.finish([Fail(job_id, f"w:{job_id}", "ValueError: no", None, at=now + SECOND)]) == [True]
    return now + SECOND


def jobs_in(store: Store) -> int:
    return sum(store.counts().values())


def drain(store: Store, most: int = 20) -> Report:
    """Tick until a tick claims nothing (at most *most* ticks); what they did, summed."""
    done = Report()
    for _ in range(most):
        step = tick(store, jobs, limit=10)
        if step.claimed == 0:
            return done
        for field in ("claimed", "completed", "failed", "cancelled", "retried"):
            setattr(done, field, getattr(done, field) + getattr(step, field))
    pytest.fail(f"still claiming jobs after {most} ticks")


def ended_because(parent: str, status: JobStatus) -> str:
    return f"cancelled: job {parent}, which it runs after, ended {status.value}"


def is_cancelled_by(store: Store, child: str, parent: str, status: JobStatus, at: datetime) -> None:
    job = get(store, child)
    assert (job.status, job.error) == (CANCELLED, ended_because(parent, status)), f"{child}: {job}"
    assert job.completed_at == at, "a dependent ends when the job it runs after ended"
    assert job.attempt_count == 0 and job.worker_id is None


# -- waiting ---------------------------------------------------------------------------------
def test_a_child_waits_pending_and_unclaimed_until_its_parent_completes(store: Store) -> None:
    parent = plain.later(1, store)
    child = plain.later(2, store, after=[parent])
    waiting = get(store, child)
    assert (waiting.status, waiting.depends_on, waiting.waiting_for) == (PENDING, (parent,), 1)
    assert get(store, parent).depends_on == () and get(store, parent).waiting_for == 0

    now = store.now()
    assert store.claim_job(child, now=now, token="t", lock_until=now + LOCK) is None, "claim_job took a waiting job"
    taken = store.claim(limit=5, now=now, token="t", lock_until=now + LOCK)
    assert [job.id for job in taken] == [parent], "a claim took a waiting job"
    assert store.claim(limit=5, now=now + timedelta(days=1), token="u", lock_until=now + LOCK) == []
    assert store.finish([Complete(parent, "t", "1", at=now + SECOND)]) == [True]

    ready = get(store, child)
    assert (ready.status, ready.depends_on, ready.waiting_for) == (PENDING, (parent,), 0)
    assert ready.scheduled_for == waiting.scheduled_for
    assert [job.id for job in store.claim(limit=5, now=store.now(), token="v", lock_until=now + LOCK)] == [child]


def test_ticks_and_a_worker_run_a_child_only_after_its_parent(store: Store) -> None:
    parent = plain.later(1, store, delay=3600)
    child = plain.later(2, store, after=[parent])
    assert tick(store, jobs) == Report(), "the child was claimed while its parent waits to be due"
    assert get(store, child).status is PENDING
    with Background(store, jobs, poll_interval=0.02):
        assert jobkit.execute(store, jobs, parent).value == 1
        wait_until(status_is(store, child, COMPLETED), "the child to run once its parent completed")
    assert plain.result_of(child, store).value == 2


def test_waiting_jobs_are_neither_due_nor_backlog_nor_oldest_pending_but_count_and_list_as_pending(
    store: Store,
) -> None:
    parent = plain.later(1, store, delay=3600)
    children = plain.later_many([2, 3], store, after=[parent])
    grandchild = gather.later(4, store, after=children)
    due_at = get(store, parent).scheduled_for
    assert all(get(store, job_id).scheduled_for < due_at for job_id in [*children, grandchild])

    assert store.next_due() == due_at, "a waiting job counted as due"
    assert store.next_due(names=[plain.name]) == due_at and store.next_due(names=[gather.name]) is None
    backlog = store.backlog(now=store.now())
    assert (backlog.due, backlog.scheduled, backlog.oldest_due) == (0, 1, None)
    assert backlog.next_scheduled is not None and backlog.next_scheduled.id == parent
    assert store.summary(since=store.now() - timedelta(hours=1)).oldest_pending == due_at
    assert store.counts()[PENDING] == 4 and jobs_in(store) == 4
    assert store.summary(since=store.now()).by_name[plain.name][PENDING] == 3
    everyone = sorted([parent, *children, grandchild], reverse=True)
    assert [job.id for job in store.list_jobs(status=PENDING)] == everyone
    assert [job.id for job in store.list_jobs(status=PENDING, name=plain.name)] == everyone[1:]
    assert [job.id for job in store.list_jobs(status=PENDING, name=gather.name)] == [grandchild]
    assert {q.name: q.counts[PENDING] for q in jobkit.queues(store)} == {"default": 4}
    assert [job.waiting_for for job in store.list_jobs()] == [2, 1, 1, 0]


def test_a_diamond_runs_its_bottom_once_both_sides_completed_reading_their_results_in_after_order(
    store: Store,
) -> None:
    top = plain.later(1, store)
    left = total.later(Pair(1, 2), store, after=[top])
    right = total.later(Pair(3, 4), store, after=[top])
    bottom = gather.later(100, store, after=[right, top, left])
    assert [get(store, j).waiting_for for j in (top, left, right, bottom)] == [0, 1, 1, 3]

    assert complete(store, top, "1")
    assert [get(store, j).waiting_for for j in (left, right, bottom)] == [0, 0, 2]
    assert tick(store, jobs, limit=1) == Report(claimed=1, completed=1)
    assert [get(store, j).status for j in (left, right, bottom)] == [COMPLETED, PENDING, PENDING]
    assert get(store, bottom).waiting_for == 1 and not claimable(store, bottom)
    assert tick(store, jobs, limit=1) == Report(claimed=1, completed=1)
    assert get(store, bottom).waiting_for == 0
    assert drain(store).completed == 1
    assert seen == [((right, top, left), [1], [Total(7), Total(3)])], "results typed, in after order, of that spec"
    assert all(type(t) is Total for t in seen[0][2])
    assert gather.result_of(bottom, store).value == 100 + 1 + 7 + 3


def test_ctx_after_and_results_for_a_job_that_runs_after_none_or_a_job_already_completed(store: Store) -> None:
    alone = gather.later(1, store)
    assert drain(store).completed == 1
    assert seen == [((), [], [])]
    done = plain.later(5, store)
    assert drain(store).completed == 1
    child = gather.later(2, store, after=[done, done])
    assert (get(store, child).waiting_for, get(store, child).depends_on) == (0, (done,)), "counted once, not waited for"
    assert store.backlog(now=store.now()).due == 1 and store.next_due(names=[gather.name]) is not None
    assert drain(store).completed == 1
    assert seen[1] == ((done,), [5], [])
    assert gather.result_of(alone, store).value == 1 and gather.result_of(child, store).value == 7


def test_a_child_after_parents_some_completed_waits_only_for_the_rest_each_counted_once(store: Store) -> None:
    done = plain.later(1, store)
    complete(store, done)
    first, second = plain.later_many([2, 3], store)
    child = plain.later(4, store, after=[first, done, first, second, first])
    job = get(store, child)
    assert (job.depends_on, job.waiting_for) == ((first, done, second), 2)
    complete(store, first)
    assert get(store, child).waiting_for == 1 and not claimable(store, child)
    complete(store, second)
    assert get(store, child).waiting_for == 0 and claimable(store, child)


def test_later_many_after_gives_every_job_the_same_parents(store: Store) -> None:
    a, b = plain.later_many([1, 2], store)
    children = plain.later_many([3, 4, 5], store, after=[a, b])
    assert [(get(store, c).depends_on, get(store, c).waiting_for) for c in children] == [((a, b), 2)] * 3
    complete(store, a)
    at = fail(store, b)
    for child in children:
        is_cancelled_by(store, child, b, FAILED, at)


def test_a_parent_retried_or_snoozed_keeps_its_children_waiting(store: Store) -> None:
    parent = retried.later(1, store)
    child = plain.later(2, store, after=[parent])
    now = store.now()
    claim(store, parent, "w:1", now)
    assert store.finish([Retry(parent, "w:1", "OSError: later", None, at=now + SECOND, run_at=now + SECOND)]) == [True]
    assert (get(store, child).status, get(store, child).waiting_for) == (PENDING, 1)
    claim(store, parent, "w:2", now + 2 * SECOND)
    assert store.release([Lease(parent, "w:2")], now=now + 3 * SECOND) == [True]
    reset_at = now + 4 * SECOND
    claim(store, parent, "w:3", reset_at)
    assert store.reset_expired(now=reset_at + LOCK + SECOND).retried == [parent], "lost with attempts left"
    assert (get(store, child).status, get(store, child).waiting_for) == (PENDING, 1)
    assert not claimable(store, child)
    complete(store, parent)
    assert (get(store, child).status, get(store, child).waiting_for) == (PENDING, 0)
    assert claimable(store, child)


# -- when a parent fails or is cancelled ------------------------------------------------------
def _handler_fails(store: Store, parent: str) -> datetime:
    return fail(store, parent)


def _handler_cancels(store: Store, parent: str) -> datetime:
    now = store.now()
    claim(store, parent, "w", now)
    jobkit.cancel(store, parent)
    assert store.finish([Cancel(parent, "w", "cancelled", at=now + SECOND)]) == [True]
    return now + SECOND


def _cancelled_pending(store: Store, parent: str) -> datetime:
    done = jobkit.cancel(store, parent)
    assert done.completed_at is not None
    return done.completed_at


def _lost_with_attempts_spent(store: Store, parent: str) -> datetime:
    now = store.now()
    claim(store, parent, "w", now)
    at = now + LOCK + SECOND
    assert store.reset_expired(now=at).failed == [parent]
    assert get(store, parent).error == worker_lost(1, 1)
    return at


def _lost_while_asked_to_cancel(store: Store, parent: str) -> datetime:
    now = store.now()
    claim(store, parent, "w", now)
    store.cancel(parent, now=now + SECOND)
    at = now + LOCK + SECOND
    assert store.reset_expired(now=at).cancelled == [parent]
    assert get(store, parent).error == CANCELLED_WHILE_LOST
    return at


def _lost_by_watch(store: Store, parent: str) -> datetime:
    now = store.now()
    claim(store, parent, "w", now)
    marks = [mark for mark in store.leases() if mark.job_id == parent]
    assert store.reset_unrenewed(marks, now=now + 2 * SECOND).failed == [parent]
    return now + 2 * SECOND


def _given_back_asked_to_cancel(store: Store, parent: str) -> datetime:
    now = store.now()
    claim(store, parent, "w", now)
    store.cancel(parent, now=now + SECOND)
    at = now + 2 * SECOND
    assert store.release([Lease(parent, "w")], now=at) == [True]
    return at


ENDINGS: dict[str, tuple[Callable[[Store, str], datetime], JobStatus]] = {
    "its handler fails": (_handler_fails, FAILED),
    "its handler stops as asked": (_handler_cancels, CANCELLED),
    "jobkit.cancel of it pending": (_cancelled_pending, CANCELLED),
    "its worker is lost with no attempts left": (_lost_with_attempts_spent, FAILED),
    "its worker is lost after a cancel was asked": (_lost_while_asked_to_cancel, CANCELLED),
    "its lease goes unrenewed with no attempts left": (_lost_by_watch, FAILED),
    "it is given back after a cancel was asked": (_given_back_asked_to_cancel, CANCELLED),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_when_a_parent_ends_unsuccessfully_its_children_and_theirs_end_cancelled_naming_their_own_parent(
    store: Store, ending: str
) -> None:
    end, status = ENDINGS[ending]
    parent = plain.later(1, store)
    other = plain.later(2, store)
    children = plain.later_many([3, 4], store, after=[other, parent])
    grandchild = gather.later(5, store, after=[children[1]])
    bystander = plain.later(6, store, after=[other])
    at = end(store, parent)
    assert get(store, parent).status is status and get(store, parent).completed_at == at
    for child in children:
        is_cancelled_by(store, child, parent, status, at)
    is_cancelled_by(store, grandchild, children[1], CANCELLED, at)
    assert (get(store, bystander).status, get(store, bystander).waiting_for) == (PENDING, 1)
    assert get(store, other).status is PENDING
    complete(store, other)
    assert [get(store, c).status for c in children] == [CANCELLED, CANCELLED], "a parent completing revived none"
    assert store.counts()[CANCELLED] == 3 + (status is CANCELLED)
    assert drain(store).completed == 1 and get(store, bystander).status is COMPLETED
    assert store.cancelling() == []


def test_a_failing_handler_cancels_its_dependents_through_ticks(store: Store) -> None:
    BROKEN.set()
    parent = flaky.later(1, store)
    child = plain.later(2, store, after=[parent])
    assert drain(store) == Report(claimed=1, failed=1)
    at = get(store, parent).completed_at
    assert at is not None and get(store, parent).error == "RuntimeError: broken: 1"
    is_cancelled_by(store, child, parent, FAILED, at)
    assert jobkit.attempts(store, child) == [], "it never ran"


@pytest.mark.parametrize("root_ends", [CANCELLED, FAILED])
def test_a_chain_of_five_is_cancelled_all_the_way_down(store: Store, root_ends: JobStatus) -> None:
    chain = [plain.later(0, store)]
    for n in range(1, 6):
        chain.append(plain.later(n, store, after=[chain[-1]]))
    assert [get(store, j).waiting_for for j in chain] == [0, 1, 1, 1, 1, 1]
    at = _cancelled_pending(store, chain[0]) if root_ends is CANCELLED else fail(store, chain[0])
    is_cancelled_by(store, chain[1], chain[0], root_ends, at)
    for parent, child in itertools.pairwise(chain[1:]):
        is_cancelled_by(store, child, parent, CANCELLED, at)
    assert store.counts()[PENDING] == 0 and drain(store) == Report()


def test_a_waiting_child_cancelled_by_hand_cancels_its_own_dependents_and_no_completion_revives_it(
    store: Store,
) -> None:
    parent = plain.later(1, store)
    child = plain.later(2, store, after=[parent])
    grandchild = plain.later(3, store, after=[child])
    cancelled = jobkit.cancel(store, child)
    assert cancelled.status is CANCELLED and cancelled.error == "cancelled" and cancelled.completed_at is not None
    is_cancelled_by(store, grandchild, child, CANCELLED, cancelled.completed_at)
    complete(store, parent)
    assert get(store, child) == cancelled


# -- adding after jobs already ended ---------------------------------------------------------
@pytest.mark.parametrize("status", [FAILED, CANCELLED])
def test_a_child_of_a_parent_already_failed_or_cancelled_is_added_cancelled_naming_it(
    store: Store, status: JobStatus
) -> None:
    parent = plain.later(1, store)
    if status is FAILED:
        fail(store, parent)
    else:
        jobkit.cancel(store, parent)
    waiting = plain.later(2, store)
    child = plain.later(3, store, after=[waiting, parent])
    job = get(store, child)
    assert (job.status, job.error, job.depends_on) == (CANCELLED, ended_because(parent, status), (waiting, parent))
    assert job.completed_at == job.created_at == job.updated_at and job.attempt_count == 0
    grandchildren = plain.later_many([4, 5], store, after=[child])
    for grandchild in grandchildren:
        added = get(store, grandchild)
        assert (added.status, added.error) == (CANCELLED, ended_because(child, CANCELLED))
    complete(store, waiting)
    assert get(store, child).status is CANCELLED and drain(store) == Report()
    assert store.counts()[CANCELLED] == 3 + (status is CANCELLED)


# -- refused ---------------------------------------------------------------------------------
def test_an_unknown_id_in_after_is_a_validation_error_naming_it_and_writes_nothing(store: Store) -> None:
    parent = plain.later(1, store)
    before = jobs_in(store)
    with pytest.raises(UnknownDependency, match="no-such-job") as refused:
        plain.later(2, store, after=[parent, "no-such-job"])
    assert isinstance(refused.value, jobkit.ValidationError) and isinstance(refused.value, ValueError)
    assert "nothing was written" in str(refused.value)
    with pytest.raises(jobkit.ValidationError, match=r"'gone-1', 'gone-2'"):
        plain.later_many([3, 4], store, after=["gone-2", parent, "gone-1"])
    with pytest.raises(UnknownDependency, match="no-such-job"):
        plain.later(5, store, after=["no-such-job"], unique_key="k")
    with pytest.raises(UnknownDependency):
        plain.later_many([6, 7], store, after=["no-such-job"], unique_keys=["a", None])
    assert jobs_in(store) == before == 1
    assert [job.id for job in store.list_jobs()] == [parent]
    assert get(store, parent).waiting_for == 0
    assert [job.id for job in store.claim(limit=5, now=store.now(), token="t", lock_until=store.now() + LOCK)] == [
        parent
    ]


@pytest.mark.parametrize("bad", ["a-job-id", [1], [""], ["ok", None], 7, {"a": 1}])
def test_bad_after_values_are_validation_errors_naming_after_and_write_nothing(store: Store, bad: Any) -> None:
    parent = plain.later(1, store)
    if isinstance(bad, list) and "ok" in bad:
        bad = [parent, None]
    with pytest.raises(jobkit.ValidationError, match=r"^after must") as refused:
        plain.later(2, store, after=bad)
    assert refused.value.value == bad
    with pytest.raises(jobkit.ValidationError, match=r"^after must"):
        plain.later_many([3, 4], store, after=bad)
    assert jobs_in(store) == 1


def test_after_empty_or_none_is_a_plain_job(store: Store) -> None:
    ids = [plain.later(1, store, after=[]), plain.later(2, store, after=None), *plain.later_many([3], store, after=())]
    assert [(get(store, j).depends_on, get(store, j).waiting_for) for j in ids] == [((), 0)] * 3
    assert drain(store).completed == 3


# -- retried by hand ---------------------------------------------------------------------------
def test_a_cancelled_child_retried_by_hand_waits_for_its_failed_parent_until_that_is_retried_and_completes(
    store: Store,
) -> None:
    BROKEN.set()
    parent = flaky.later(1, store)
    done = plain.later(2, store)
    assert drain(store) == Report(claimed=2, completed=1, failed=1)
    child = gather.later(3, store, after=[parent, done])
    assert get(store, child).status is CANCELLED

    assert jobkit.retry(store, [child]) == [child]
    again = get(store, child)
    assert (again.status, again.waiting_for, again.error, again.completed_at) == (PENDING, 1, None, None)
    assert drain(store) == Report() and not claimable(store, child), "its parent is still failed"
    assert store.next_due(names=[gather.name]) is None

    BROKEN.clear()
    assert jobkit.retry(store, [parent]) == [parent]
    assert get(store, child).waiting_for == 1
    assert drain(store) == Report(claimed=2, completed=2)
    assert seen == [((parent, done), [2], [])]
    assert gather.result_of(child, store).value == 5
    assert flaky.result_of(parent, store).value == 1


def test_a_child_and_its_parent_retried_together_run_in_order(store: Store) -> None:
    BROKEN.set()
    parent = flaky.later(1, store)
    child = plain.later(2, store, after=[parent])
    grandchild = plain.later(3, store, after=[child])
    assert drain(store).failed == 1
    assert [get(store, j).status for j in (child, grandchild)] == [CANCELLED, CANCELLED]
    BROKEN.clear()
    assert jobkit.retry(store, [grandchild, child, parent]) == [grandchild, child, parent]
    assert [get(store, j).waiting_for for j in (parent, child, grandchild)] == [0, 1, 1]
    assert tick(store, jobs, limit=10).claimed == 1
    assert tick(store, jobs, limit=10).claimed == 1
    assert (get(store, grandchild).status, get(store, grandchild).waiting_for) == (PENDING, 0)
    assert drain(store).completed == 1
    assert [get(store, j).status for j in (parent, child, grandchild)] == [COMPLETED] * 3


def test_a_child_cancelled_by_hand_after_its_parent_completed_is_retried_ready(store: Store) -> None:
    parent = plain.later(1, store)
    child = plain.later(2, store, after=[parent])
    jobkit.cancel(store, child)
    complete(store, parent)
    assert jobkit.retry(store, [child]) == [child]
    assert (get(store, child).status, get(store, child).waiting_for) == (PENDING, 0)
    assert claimable(store, child)


# -- purge -----------------------------------------------------------------------------------
def _dependency_rows(store: Store) -> int:
    """How many (parent, child) pairs the store keeps: its job_deps table, or MemoryStore's map."""
    if isinstance(store, jobkit.MemoryStore):
        return sum(len(children) for children in store._jobs.dependents.values())
    if isinstance(store, jobkit.SqliteStore):
        import apsw

        db = apsw.Connection(store.path)
        try:
            return int(next(db.execute("SELECT count(*) FROM job_deps"))[0])
        finally:
            db.close()
    import psycopg
    from psycopg import sql

    pg: Any = store
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(pg.schema, "job_deps"))).fetchone()
    assert row is not None
    return int(row[0])


def test_purging_a_completed_parent_and_child_leaves_no_trace_and_nothing_breaks(store: Store) -> None:
    parent = plain.later(1, store)
    child = gather.later(2, store, after=[parent])
    assert _dependency_rows(store) == 1
    assert drain(store).completed == 2
    later = store.now() + timedelta(hours=1)
    assert jobkit.purge(store, older_than=timedelta(0), clock=lambda: later) == 2
    assert store.get(parent) is None and store.get(child) is None and jobs_in(store) == 0
    assert _dependency_rows(store) == 0
    with pytest.raises(jobkit.JobNotFound):
        jobkit.attempts(store, child)
    with pytest.raises(UnknownDependency, match=parent):
        plain.later(3, store, after=[parent])
    assert jobs_in(store) == 0

    again = plain.later(4, store)
    after_again = gather.later(5, store, after=[again])
    assert get(store, after_again).waiting_for == 1
    assert drain(store).completed == 2 and gather.result_of(after_again, store).value == 9


def test_a_child_left_when_its_completed_parent_is_purged_is_retried_ready(store: Store) -> None:
    parent = plain.later(1, store)
    child = plain.later(2, store, after=[parent])
    complete(store, parent)
    jobkit.cancel(store, child)
    completed_at = get(store, parent).completed_at
    assert completed_at is not None
    assert jobkit.purge(store, older_than=timedelta(0), statuses=[COMPLETED], clock=lambda: completed_at + SECOND) == 1
    assert store.get(parent) is None
    assert jobkit.retry(store, [child]) == [child]
    assert (get(store, child).status, get(store, child).waiting_for) == (PENDING, 0), "a job gone counts as done"
    assert drain(store).completed == 1


def test_an_id_used_again_after_a_purge_is_not_settled_by_the_parent_of_the_job_that_had_it(store: Store) -> None:
    """store.add takes any id no job has: one a purged dependent had is free, and owes the old parent nothing."""
    parent, other = plain.later_many([1, 2], store)
    child = plain.later(3, store, after=[parent])
    cancelled_at = jobkit.cancel(store, child).completed_at
    assert cancelled_at is not None
    assert jobkit.purge(store, older_than=timedelta(0), clock=lambda: cancelled_at + SECOND) == 1
    reborn = make_job(child, job_name=plain.name, params="4", depends_on=(other,))
    assert store.add([reborn]) == [child]
    assert (get(store, child).depends_on, get(store, child).waiting_for) == ((other,), 1)
    fail(store, parent)
    assert (get(store, child).status, get(store, child).waiting_for) == (PENDING, 1), "settled by another's parent"
    complete(store, other)
    assert get(store, child).waiting_for == 0


# -- unique keys ---------------------------------------------------------------------------------
def test_a_child_deduplicated_by_its_unique_key_writes_nothing(store: Store) -> None:
    parent, elsewhere = plain.later_many([1, 2], store)
    holder = plain.later(3, store, unique_key="k", after=[parent])
    before = jobs_in(store)
    assert plain.later(4, store, unique_key="k", after=[elsewhere]) == holder
    assert plain.later_many([5, 6], store, unique_keys=["k", "k"], after=[elsewhere, parent]) == [holder, holder]
    assert jobs_in(store) == before == 3
    assert _dependency_rows(store) == 1
    assert (get(store, holder).depends_on, get(store, holder).waiting_for) == ((parent,), 1)
    fail(store, elsewhere)
    assert (get(store, holder).status, get(store, holder).waiting_for) == (PENDING, 1), "it does not run after that"
    complete(store, parent)
    assert get(store, holder).waiting_for == 0
    assert drain(store).completed == 1 and plain.result_of(holder, store).value == 3
    fresh = plain.later(7, store, unique_key="k", after=[parent])
    assert fresh != holder and get(store, fresh).waiting_for == 0, "the key is free once its holder ended"


def test_a_waiting_child_holds_its_unique_key_and_a_cancelled_one_frees_it(store: Store) -> None:
    parent = plain.later(1, store)
    holder = plain.later(2, store, unique_key="k", after=[parent])
    assert plain.later(3, store, unique_key="k") == holder
    at = fail(store, parent)
    is_cancelled_by(store, holder, parent, FAILED, at)
    fresh = plain.later(4, store, unique_key="k")
    assert fresh != holder and get(store, fresh).status is PENDING
    assert jobkit.retry(store, [holder]) == [], "another live job holds its key"


def test_a_child_whose_key_a_live_job_holds_is_deduplicated_even_when_its_parent_already_failed(
    store: Store,
) -> None:
    """later(unique_key=...): while a job holding the key is pending or running, nothing is written, its id returned."""
    holder = plain.later(1, store, unique_key="k")
    parent = plain.later(2, store)
    fail(store, parent)
    before = jobs_in(store)
    assert plain.later(3, store, unique_key="k", after=[parent]) == holder
    assert jobs_in(store) == before


def test_the_id_a_keyed_child_of_a_failed_parent_gets_is_the_job_written_for_it(store: Store) -> None:
    """Whichever way a store settles it, the id returned is the job that stands for the call: the live holder with
    nothing written, or the job written (cancelled, naming the parent). Never the holder's id for a job written."""
    holder = plain.later(1, store, unique_key="k")
    parent = plain.later(2, store)
    fail(store, parent)
    before = jobs_in(store)
    returned = plain.later(3, store, unique_key="k", after=[parent])
    written = jobs_in(store) - before
    if returned == holder:
        assert written == 0, "the holder's id came back, yet a job was written that no caller was told of"
        assert get(store, holder).status is PENDING
    else:
        assert written == 1
        job = get(store, returned)
        assert (job.status, job.error, job.unique_key) == (CANCELLED, ended_because(parent, FAILED), "k")


# -- a worker runs a pipeline --------------------------------------------------------------------
def test_a_worker_thread_runs_a_three_stage_pipeline_to_its_end(store: Store) -> None:
    urls = ["a.example", "bb.example", "ccc.example"]
    sizes = []
    for url in urls:
        page = fetch.later(url, store)
        sizes.append(measure.later(url, store, after=[page]))
    final = report.later("pages", store, after=sizes)
    assert get(store, final).waiting_for == 3
    # A poll interval longer than the wait: each stage is claimed as the one before it ends, not by a poll.
    with Background(store, jobs, concurrency=3, poll_interval=3 * TIMEOUT):
        value = report.wait(final, store, timeout=TIMEOUT)
    expected = sum(len(f"<html>{url}</html>") for url in urls)
    assert value == f"pages: {expected} characters"
    assert store.counts()[COMPLETED] == 7
    stages = [get(store, j) for j in (*sizes, final)]
    assert all(job.waiting_for == 0 and job.attempt_count == 1 for job in stages)


def test_the_async_forms_take_after_too(store: Store) -> None:
    parent = plain.later(1, store)

    async def enqueue() -> list[str]:
        return [
            await plain.later_async(2, store, after=[parent]),
            *await plain.later_many_async([3], store, after=[parent]),
        ]

    children = asyncio.run(enqueue())
    assert [get(store, c).waiting_for for c in children] == [1, 1]
    with pytest.raises(UnknownDependency):
        asyncio.run(plain.later_async(4, store, after=["no-such-job"]))
    complete(store, parent)
    assert drain(store).completed == 2


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_child_added_in_the_caller_s_transaction_waits_from_its_commit_and_a_rollback_leaves_nothing(
    store: Store,
) -> None:
    import psycopg

    parent = plain.later(1, store)
    pg: Any = store
    with psycopg.connect(pg.dsn) as conn:
        with conn.transaction(force_rollback=True):
            rolled = plain.later(2, store, after=[parent], connection=conn)
        assert store.get(rolled) is None and jobs_in(store) == 1
        assert _dependency_rows(store) == 0
        with conn.transaction():
            kept = plain.later(3, store, after=[parent], connection=conn)
            assert store.get(kept) is None
        with conn.transaction(), pytest.raises(UnknownDependency):
            plain.later(4, store, after=[rolled], connection=conn)
    assert (get(store, kept).status, get(store, kept).waiting_for) == (PENDING, 1)
    complete(store, parent)
    assert get(store, kept).waiting_for == 0 and claimable(store, kept)


# -- PostgreSQL: a parent ends while children are added -------------------------------------------
ROUNDS = 50


def _race(store: Store, ends: JobStatus) -> tuple[str, list[str]]:
    """A running parent ends (one thread) as children are added to it (another), both let go at once."""
    parent = plain.later(0, store)
    children: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2, timeout=TIMEOUT)
    now = store.now()
    claim(store, parent, "w", now)
    if ends is COMPLETED:
        ending: Complete | Fail = Complete(parent, "w", "1", at=now + SECOND)
    else:
        ending = Fail(parent, "w", "ValueError: no", None, at=now + SECOND)

    def finish_parent() -> None:
        try:
            start.wait()
            assert store.finish([ending]) == [True]
        except BaseException as exc:
            errors.append(exc)

    def add_children() -> None:
        try:
            start.wait()
            for n in range(3):
                children.append(plain.later(n, store, after=[parent]))
            children.extend(plain.later_many([3, 4], store, after=[parent]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=finish_parent), threading.Thread(target=add_children)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert errors == []
    return parent, children


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
@pytest.mark.parametrize("ends", [COMPLETED, FAILED])
def test_a_parent_ending_while_children_are_added_leaves_none_stuck_waiting(store: Store, ends: JobStatus) -> None:
    for round_ in range(ROUNDS):
        parent, children = _race(store, ends)
        assert get(store, parent).status is ends and len(children) == 5
        for child in children:
            job = get(store, child)
            if ends is COMPLETED:
                assert (job.status, job.waiting_for) == (PENDING, 0), f"round {round_}: {child} stuck: {job}"
                assert claimable(store, child), f"round {round_}: {child} is not claimable"
            else:
                assert (job.status, job.error) == (CANCELLED, ended_because(parent, FAILED)), f"round {round_}: {job}"
    assert store.counts()[PENDING] == 0
    assert store.counts()[RUNNING] == (5 * ROUNDS if ends is COMPLETED else 0)
