"""Under a prefix (every store): mounted in a Starlette app, or with ``base_path``, every URL it makes stays there.

Each page's links, scripts, styles, form actions and event streams must start with the
prefix, every one of them must answer there, and the redirect after an action must too.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import jobkit
from jobkit.model import JobStatus
from jobkit.store import Store
from jobkit.web import create_app
from tests.web.conftest import Page, at, live_parts, notice, ok, put, token


def scene(store: Store) -> dict[JobStatus, str]:
    made = {status: put(store, status, at(n), queue="emails") for n, status in enumerate(JobStatus)}
    jobkit.schedule(store, ok, "0 3 * * *", 7, name="nightly")
    return made


def host(dashboard: ASGIApp) -> Starlette:
    """An application of its own with the dashboard mounted at /admin/jobs."""

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("the host app")

    return Starlette(routes=[Route("/", home), Mount("/admin/jobs", app=dashboard)])


@pytest.fixture(params=["mounted", "base_path"])
def prefixed(request: pytest.FixtureRequest, store: Store) -> Iterator[tuple[TestClient, str]]:
    """A client of the dashboard under a prefix, and the prefix."""
    app: ASGIApp
    if request.param == "mounted":
        app, prefix = host(create_app(store)), "/admin/jobs"
    else:
        app, prefix = create_app(store, base_path="/jobs"), "/jobs"
    with TestClient(app) as client:
        yield client, prefix


def pages(prefix: str, made: dict[JobStatus, str]) -> list[str]:
    return [
        f"{prefix}/",
        f"{prefix}/jobs",
        f"{prefix}/jobs?status=failed&queue=emails",
        f"{prefix}/queues",
        f"{prefix}/schedules",
        f"{prefix}/jobs?status=nonsense",  # the 400 page
        f"{prefix}/jobs/no-such-job",  # the 404 page
        *(f"{prefix}/jobs/{job_id}" for job_id in made.values()),
    ]


def test_every_url_of_every_page_stays_under_the_prefix(store: Store, prefixed: tuple[TestClient, str]) -> None:
    client, prefix = prefixed
    made = scene(store)
    seen: set[str] = set()
    for path in pages(prefix, made):
        response = client.get(path)
        assert response.status_code in (200, 400, 404), path
        page = Page(response.text)
        urls = page.urls()
        assert urls, path
        for back in page.find("input", name="next"):
            assert back.attrs["value"].startswith(f"{prefix}/"), f"{path} sends next={back.attrs['value']}"
        for url in urls:
            assert url.startswith(f"{prefix}/"), f"{path} names {url}"
        seen.update(urls)
    confirm = client.post(
        f"{prefix}/jobs/matching", data={"csrf_token": token(client, f"{prefix}/jobs"), "action": "retry"}
    )
    assert confirm.status_code == 200
    for url in Page(confirm.text).urls():
        assert url.startswith(f"{prefix}/"), f"the confirmation names {url}"
    # and what they name is there
    for url in sorted(seen):
        if "/live" in url:
            continue
        response = client.get(url)
        if any(url.endswith(f"/jobs/{made[s]}/{a}") for s in JobStatus for a in ("retry", "cancel", "purge")):
            assert response.status_code == 405, url  # a form's action: POST only
        elif "/queues/" in url or "/schedules/" in url:
            assert response.status_code == 405, url
        elif url.endswith(("/jobs/actions", "/jobs/matching")):
            assert response.status_code in (404, 405), url
        else:
            assert response.status_code == 200, f"{url}: {response.status_code}"


def test_an_action_under_the_prefix_redirects_under_it(store: Store, prefixed: tuple[TestClient, str]) -> None:
    client, prefix = prefixed
    made = scene(store)
    page = Page(client.get(f"{prefix}/jobs/{made[JobStatus.FAILED]}").text)
    (retry,) = [i for i, form in enumerate(page.forms) if form.attrs.get("action", "").endswith("/retry")]
    fields = page.fields(retry)
    assert fields["next"] == f"{prefix}/jobs/{made[JobStatus.FAILED]}"
    response = client.post(page.forms[retry].attrs["action"], data=fields, follow_redirects=False)
    assert notice(response) == "retried 1 job"
    assert urlsplit(response.headers["location"]).path == f"{prefix}/jobs/{made[JobStatus.FAILED]}"
    for target in ("https://evil.example/", "/elsewhere/", "/", f"{prefix}x/"):
        response = client.post(
            f"{prefix}/queues/emails/pause",
            data={"csrf_token": fields["csrf_token"], "next": target},
            follow_redirects=False,
        )
        assert urlsplit(response.headers["location"]).path == f"{prefix}/", target


def test_the_live_parts_under_the_prefix_link_under_it(store: Store, prefixed: tuple[TestClient, str]) -> None:
    client, prefix = prefixed
    running = put(store, JobStatus.RUNNING, at(1), progress=20)
    events = live_parts(client, f"{prefix}/live?job={running}", {"counts", "running", "queues", "job"})
    for event in events:
        for url in Page(event.data).urls():
            assert url.startswith(f"{prefix}/"), f"the {event.name} event names {url}"
    assert client.get(f"{prefix}/healthz").json()["ok"] is True
    assert client.get(f"{prefix}/metrics").status_code == 200


def test_the_host_app_keeps_its_own_routes(store: Store) -> None:
    with TestClient(host(create_app(store))) as client:
        assert client.get("/").text == "the host app"
        assert client.get("/jobs").status_code == 404
        assert client.get("/admin/jobs/healthz").json()["ok"] is True


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def test_mounted_with_auth_healthz_needs_no_credentials(store: Store) -> None:
    with TestClient(host(create_app(store, auth="u:p"))) as client:
        assert client.get("/admin/jobs/").status_code == 401
        assert client.get("/admin/jobs/", headers=basic("u:p")).status_code == 200
        assert client.get("/admin/jobs/healthz").status_code == 200


def test_with_a_base_path_and_auth_healthz_needs_no_credentials(store: Store) -> None:
    with TestClient(create_app(store, base_path="/jobs", auth="u:p")) as client:
        assert client.get("/jobs/").status_code == 401
        assert client.get("/jobs/", headers=basic("u:p")).status_code == 200
        assert client.get("/jobs/healthz").status_code == 200, "a probe of /jobs/healthz was asked for credentials"


@pytest.mark.parametrize("base_path", ["jobs", "admin"])
def test_a_base_path_must_start_with_a_slash(store: Store, base_path: str) -> None:
    with pytest.raises(jobkit.ValidationError, match="base_path"):
        create_app(store, base_path=base_path)


def test_a_base_path_with_a_trailing_slash_is_the_same(store: Store) -> None:
    with TestClient(create_app(store, base_path="/ops/")) as client:
        page = Page(client.get("/ops/jobs").text)
        assert all(url.startswith("/ops/") and not url.startswith("/ops//") for url in page.urls())
