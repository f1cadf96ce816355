"""The all-or-nothing checks of jobkit.control's retry and cancel_many, on every store.

Every id is looked up and every status checked before anything changes: a refusal
names each offending job and leaves the store as it was.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobkit.control import cancel_many, retry
from jobkit.errors import JobNotFound, JobStateError
from jobkit.model import JobStatus, utc_now
from jobkit.store import Store
from tests import admin_jobs
from tests.admin_jobs import Queue

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


@pytest.fixture
def queue(store: Store) -> Queue:
    """One job in every status (see tests/admin_jobs.py)."""
    return admin_jobs.populate(store)


def statuses(store: Store, q: Queue) -> dict[str, tuple[JobStatus, bool]]:
    """Each job's status and whether its cancellation was asked: to show that nothing changed."""
    records = {job_id: store.get(job_id) for job_id in q.ids()}
    return {i: (r.status, r.cancel_requested) for i, r in records.items() if r is not None}


# -- retry ----------------------------------------------------------------------------
def test_retry_all_or_nothing_sends_failed_and_cancelled_jobs_each_once_in_order(store: Store, queue: Queue) -> None:
    q = queue
    assert retry(store, [q.cancelled, q.failed, q.cancelled], all_or_nothing=True) == [q.cancelled, q.failed]
    for job_id in (q.cancelled, q.failed):
        record = store.get(job_id)
        assert record is not None and record.status is PENDING and record.attempt_count == 0


def test_retry_all_or_nothing_refuses_every_job_not_failed_or_cancelled_and_retries_none(
    store: Store, queue: Queue
) -> None:
    q = queue
    before = statuses(store, q)
    with pytest.raises(JobStateError) as refused:
        retry(store, [q.failed, q.completed, q.running, q.cancelled], all_or_nothing=True)
    error = refused.value
    assert str(error) == (
        f"jobs {q.completed} (completed), {q.running} (running) are; "
        "only failed or cancelled jobs can be retried (nothing was retried)"
    )
    assert error.jobs == {q.completed: "completed", q.running: "running"}
    assert (error.job_id, error.status) == (q.completed, "completed")
    assert statuses(store, q) == before


def test_retry_all_or_nothing_names_one_refused_job_plainly(store: Store, queue: Queue) -> None:
    with pytest.raises(JobStateError, match=f"^job {queue.pending} is pending; only failed or cancelled"):
        retry(store, [queue.failed, queue.pending], all_or_nothing=True)
    failed = store.get(queue.failed)
    assert failed is not None and failed.status is FAILED


def test_retry_all_or_nothing_refuses_unknown_ids_and_retries_none(store: Store, queue: Queue) -> None:
    q = queue
    before = statuses(store, q)
    with pytest.raises(JobNotFound) as missing:
        retry(store, [q.failed, "nope", q.cancelled, "nada"], all_or_nothing=True)
    assert str(missing.value) == "no jobs with ids 'nope', 'nada'"
    assert missing.value.job_ids == ["nope", "nada"] and missing.value.job_id == "nope"
    assert statuses(store, q) == before


def test_retry_without_the_check_still_skips_what_it_cannot_send(store: Store, queue: Queue) -> None:
    q = queue
    assert retry(store, [q.completed, "nope", q.failed, q.running]) == [q.failed]


# -- cancel_many ----------------------------------------------------------------------
def test_cancel_many_cancels_pending_asks_running_and_leaves_the_cancelled(store: Store, queue: Queue) -> None:
    q = queue
    before = store.get(q.cancelled)
    now = utc_now() + timedelta(seconds=1)
    after = cancel_many(store, [q.pending, q.running, q.cancelled, q.pending], clock=lambda: now, all_or_nothing=True)
    assert [job.id for job in after] == [q.pending, q.running, q.cancelled]
    pending, running, cancelled = after
    assert pending.status is CANCELLED and pending.completed_at == now
    assert running.status is RUNNING and running.cancel_requested
    assert cancelled == before, "already cancelled: left as it was"
    assert cancelled.completed_at is not None and cancelled.completed_at < now
    assert store.get(q.pending) == pending


def test_cancel_many_all_or_nothing_refuses_completed_and_failed_jobs_and_cancels_none(
    store: Store, queue: Queue
) -> None:
    q = queue
    before = statuses(store, q)
    with pytest.raises(JobStateError) as refused:
        cancel_many(store, [q.pending, q.completed, q.running, q.failed], all_or_nothing=True)
    assert str(refused.value) == (
        f"jobs {q.completed} (completed), {q.failed} (failed) are already; "
        "there is nothing to cancel (nothing was cancelled)"
    )
    assert refused.value.jobs == {q.completed: "completed", q.failed: "failed"}
    assert statuses(store, q) == before


def test_cancel_many_without_the_check_leaves_finished_jobs_as_they_are(store: Store, queue: Queue) -> None:
    q = queue
    completed = store.get(q.completed)
    after = cancel_many(store, [q.completed, q.pending])
    assert after[0] == completed
    assert after[1].status is CANCELLED


@pytest.mark.parametrize("all_or_nothing", [True, False])
def test_cancel_many_refuses_unknown_ids_before_cancelling_any(
    store: Store, queue: Queue, all_or_nothing: bool
) -> None:
    q = queue
    before = statuses(store, q)
    with pytest.raises(JobNotFound, match=r"^no job with id 'nope'$"):
        cancel_many(store, [q.pending, "nope", q.running], all_or_nothing=all_or_nothing)
    assert statuses(store, q) == before


def test_job_not_found_and_job_state_error_keep_what_they_name() -> None:
    one = JobNotFound("a")
    assert (str(one), one.job_id, one.job_ids) == ("no job with id 'a'", "a", ["a"])
    single = JobStateError("job a is pending", job_id="a", status="pending")
    assert single.jobs == {"a": "pending"}
