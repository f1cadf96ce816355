"""``GET /live``: server-sent events carrying the overview's fragments, and with ``?job=ID`` that job's state."""

from __future__ import annotations

import html

from starlette.testclient import TestClient
from starlette.types import ASGIApp

from jobkit.model import JobStatus
from jobkit.store import Store
from tests.web.conftest import Page, at, dashboard, put, read_events

OVERVIEW = {"counts", "running", "queues"}


def count_shown(fragment: str, status: JobStatus) -> int:
    """The number the counts fragment shows for *status*."""
    page = Page(fragment)
    (link,) = page.find("a", **{"data-status": status.value})
    start = fragment.index(f'data-status="{status.value}"')
    number = fragment[fragment.index('<span class="n">', start) + len('<span class="n">') :].split("<", 1)[0]
    assert link.attrs["href"].endswith(f"/jobs?status={status.value}")
    return int(number.replace(",", ""))


def test_live_streams_the_counts_the_running_jobs_and_the_queues(store: Store, client: TestClient) -> None:
    for n in range(3):
        put(store, JobStatus.PENDING, at(n))
    put(store, JobStatus.FAILED, at(5), queue="emails")
    running = put(store, JobStatus.RUNNING, at(6), progress=40, progress_message="resizing 3 of 7")

    with client.stream("GET", "/live") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"

    events = {event.name: event.data for event in read_events(client, "/live", OVERVIEW)}
    counts = events["counts"]
    assert 'id="counts"' in counts
    assert count_shown(counts, JobStatus.PENDING) == 3
    assert count_shown(counts, JobStatus.FAILED) == 1
    assert count_shown(counts, JobStatus.RUNNING) == 1
    assert count_shown(counts, JobStatus.COMPLETED) == 0
    assert f'data-job="{running}"' in events["running"]
    assert 'aria-valuenow="40"' in events["running"]
    assert "resizing 3 of 7" in events["running"]
    queues = Page(events["queues"])
    assert [row.attrs["data-queue"] for row in queues.find("tr") if "data-queue" in row.attrs] == ["default", "emails"]


def test_live_counts_follow_the_store(store: Store, app: ASGIApp, client: TestClient) -> None:
    (first,) = [e.data for e in read_events(client, "/live", {"counts"}) if e.name == "counts"]
    assert count_shown(first, JobStatus.PENDING) == 0
    put(store, JobStatus.PENDING, at(1))
    put(store, JobStatus.PENDING, at(2))
    dashboard(app).hub.forget()
    (second,) = [e.data for e in read_events(client, "/live", {"counts"}) if e.name == "counts"]
    assert count_shown(second, JobStatus.PENDING) == 2


def test_live_with_a_job_sends_that_jobs_progress(store: Store, client: TestClient) -> None:
    job_id = put(store, JobStatus.RUNNING, at(1), progress=62, progress_message="page 31 of 50")
    put(store, JobStatus.RUNNING, at(2), progress=5, progress_message="another job")

    events = read_events(client, f"/live?job={job_id}", {"job"})
    (state,) = [event.data for event in events if event.name == "job"]
    page = Page(state)
    assert page.by_id("job-state")
    assert page.by_id("job-status").tag == "span"
    (bar,) = page.find("div", role="progressbar")
    assert bar.attrs["aria-valuenow"] == "62"
    assert "page 31 of 50" in html.unescape(state)
    assert "another job" not in state
    assert {event.name for event in events} == OVERVIEW | {"job"}


def test_live_with_a_finished_job_sends_its_end(store: Store, client: TestClient) -> None:
    job_id = put(store, JobStatus.COMPLETED, at(1), progress=100)
    (state,) = [e.data for e in read_events(client, f"/live?job={job_id}", {"job"}) if e.name == "job"]
    assert 'id="job-status">completed<' in state
    assert 'aria-valuenow="100"' in state
