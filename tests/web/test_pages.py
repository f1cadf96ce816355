"""Every page answers (every store): overview, jobs, one job, schedules, queues; 404 for an unknown job; /healthz."""

from __future__ import annotations

import html
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import jobkit
from jobkit.model import JobStatus
from jobkit.store import Store
from jobkit.web import create_app
from tests.web.conftest import Page, at, boom, dashboard, jobs, ok, put

PAGES = ("/", "/jobs", "/schedules", "/queues")


def scene(store: Store) -> dict[JobStatus, str]:
    """A job of every status, a dependency, and a schedule."""
    made = {status: put(store, status, at(n), queue=f"q{n}") for n, status in enumerate(JobStatus)}
    put(store, JobStatus.PENDING, at(10), depends_on=(made[JobStatus.RUNNING],), waiting_for=1)
    jobkit.schedule(store, ok, "0 3 * * *", 7, name="nightly")
    return made


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers(store: Store, client: TestClient, path: str) -> None:
    scene(store)
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = Page(response.text)
    assert [e.attrs["href"] for e in page.find("a", **{"aria-current": "page"})] == [path]


def test_the_pages_answer_on_an_empty_store(store: Store, client: TestClient) -> None:
    for path in PAGES:
        assert client.get(path).status_code == 200, path
    assert Page(client.get("/jobs").text).by_id("no-jobs")


def test_the_overview_shows_counts_names_queues_and_the_oldest_due_job(store: Store, client: TestClient) -> None:
    oldest = put(store, JobStatus.PENDING, at(0), job_name="web.first")
    put(store, JobStatus.PENDING, at(5))
    put(store, JobStatus.FAILED, at(6), queue="emails")
    text = client.get("/").text
    page = Page(text)
    assert page.by_id("counts") and page.by_id("throughput") and page.by_id("by-name")
    assert f'href="/jobs/{oldest}">web.first</a>' in text
    assert page.find("tr", **{"data-queue": "emails"}) and page.find("tr", **{"data-queue": "default"})
    assert [e.attrs["href"] for e in page.find("a") if "name=" in e.attrs["href"]] == [
        "/jobs?name=web.first",
        "/jobs?name=web.ok",
    ]


def test_the_overview_shows_the_workers_holding_leases(store: Store, client: TestClient) -> None:
    put(store, JobStatus.RUNNING, at(1), worker_id="host-7/worker-1", progress=30)
    page = Page(client.get("/").text)
    assert page.by_id("leases")
    assert "host-7/worker-1" in client.get("/").text


def test_the_overview_charts_what_finished_in_the_last_hour(store: Store, app: ASGIApp, client: TestClient) -> None:
    ok.later(1, store)
    ok.later(2, store)
    boom.later("no", store)
    assert jobkit.tick(store, jobs, limit=10).completed == 2
    dashboard(app).hub.forget()
    page = Page(client.get("/").text)
    assert page.by_id("throughput").attrs["aria-label"] == "2 completed and 1 failed in the last hour"
    assert len(page.find("rect", **{"class": "completed"})) == 60


@pytest.mark.parametrize("status", list(JobStatus))
def test_the_page_of_a_job_shows_it(store: Store, client: TestClient, status: JobStatus) -> None:
    made = scene(store)
    job_id = made[status]
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    page = Page(response.text)
    assert page.by_id("job-status").tag == "span"
    assert f'id="job-status">{status.value}<' in response.text
    assert "params" in {e.attrs.get("id") for e in page.elements}
    offered = {form.attrs["action"].rsplit("/", 1)[1] for form in page.forms if "method" in form.attrs}
    expected = {
        JobStatus.PENDING: {"cancel"},
        JobStatus.RUNNING: {"cancel"},
        JobStatus.COMPLETED: {"purge"},
        JobStatus.FAILED: {"retry", "purge"},
        JobStatus.CANCELLED: {"retry", "purge"},
    }[status]
    assert offered == expected
    if status is JobStatus.FAILED:
        assert "ValueError: it broke" in html.unescape(response.text)
    if status.finished:
        assert "hx-get" not in page.by_id("job-state").attrs
    else:
        assert page.by_id("job-state").attrs["hx-get"] == f"/live/jobs/{job_id}"


def test_the_page_of_a_job_shows_its_result_attempts_and_dependencies(store: Store, client: TestClient) -> None:
    parent = ok.later(5, store)
    boom.later("kaput", store)
    child = ok.later(6, store, after=[parent])
    jobkit.tick(store, jobs, limit=10)
    text = client.get(f"/jobs/{parent}").text
    assert Page(text).by_id("result")
    assert "Not claimed yet." not in text
    child_page = client.get(f"/jobs/{child}")
    assert Page(child_page.text).by_id("dependencies")
    assert f'href="/jobs/{parent}"' in child_page.text
    (failed,) = store.list_jobs(status=JobStatus.FAILED)
    failed_page = html.unescape(client.get(f"/jobs/{failed.id}").text)
    assert "kaput" in failed_page
    assert 'id="traceback"' in failed_page


def test_an_unknown_job_is_a_404_page(store: Store, client: TestClient) -> None:
    response = client.get("/jobs/no-such-job")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No job no-such-job" in response.text
    assert client.get(f"/jobs/{quote('a job?')}").status_code == 404


def test_healthz_answers_json(store: Store, client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["ok"] is True
    assert body["read_only"] is False
    assert isinstance(body["store"], str) and body["store"]


def test_healthz_needs_no_credentials_when_auth_is_on(store: Store) -> None:
    with TestClient(create_app(store, auth="admin:s3cret")) as client:
        assert client.get("/").status_code == 401
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["ok"] is True


def test_the_static_files_are_served(store: Store, client: TestClient) -> None:
    page = Page(client.get("/").text)
    links = [e.attrs["href"] for e in page.find("link")]
    sources = [e.attrs["src"] for e in page.find("script")] + [link for link in links if not link.startswith("data:")]
    assert sorted(sources) == ["/static/htmx.min.js", "/static/style.css"]
    assert "data:," in links, "an empty icon: no request for /favicon.ico, which a mounted app does not serve"
    for source in sources:
        response = client.get(source)
        assert response.status_code == 200, source
        assert len(response.content) > 100


def test_the_schedules_page_lists_each_schedule(store: Store, client: TestClient) -> None:
    jobkit.schedule(store, ok, "0 3 * * *", 7, name="nightly")
    jobkit.schedule(store, ok, "*/5 * * * *", 8, name="often", enabled=False)
    page = Page(client.get("/schedules").text)
    assert [row.attrs["data-schedule"] for row in page.find("tr") if "data-schedule" in row.attrs] == [
        "nightly",
        "often",
    ]
    actions = sorted(form.attrs["action"] for form in page.forms)
    assert actions == [
        "/schedules/nightly/disable",
        "/schedules/nightly/run",
        "/schedules/often/enable",
        "/schedules/often/run",
    ]


def test_the_queues_page_offers_pause_or_resume(store: Store, client: TestClient) -> None:
    put(store, JobStatus.PENDING, at(1), queue="emails")
    put(store, JobStatus.PENDING, at(2), queue="images")
    jobkit.pause(store, "images")
    page = Page(client.get("/queues").text)
    assert sorted(form.attrs["action"] for form in page.forms) == ["/queues/emails/pause", "/queues/images/resume"]
