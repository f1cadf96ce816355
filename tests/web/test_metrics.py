"""``GET /metrics`` (every store): the Prometheus text format, parsed by prometheus-client's own parser.

The gauges say what the store holds now; the totals and the run-time histogram count each
job that finished once, however often they are scraped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import jobkit
from jobkit.model import JobStatus
from jobkit.store import Store
from jobkit.web.tally import BUCKETS
from tests.web.conftest import at, boom, dashboard, jobs, ok, put

Scrape = Callable[[], dict[str, list[Sample]]]


def scraper(app: ASGIApp, client: TestClient) -> Scrape:
    """A scrape of /metrics (the snapshot read afresh), as samples by metric family name.

    It scrapes once at once: the dashboard is running before the test's jobs are enqueued
    (enqueued jobs count from a dashboard's first look; finished ones from an hour before it).
    """

    def scrape() -> dict[str, list[Sample]]:
        dashboard(app).hub.forget()
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        families = {family.name: family.samples for family in text_string_to_metric_families(response.text)}
        return families

    scrape()
    return scrape


def values(samples: list[Sample], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels[label] for label in labels): s.value for s in samples if s.name == name}


def test_jobs_by_queue_and_status_are_the_stores_counts(store: Store, app: ASGIApp, client: TestClient) -> None:
    layout = {
        ("default", JobStatus.PENDING): 3,
        ("default", JobStatus.FAILED): 1,
        ("emails", JobStatus.RUNNING): 2,
        ("emails", JobStatus.COMPLETED): 4,
        ("images", JobStatus.CANCELLED): 1,
    }
    n = 0
    for (queue, status), count in layout.items():
        for _ in range(count):
            put(store, status, at(n), queue=queue)
            n += 1
    jobkit.pause(store, "images")
    families = scraper(app, client)()
    shown = values(families["jobkit_jobs"], "jobkit_jobs", "queue", "status")
    expected = {
        (info.name, status.value): float(info.counts.get(status, 0)) for info in store.queues() for status in JobStatus
    }
    assert shown == expected
    assert shown[("emails", "completed")] == 4.0 and shown[("images", "pending")] == 0.0
    paused = values(families["jobkit_queue_paused"], "jobkit_queue_paused", "queue")
    assert paused == {("default",): 0.0, ("emails",): 0.0, ("images",): 1.0}
    assert families["jobkit_running_leases"][0].value == 2.0
    assert families["jobkit_oldest_due_job_age_seconds"][0].value > 0


def test_an_empty_store_scrapes(store: Store, app: ASGIApp, client: TestClient) -> None:
    families = scraper(app, client)()
    assert families["jobkit_jobs"] == []
    assert families["jobkit_oldest_due_job_age_seconds"][0].value == 0.0
    assert families["jobkit_jobs_completed"] == []


def totals(families: dict[str, list[Sample]]) -> dict[str, dict[tuple[str, ...], float]]:
    return {
        "enqueued": values(families["jobkit_jobs_enqueued"], "jobkit_jobs_enqueued_total", "job_name", "queue"),
        "completed": values(families["jobkit_jobs_completed"], "jobkit_jobs_completed_total", "job_name", "queue"),
        "failed": values(families["jobkit_jobs_failed"], "jobkit_jobs_failed_total", "job_name", "queue"),
        "cancelled": values(families["jobkit_jobs_cancelled"], "jobkit_jobs_cancelled_total", "job_name", "queue"),
        "runs": values(families["jobkit_job_run_seconds"], "jobkit_job_run_seconds_count", "job_name"),
    }


def test_totals_count_each_finished_job_once_across_scrapes(store: Store, app: ASGIApp, client: TestClient) -> None:
    scrape = scraper(app, client)
    for n in range(3):
        ok.later(n, store)
    boom.later("no", store)
    boom.later("never", store, queue="emails")
    assert jobkit.tick(store, jobs, limit=10).claimed == 5

    first = totals(scrape())
    assert first == {
        "enqueued": {("web.ok", "default"): 3.0, ("web.boom", "default"): 1.0, ("web.boom", "emails"): 1.0},
        "completed": {("web.ok", "default"): 3.0},
        "failed": {("web.boom", "default"): 1.0, ("web.boom", "emails"): 1.0},
        "cancelled": {},
        "runs": {("web.ok",): 3.0},
    }
    assert totals(scrape()) == first, "a second scrape counted the same jobs again"
    assert totals(scrape()) == first

    ok.later(9, store)
    ok.later(10, store, queue="emails")
    boom.later("again", store)
    cancelled = ok.later(11, store)
    jobkit.cancel(store, cancelled)
    pending = ok.later(12, store, delay=3600)
    assert jobkit.tick(store, jobs, limit=10).claimed == 3
    assert store.get(pending) is not None

    after = totals(scrape())
    assert after == {
        "enqueued": {
            ("web.ok", "default"): 6.0,
            ("web.ok", "emails"): 1.0,
            ("web.boom", "default"): 2.0,
            ("web.boom", "emails"): 1.0,
        },
        "completed": {("web.ok", "default"): 4.0, ("web.ok", "emails"): 1.0},
        "failed": {("web.boom", "default"): 2.0, ("web.boom", "emails"): 1.0},
        "cancelled": {("web.ok", "default"): 1.0},
        "runs": {("web.ok",): 5.0},
    }
    assert totals(scrape()) == after


def test_a_retried_job_that_completes_counts_its_failure_and_its_completion(
    store: Store, app: ASGIApp, client: TestClient
) -> None:
    scrape = scraper(app, client)
    job_id = boom.later("first", store)
    jobkit.tick(store, jobs, limit=1)
    assert totals(scrape())["failed"] == {("web.boom", "default"): 1.0}
    jobkit.retry(store, [job_id])
    jobkit.tick(store, jobs, limit=1)
    again = totals(scrape())
    assert again["failed"] == {("web.boom", "default"): 2.0}
    assert again["enqueued"] == {("web.boom", "default"): 1.0}


def test_the_run_time_histogram_is_cumulative(store: Store, app: ASGIApp, client: TestClient) -> None:
    for n in range(4):
        ok.later(n, store)
    jobkit.tick(store, jobs, limit=10)
    samples = scraper(app, client)()["jobkit_job_run_seconds"]
    buckets = [(s.labels["le"], s.value) for s in samples if s.name == "jobkit_job_run_seconds_bucket"]
    assert [le for le, _ in buckets] == [*(repr(bound) for bound in BUCKETS), "+Inf"]
    counts = [value for _, value in buckets]
    assert counts == sorted(counts), "bucket counts must not fall as the bound rises"
    assert counts[-1] == 4.0
    (count,) = [s.value for s in samples if s.name == "jobkit_job_run_seconds_count"]
    (total,) = [s.value for s in samples if s.name == "jobkit_job_run_seconds_sum"]
    assert count == 4.0 and 0 <= total < 60


def test_the_overview_chart_agrees_with_the_totals(store: Store, app: ASGIApp, client: TestClient) -> None:
    ok.later(1, store)
    boom.later("x", store)
    jobkit.tick(store, jobs, limit=5)
    scraper(app, client)()
    bars = dashboard(app).tally.bars(store.now())
    assert sum(bar.completed for bar in bars) == 1 and sum(bar.failed for bar in bars) == 1
    assert len(bars) == 60


def test_hostile_names_are_escaped_in_the_labels(store: Store, app: ASGIApp, client: TestClient) -> None:
    names = ['a"b', "back\\slash", "new\nline", "}{,=", "<script>alert(1)</script>"]
    for n, name in enumerate(names):
        put(store, JobStatus.FAILED, at(n), queue=name, job_name=name)
    shown = values(scraper(app, client)()["jobkit_jobs"], "jobkit_jobs", "queue", "status")
    assert {queue for queue, status in shown if status == "failed" and shown[(queue, status)] == 1.0} == set(names)


def test_totals_page_through_many_finished_jobs_once(
    store: Store, app: ASGIApp, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a look reads at most PAGES_PER_LOOK pages of PAGE records; the next goes on from its cursor
    monkeypatch.setattr("jobkit.web.tally.PAGE", 3)
    monkeypatch.setattr("jobkit.web.tally.PAGES_PER_LOOK", 2)
    now = store.now()
    statuses = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]
    for n in range(20):  # several finishing at the same instant: the cursor's id breaks the tie
        put(store, statuses[n % 3], now - timedelta(minutes=30) + timedelta(seconds=n // 4), queue="q")
    scrape = scraper(app, client)
    seen = [totals(scrape()) for _ in range(6)]
    ended = [sum(sum(t[kind].values()) for kind in ("completed", "failed", "cancelled")) for t in seen]
    assert ended == sorted(ended), ended
    assert ended[0] == 12  # the scraper's first look, then this one: two pages of three each
    assert ended[-1] == 20, ended
    assert seen[-1]["completed"] == {("web.ok", "q"): 7.0}
    assert seen[-1]["failed"] == {("web.ok", "q"): 7.0}
    assert seen[-1]["cancelled"] == {("web.ok", "q"): 6.0}
    assert seen[-1]["enqueued"] == {}, "made before the dashboard's first look: not counted as enqueued"
