"""One way to the typed value from whatever a caller holds: ``spec.result_of(...)``."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

import jobkit
from jobkit.store import Store
from jobkit.worker import run_worker

jobs = jobkit.Registry()


@attrs.frozen
class Resize:
    url: str
    width: int = 100


@attrs.frozen
class Resized:
    path: str
    sizes: list[int]


@jobs.job
def resize(params: Resize, ctx: jobkit.Context) -> Resized:
    return Resized(path=f"thumbs/{params.url}", sizes=[params.width, params.width * 2])


@jobs.job
def other(params: int, ctx: jobkit.Context) -> list[Resized]:
    return [Resized(path=str(params), sizes=[])]


@jobs.job
def refuse(params: int, ctx: jobkit.Context) -> int:
    raise ValueError("no")


EXPECTED = Resized(path="thumbs/a.png", sizes=[3, 6])


def done(store: Store) -> str:
    """A job of resize that a worker ran: its id."""
    job_id = resize.later(Resize("a.png", 3), store)
    run_worker(store, jobs, burst=True)
    return job_id


def test_every_way_of_holding_a_job_gives_the_same_typed_result(store: Store) -> None:
    job_id = done(store)
    record = store.get(job_id)
    assert record is not None
    held: list[Any] = [
        job_id,  # an id
        record,  # a JobRecord, whose result is JSON text
        jobkit.wait(store, job_id),  # decoded JSON: a dict
        jobkit.wait(store, job_id, spec=resize),  # typed already
        resize.now(Resize("a.png", 3), store=store),  # typed, from a run here
    ]
    assert json.loads(record.result or "") == {"path": "thumbs/a.png", "sizes": [3, 6]}
    assert held[2].value == {"path": "thumbs/a.png", "sizes": [3, 6]}
    for thing in held:
        result = resize.result_of(thing, store)
        assert result.ok and result.status is jobkit.JobStatus.COMPLETED
        assert result.value == EXPECTED and type(result.value) is Resized, thing
        assert result.unwrap() == EXPECTED
    assert resize.result_of(job_id, store).job_id == job_id
    assert resize.wait(job_id, store) == EXPECTED  # the waiting form, the value itself


def test_execute_results_are_typed_through_result_of(store: Store) -> None:
    job_id = other.later(7, store)
    result = other.result_of(jobkit.execute(store, jobs, job_id))
    assert result.value == [Resized(path="7", sizes=[])]


def test_an_unfinished_or_failed_job_gives_its_status_and_no_value(store: Store) -> None:
    pending = resize.later(Resize("b.png"), store)
    result = resize.result_of(pending, store)
    assert (result.ok, result.value, result.status) == (False, None, jobkit.JobStatus.PENDING)
    failed = refuse.result_of(refuse.now(1, store=store))
    assert (failed.ok, failed.value, failed.status) == (False, None, jobkit.JobStatus.FAILED)
    assert "ValueError: no" in (failed.error or "")
    with pytest.raises(jobkit.JobFailed):
        failed.unwrap()


def test_result_of_refuses_what_it_cannot_read(store: Store) -> None:
    job_id = done(store)
    record = store.get(job_id)
    assert record is not None
    with pytest.raises(jobkit.JobNotFound):
        resize.result_of("01a229d0-0000-7000-8000-000000000000", store)
    with pytest.raises(TypeError, match="needs the store"):
        resize.result_of(job_id)
    with pytest.raises(jobkit.ValidationError, match=r"is a '.*:resize' job, not '.*:other'"):
        other.result_of(record)
    with pytest.raises(TypeError, match="not int"):
        resize.result_of(5)  # type: ignore[arg-type]
    # A value that does not fit the result type (the job's code changed since it ran).
    with pytest.raises(jobkit.ValidationError, match="invalid result"):
        other.result_of(jobkit.wait(store, job_id))
