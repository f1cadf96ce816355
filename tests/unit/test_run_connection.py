"""``later(..., connection=conn)``: jobs added on the caller's connection, inside the caller's transaction.

A store that can (a :class:`TransactionalStore`, as PostgresStore is) gets the records
through ``add_on``; one that cannot is refused with a TypeError before anything is
written. The real commit and rollback on PostgreSQL are the PostgreSQL store's tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import jobkit
from jobkit.events import Event
from jobkit.model import JobRecord, JobStatus
from jobkit.store import Store, TransactionalStore
from tests.unit.run_jobs import _count

jobs = jobkit.Registry()
HEARD: list[Event] = []


@jobs.job(name="connection.send")
def send(params: int, ctx: jobkit.Context) -> int:
    return params


@jobs.on("enqueued")
def _heard(event: Event) -> None:
    HEARD.append(event)


class Transactional(jobkit.MemoryStore):
    """A store that enqueues on a caller's connection: it notes what ``add_on`` got and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.added_on: list[tuple[object, list[JobRecord]]] = []

    def add_on(self, connection: object, jobs: Sequence[JobRecord]) -> list[str]:
        self.added_on.append((connection, list(jobs)))
        return [job.id for job in jobs]


CONNECTION = object()  # what a caller's psycopg connection would be


def test_a_store_with_add_on_is_a_transactional_store_and_the_others_are_not(tmp_path: Path) -> None:
    assert isinstance(Transactional(), TransactionalStore)
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as sqlite:
        assert not isinstance(sqlite, TransactionalStore)
    assert not isinstance(jobkit.MemoryStore(), TransactionalStore)


def test_later_with_a_connection_adds_the_job_on_it_and_not_through_the_store() -> None:
    store = Transactional()
    HEARD.clear()
    job_id = send.later(7, store, connection=CONNECTION, delay=30, correlation_id="order-1")
    ((connection, records),) = store.added_on
    assert connection is CONNECTION
    (job,) = records
    assert (job.id, job.job_name, job.params, job.status) == (job_id, send.name, "7", JobStatus.PENDING)
    assert job.correlation_id == "order-1" and (job.scheduled_for - job.created_at).total_seconds() == 30
    assert _count(store) == 0, "nothing went through the store's own transaction"
    assert [(e.kind, e.job_id) for e in HEARD] == [("enqueued", job_id)], "told at the call, not at a commit"


def test_later_many_with_a_connection_adds_every_job_in_one_call() -> None:
    store = Transactional()
    ids = send.later_many([1, 2, 3], store, connection=CONNECTION)
    ((connection, records),) = store.added_on
    assert connection is CONNECTION and [r.id for r in records] == ids
    assert [r.params for r in records] == ["1", "2", "3"]


def test_without_a_connection_a_transactional_store_adds_as_usual() -> None:
    store = Transactional()
    job_id = send.later(1, store)
    assert store.added_on == [] and store.get(job_id) is not None


def test_params_are_still_validated_before_anything_is_added_on_the_connection() -> None:
    store = Transactional()
    with pytest.raises(jobkit.ValidationError):
        send.later("not an int", store, connection=CONNECTION)
    with pytest.raises(jobkit.ValidationError):
        send.later_many([1, "two"], store, connection=CONNECTION)
    assert store.added_on == []


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_store_that_cannot_enqueue_on_a_connection_refuses_before_writing(kind: str, tmp_path: Path) -> None:
    store: Store = jobkit.MemoryStore() if kind == "memory" else jobkit.SqliteStore(tmp_path / "jobs.sqlite")
    name = type(store).__name__
    with store:
        with pytest.raises(TypeError, match=rf"^{name} cannot enqueue on a caller's connection") as refused:
            send.later(1, store, connection=CONNECTION)
        assert "only PostgresStore" in str(refused.value)
        with pytest.raises(TypeError, match=name):
            send.later_many([1, 2], store, connection=CONNECTION)
        assert _count(store) == 0
