"""Queues: jobs.job(queue=...), later(queue=...), pause and resume, and what claims take (every store).

Workers run in threads (``run_worker``); handlers and tests meet on Events, and
conditions are polled with a deadline. Worker processes serving some queues are in
tests/worker/test_worker_queues.py.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import jobkit
from jobkit.model import JobStatus
from jobkit.store import Store
from tests.support import COMPLETED, PENDING, RUNNING, TIMEOUT, Background, burst, poll
from tests.support import record as get

jobs = jobkit.Registry()
RELEASE = threading.Event()  # a held email finishes when this is set
STARTED: list[str] = []


@jobs.job(name="queues.email", queue="emails")
def email(to: str, ctx: jobkit.Context) -> str:
    STARTED.append(to)
    assert RELEASE.wait(TIMEOUT), "never released"
    return to


@jobs.job(name="queues.report")
def report(n: int, ctx: jobkit.Context) -> int:
    return n


BAD_NAMES = ["", "has space", "x" * 65, "-leading-dash", "a,b", "a=b", 7]


@pytest.fixture(autouse=True)
def _fresh() -> None:
    RELEASE.clear()
    STARTED.clear()


def test_a_job_is_in_its_spec_s_queue_unless_later_names_another(store: Store) -> None:
    assert email.queue == "emails" and report.queue == jobkit.model.DEFAULT_QUEUE == "default"
    ids = [email.later("a@x", store), report.later(1, store), report.later(2, store, queue="reports")]
    ids += report.later_many([3, 4], store, queue="reports")
    assert [get(store, i).queue for i in ids] == ["emails", "default", "reports", "reports", "reports"]
    assert [q.name for q in jobkit.queues(store)] == ["default", "emails", "reports"]
    assert {q.name: q.counts[PENDING] for q in jobkit.queues(store)} == {"default": 1, "emails": 1, "reports": 3}
    assert [j.id for j in store.list_jobs(queue="reports")] == sorted(ids[2:], reverse=True)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_bad_queue_name_is_a_validation_error_naming_it_and_writes_nothing(store: Store, bad: object) -> None:
    with pytest.raises(jobkit.ValidationError, match=r"^queue must be a queue name") as refused:
        report.later(1, store, queue=bad)  # type: ignore[arg-type]
    assert refused.value.value == bad
    with pytest.raises(jobkit.ValidationError, match="queue"):
        report.later_many([1, 2], store, queue=bad)  # type: ignore[arg-type]
    with pytest.raises(jobkit.ValidationError, match="queue"):
        jobkit.pause(store, bad)  # type: ignore[arg-type]
    with pytest.raises(jobkit.ValidationError, match="queue must be"):
        jobkit.Registry().job(name="queues.bad", queue=bad)(lambda params, ctx: None)  # type: ignore[arg-type]
    assert store.list_jobs() == [] and jobkit.queues(store) == []


def test_no_claim_takes_a_paused_queue_s_jobs_and_its_running_ones_finish(store: Store) -> None:
    held = email.later("running@x", store)
    with Background(store, jobs, concurrency=2) as worker:
        assert poll(lambda: get(store, held).status is RUNNING)
        jobkit.pause(store, "emails")
        waiting = email.later("waiting@x", store)
        other = report.later(1, store)
        assert poll(lambda: get(store, other).status is COMPLETED), "the default queue is not paused"
        RELEASE.set()
        assert poll(lambda: get(store, held).status is COMPLETED), "a paused queue's running job finishes"
        assert get(store, waiting).status is PENDING
        assert store.claim(limit=5, now=store.now(), token="t", lock_until=store.now() + timedelta(seconds=9)) == []
        assert store.next_due() is None, "a paused queue's job is not due for anyone"
        paused = {q.name: q.paused for q in jobkit.queues(store)}
        assert paused == {"default": False, "emails": True}

        jobkit.resume(store, "emails")  # wakes the worker: its job runs without waiting for a poll
        assert poll(lambda: get(store, waiting).status is COMPLETED)
        worker.stop()
    assert STARTED == ["running@x", "waiting@x"]


def test_a_queue_paused_before_it_has_jobs_holds_its_first_ones(store: Store) -> None:
    jobkit.pause(store, "later-on")
    assert [(q.name, q.paused, sum(q.counts.values())) for q in jobkit.queues(store)] == [("later-on", True, 0)]
    held = report.later(1, store, queue="later-on")
    done = report.later(2, store)
    report_of = burst(store, jobs)
    assert report_of.completed == 1 and get(store, done).status is COMPLETED
    assert get(store, held).status is PENDING
    jobkit.resume(store, "later-on")
    assert burst(store, jobs).completed == 1 and get(store, held).status is COMPLETED


def test_a_claim_given_queues_takes_at_most_each_one_s_number_and_only_from_them(store: Store) -> None:
    for n in range(4):
        report.later(n, store, queue="a")
        report.later(n, store, queue="b", priority=1)  # b's jobs come first in the queue's order
        report.later(n, store, queue="c")
    now, until = store.now(), store.now() + timedelta(seconds=30)
    taken = store.claim(limit=10, now=now, token="t1", lock_until=until, queues={"a": 3, "b": 1})
    assert sorted(j.queue for j in taken) == ["a", "a", "a", "b"]
    assert taken[0].queue == "b", "in the claim order: priority first"
    taken = store.claim(limit=2, now=now, token="t2", lock_until=until, queues={"b": 5, "c": 5})
    assert [j.queue for j in taken] == ["b", "b"], "at most the limit in all, in the claim order"
    assert store.claim(limit=5, now=now, token="t3", lock_until=until, queues={"nowhere": 5}) == []
    with pytest.raises(ValueError, match="at least 0"):
        store.claim(limit=5, now=now, token="t4", lock_until=until, queues={"a": -1})


def test_every_queue_s_pending_counts_and_pause_state_read_alike(store: Store) -> None:
    report.later_many([1, 2], store, queue="x")
    jobkit.pause(store, "x")
    jobkit.pause(store, "x")  # twice is once
    (info,) = jobkit.queues(store)
    assert (info.name, info.paused, info.counts[JobStatus.PENDING], info.counts[JobStatus.COMPLETED]) == (
        "x",
        True,
        2,
        0,
    )
    jobkit.resume(store, "x")
    assert [q.paused for q in jobkit.queues(store)] == [False]
