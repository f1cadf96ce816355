"""The live parts htmx asks for every second: the overview's body, the queues table, one job's state."""

from __future__ import annotations

import asyncio
import html
import threading
from datetime import datetime

from starlette.testclient import TestClient
from starlette.types import ASGIApp

import jobkit
from jobkit.model import JobStatus, Summary
from jobkit.store import Store
from tests.support import TIMEOUT
from tests.web.conftest import Page, at, dashboard, live_parts, put

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

    overview = Page(client.get("/").text).by_id("overview")
    assert overview.attrs["hx-get"] == "/live/overview" and overview.attrs["hx-trigger"] == "every 1s"
    events = {event.name: event.data for event in live_parts(client, "/live", OVERVIEW)}
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
    (first,) = [e.data for e in live_parts(client, "/live", {"counts"}) if e.name == "counts"]
    assert count_shown(first, JobStatus.PENDING) == 0
    put(store, JobStatus.PENDING, at(1))
    put(store, JobStatus.PENDING, at(2))
    dashboard(app).hub.forget()
    (second,) = [e.data for e in live_parts(client, "/live", {"counts"}) if e.name == "counts"]
    assert count_shown(second, JobStatus.PENDING) == 2


def test_live_with_a_job_sends_that_jobs_progress(store: Store, client: TestClient) -> None:
    job_id = put(store, JobStatus.RUNNING, at(1), progress=62, progress_message="page 31 of 50")
    put(store, JobStatus.RUNNING, at(2), progress=5, progress_message="another job")

    events = live_parts(client, f"/live?job={job_id}", {"job"})
    (state,) = [event.data for event in events if event.name == "job"]
    page = Page(state)
    assert page.by_id("job-state")
    assert page.by_id("job-status").tag == "span"
    (bar,) = page.find("div", role="progressbar")
    assert bar.attrs["aria-valuenow"] == "62"
    assert "page 31 of 50" in html.unescape(state)
    assert "another job" not in state
    assert {event.name for event in events} == OVERVIEW | {"job"}
    assert page.by_id("job-state").attrs["hx-get"] == f"/live/jobs/{job_id}"  # it keeps asking while it runs


def test_live_with_a_finished_job_sends_its_end(store: Store, client: TestClient) -> None:
    job_id = put(store, JobStatus.COMPLETED, at(1), progress=100)
    (state,) = [e.data for e in live_parts(client, f"/live?job={job_id}", {"job"}) if e.name == "job"]
    assert 'id="job-status">completed<' in state
    assert 'aria-valuenow="100"' in state
    assert "hx-get" not in state, "a finished job's page stops asking"


def test_the_overview_lists_fifty_running_jobs_and_counts_the_rest(store: Store, client: TestClient) -> None:
    for n in range(53):
        put(store, JobStatus.RUNNING, at(n), progress=n)
    (overview,) = [e.data for e in live_parts(client, "/live", {"running"}) if e.name == "running"]
    page = Page(overview)
    assert len([row for row in page.find("tr") if "data-job" in row.attrs]) == 50
    assert page.by_id("running-more")
    assert "and 3 more running" in overview


def test_the_overview_lists_twenty_lease_holders_overdue_first_and_counts_the_rest(
    store: Store, client: TestClient
) -> None:
    for n in range(25):
        put(store, JobStatus.RUNNING, at(n), worker_id=f"worker-{n:02}:1")
    (overview,) = [e.data for e in live_parts(client, "/live", {"running"}) if e.name == "running"]
    leases = Page(overview)
    rows = [row for row in leases.find("tr") if row.attrs.get("class") is not None]
    assert len(rows) == 20
    assert leases.by_id("holders-more") and "and 5 more holding leases" in overview


def test_settle_waits_for_the_background_read_under_way_and_starts_no_more() -> None:
    """The app's shutdown settles the Hub before its store may close: a read using the store ends first."""
    from jobkit.web.live import QUICK, Hub
    from jobkit.web.tally import Tally

    happened: list[str] = []
    gate, entered = threading.Event(), threading.Event()
    clock = [0.0]

    class Gated(jobkit.MemoryStore):
        reads = 0

        def summary(self, *, since: datetime) -> Summary:
            Gated.reads += 1
            clock[0] += QUICK * 2  # every read is slow, so a stale snapshot is read again in the background
            if Gated.reads == 2:
                entered.set()
                assert gate.wait(TIMEOUT)
                happened.append("read ended")
            return super().summary(since=since)

    hub = Hub(Gated(), Tally(), clock=lambda: clock[0])
    asyncio.run(hub.snapshot())  # the first read: waited for, and slow
    clock[0] += 3600  # stale
    asyncio.run(hub.snapshot())  # answered at once; the second read runs in the background
    assert entered.wait(TIMEOUT)
    settling = threading.Thread(target=lambda: (hub.settle(), happened.append("settled")))
    settling.start()
    gate.set()
    settling.join(TIMEOUT)
    assert happened == ["read ended", "settled"]
    clock[0] += 3600
    asyncio.run(hub.snapshot())
    assert Gated.reads == 2, "no read starts once the Hub has settled"
