"""A chain of dependents longer than the database settles in one write harms only its head (every store).

The SQL stores settle dependents by trigger, one nested trigger call a level, and both
databases bound the nesting (SQLite's 1,000 nested triggers, two a level; PostgreSQL's
max_stack_depth, about 700 levels). Past that the write that ends the head can never
succeed; the store refuses it as it refuses a bad row (a ValidationError, nothing
written), so that a worker writes the other outcomes of its round one by one instead of
holding them all as it would through an outage. MemoryStore settles any depth.
"""

from __future__ import annotations

from datetime import timedelta

import jobkit
from jobkit.errors import ValidationError
from jobkit.model import Fail, JobStatus
from jobkit.store import Store
from jobkit.worker import tick
from tests.support import record as get

jobs = jobkit.Registry()
DEEPER = 1_100  # past both databases' nesting


@jobs.job(name="depth.plain", max_attempts=1)
def plain(n: int, ctx: jobkit.Context) -> int:
    return n


@jobs.job(name="depth.broken", max_attempts=1)
def broken(n: int, ctx: jobkit.Context) -> int:
    raise RuntimeError(f"broken: {n}")


def too_deep(store: Store) -> list[str]:
    """A chain of DEEPER jobs, each after the one before, led by a job that raises."""
    chain = [broken.later(0, store)]
    for n in range(1, DEEPER):
        chain.append(plain.later(n, store, after=[chain[-1]]))
    return chain


def test_a_head_whose_chain_is_too_deep_leaves_the_rest_of_its_round_written(store: Store) -> None:
    chain = too_deep(store)
    head = chain[0]
    unrelated = plain.later(-1, store)

    report = tick(store, jobs, limit=10)

    assert report.claimed == 2
    assert get(store, unrelated).status is JobStatus.COMPLETED, "the other job of the round is written"
    if isinstance(store, jobkit.MemoryStore):  # no nesting to run out of: the whole chain is cancelled
        assert get(store, head).status is JobStatus.FAILED
        assert get(store, chain[-1]).status is JobStatus.CANCELLED
        return
    held = get(store, head)
    assert held.status is JobStatus.RUNNING, "its failure could not be written; its lock will lapse"
    assert get(store, chain[1]).status is JobStatus.PENDING and get(store, chain[-1]).waiting_for == 1
    assert held.worker_id is not None
    try:
        store.finish([Fail(head, held.worker_id, "E", None, at=store.now())])
    except ValidationError as exc:
        assert "refused the write" in str(exc) and "nothing was written" in str(exc), exc
    else:
        raise AssertionError("a write the database cannot settle was taken")
    assert get(store, head).status is JobStatus.RUNNING


def test_a_lapsed_head_too_deep_to_fail_keeps_no_other_lapsed_job_from_being_reset(store: Store) -> None:
    """The reaper fails a job whose holder is gone and whose attempts are spent; for the head that write
    is refused, and the other lapsed jobs of the same reset are reset all the same."""
    head = too_deep(store)[0]
    others = [plain.later(n, store) for n in (-1, -2)]
    now = store.now()
    for job_id in (others[0], head, others[1]):  # held by a worker that is gone; its lock lapses in 1 s
        assert store.claim_job(job_id, now=now, token="gone", lock_until=now + timedelta(seconds=1)) is not None

    report = tick(store, jobs, now=now + timedelta(seconds=60), limit=1)

    assert [get(store, job_id).status for job_id in others] == [JobStatus.FAILED, JobStatus.FAILED]
    assert report.lost_failed == (3 if isinstance(store, jobkit.MemoryStore) else 2)
    expected = JobStatus.FAILED if isinstance(store, jobkit.MemoryStore) else JobStatus.RUNNING
    assert get(store, head).status is expected
