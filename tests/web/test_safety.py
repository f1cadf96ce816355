"""Who may act: the CSRF token, read-only dashboards, HTTP Basic auth, and where an action may send the browser."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

import jobkit
from jobkit.errors import ValidationError
from jobkit.model import JobStatus
from jobkit.store import Store
from jobkit.web import create_app
from jobkit.web.security import AUTH_ENV, csrf_token
from tests.support import record
from tests.web.conftest import Page, at, dashboard, notice, ok, post, put, state, token

PENDING, RUNNING, COMPLETED = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED
FAILED, CANCELLED = JobStatus.FAILED, JobStatus.CANCELLED


def scene(store: Store) -> dict[str, str]:
    """A job of every status, a queue, a schedule: something for each action to change."""
    made = {status.value: put(store, status, at(n), queue="emails") for n, status in enumerate(JobStatus)}
    jobkit.schedule(store, ok, "0 3 * * *", 7, name="nightly")
    return made


def actions(made: dict[str, str]) -> list[tuple[str, dict[str, object]]]:
    """Every action the dashboard has, each as it would change the scene."""
    return [
        (f"/jobs/{made['failed']}/retry", {}),
        (f"/jobs/{made['pending']}/cancel", {}),
        (f"/jobs/{made['completed']}/purge", {}),
        ("/jobs/actions", {"action": "purge", "job": [made["completed"], made["cancelled"]]}),
        ("/jobs/actions", {"action": "cancel", "job": [made["pending"], made["running"]]}),
        ("/jobs/matching", {"action": "cancel"}),
        ("/jobs/matching", {"action": "purge", "as_of": "2100-01-01T00:00:00"}),
        ("/queues/emails/pause", {}),
        ("/schedules/nightly/disable", {}),
        ("/schedules/nightly/run", {}),
    ]


# -- CSRF -----------------------------------------------------------------------------------
@pytest.mark.parametrize("offered", [None, "", "wrong", "0" * 64])
def test_an_action_without_the_right_token_is_403_and_changes_nothing(
    store: Store, client: TestClient, offered: str | None
) -> None:
    made = scene(store)
    before = state(store)
    for url, fields in actions(made):
        data = dict(fields) if offered is None else {**fields, "csrf_token": offered}
        response = client.post(url, data=data, follow_redirects=False)
        assert response.status_code == 403, url
        assert "CSRF" in response.text
    assert state(store) == before


def test_a_wrong_token_in_the_header_is_403_even_with_the_right_one_in_the_form(
    store: Store, client: TestClient
) -> None:
    made = scene(store)
    before = state(store)
    for url, fields in actions(made):
        response = client.post(
            url, data={**fields, "csrf_token": token(client)}, headers={"X-CSRF-Token": "wrong"}, follow_redirects=False
        )
        assert response.status_code == 403, url
    assert state(store) == before


def test_the_token_in_a_header_works(store: Store, client: TestClient) -> None:
    made = scene(store)
    response = client.post(
        f"/jobs/{made['failed']}/retry", headers={"X-CSRF-Token": token(client)}, follow_redirects=False
    )
    assert notice(response) == "retried 1 job"
    assert record(store, made["failed"]).status is PENDING
    response = client.post("/queues/emails/pause", headers={"X-CSRF-Token": token(client)}, follow_redirects=False)
    assert notice(response) == "queue emails paused"


def test_every_action_works_with_the_token(store: Store, client: TestClient) -> None:
    made = scene(store)
    for url, fields in actions(made):
        response = post(client, url, fields)
        assert response.status_code in (200, 303), f"{url}: {response.status_code} {response.text}"


def test_another_apps_token_is_refused_and_a_shared_secret_is_accepted(store: Store) -> None:
    made = scene(store)
    before = state(store)
    other = csrf_token(dashboard(create_app(store)).secret)
    with TestClient(create_app(store)) as client:
        assert token(client) != other
        response = client.post(f"/jobs/{made['failed']}/retry", data={"csrf_token": other}, follow_redirects=False)
        assert response.status_code == 403
    assert state(store) == before
    shared = csrf_token(dashboard(create_app(store, secret="one secret")).secret)
    with TestClient(create_app(store, secret="one secret")) as client:
        assert token(client) == shared
        response = client.post(f"/jobs/{made['failed']}/retry", data={"csrf_token": shared}, follow_redirects=False)
        assert notice(response) == "retried 1 job"


def test_every_form_that_posts_carries_the_token(store: Store, client: TestClient) -> None:
    made = scene(store)
    expected = token(client)
    for path in ["/", "/jobs", "/queues", "/schedules", *(f"/jobs/{job_id}" for job_id in made.values())]:
        page = Page(client.get(path).text)
        for index, form in enumerate(page.forms):
            if form.attrs.get("method") == "post":
                assert page.fields(index).get("csrf_token") == expected, f"a form of {path} has no token"


# -- read-only ------------------------------------------------------------------------------
@pytest.fixture
def read_only(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store, read_only=True, secret="shared")) as client:
        yield client


def read_only_pages(store: Store, made: dict[str, str]) -> list[str]:
    return ["/", "/jobs", "/jobs?status=failed", "/queues", "/schedules", *(f"/jobs/{i}" for i in made.values())]


def test_a_read_only_dashboard_shows_no_action_controls(store: Store, read_only: TestClient) -> None:
    made = scene(store)
    for path in read_only_pages(store, made):
        response = read_only.get(path)
        assert response.status_code == 200, path
        assert "csrf_token" not in response.text, path
        page = Page(response.text)
        for button in page.find("button"):  # the jobs filter's button, in its GET form, is no action
            assert button.form is not None and page.forms[button.form].attrs.get("method") == "get", path
        assert not page.find("input", type="checkbox"), path
    assert read_only.get("/").text.count('id="read-only"') == 1
    assert read_only.get("/healthz").json()["read_only"] is True


def test_a_read_only_dashboard_has_no_form_that_posts(store: Store, read_only: TestClient) -> None:
    made = scene(store)
    for path in read_only_pages(store, made):
        page = Page(read_only.get(path).text)
        posting = [form.attrs for form in page.forms if form.attrs.get("method", "get").lower() == "post"]
        assert posting == [], f"{path} holds a form that posts: {posting}"


def test_a_read_only_dashboard_refuses_every_action(store: Store, read_only: TestClient) -> None:
    made = scene(store)
    before = state(store)
    right = csrf_token(dashboard(create_app(store, secret="shared")).secret)  # the token a writable twin takes
    for url, fields in actions(made):
        for headers in ({}, {"X-CSRF-Token": right}):
            response = read_only.post(
                url, data={**fields, "csrf_token": right}, headers=headers, follow_redirects=False
            )
            assert response.status_code == 403, url
            assert "read-only" in response.text
    assert state(store) == before


# -- auth -----------------------------------------------------------------------------------
def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.fixture
def guarded(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store, auth="admin:s3cret")) as client:
        yield client


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("admin:wrong"),
        basic("root:s3cret"),
        basic("admin:"),
        basic("admin:s3cret "),
        basic("admin:s3cret:more"),
        {"Authorization": "Basic not base64!"},
        {"Authorization": "Bearer admin:s3cret"},
        {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()[:-2]},
    ],
    ids=["none", "wrong-password", "wrong-user", "no-password", "trailing-space", "longer", "junk", "bearer", "cut"],
)
def test_without_the_right_credentials_is_401(store: Store, guarded: TestClient, headers: dict[str, str]) -> None:
    made = scene(store)
    before = state(store)
    for path in [
        "/",
        "/jobs",
        f"/jobs/{made['failed']}",
        "/queues",
        "/schedules",
        "/metrics",
        "/live/overview",
        "/live/queues",
        "/static/style.css",
    ]:
        response = guarded.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Basic realm="jobkit"'
    for url, fields in actions(made):
        assert guarded.post(url, data=fields, headers=headers, follow_redirects=False).status_code == 401
    assert state(store) == before


def test_with_the_right_credentials_every_page_and_action_works(store: Store, guarded: TestClient) -> None:
    made = scene(store)
    right = basic("admin:s3cret")
    for path in ["/", "/jobs", f"/jobs/{made['failed']}", "/queues", "/schedules", "/metrics", "/static/style.css"]:
        assert guarded.get(path, headers=right).status_code == 200, path
    csrf = token(guarded, headers=right)
    response = guarded.post(
        f"/jobs/{made['failed']}/retry", data={"csrf_token": csrf}, headers=right, follow_redirects=False
    )
    assert notice(response) == "retried 1 job"
    assert guarded.get("/healthz").status_code == 200


@pytest.mark.parametrize("auth", ["admin:pa:ss", ("admin", "pa:ss")])
def test_a_password_may_hold_a_colon(store: Store, auth: str | tuple[str, str]) -> None:
    with TestClient(create_app(store, auth=auth)) as client:
        assert client.get("/", headers=basic("admin:pa:ss")).status_code == 200
        assert client.get("/", headers=basic("admin:pa")).status_code == 401


def test_auth_comes_from_the_environment(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_ENV, "env:word")
    with TestClient(create_app(store)) as client:
        assert client.get("/").status_code == 401
        assert client.get("/", headers=basic("env:word")).status_code == 200
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("auth", ["nocolon", ":password", "user:"])
def test_bad_credentials_are_refused_when_the_app_is_made(store: Store, auth: str) -> None:
    with pytest.raises(ValidationError, match="USER:PASSWORD") as caught:
        create_app(store, auth=auth)
    assert "password" not in str(caught.value.value) and "nocolon" not in str(caught.value)


# -- where an action sends the browser ------------------------------------------------------
OFF_SITE = [
    "https://evil.example/",
    "https://evil.example/?a=1",
    "//evil",
    "//evil.example/jobs?x=1",
    "\\\\evil.example",
    "javascript:alert(1)",
    "http:/evil.example",
    "evil.example",
    "",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_an_off_site_next_goes_to_the_dashboard_instead(store: Store, client: TestClient, target: str) -> None:
    job_id = put(store, FAILED, at(1))
    response = post(client, f"/jobs/{job_id}/retry", {"next": target})
    assert notice(response) == "retried 1 job"
    location = response.headers["location"]
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    assert parts.path == "/", location
    assert record(store, job_id).status is PENDING


@pytest.mark.parametrize("target", ["/\\evil.example", "/\\/evil.example", "/\t/evil.example", "/%2F/evil.example"])
def test_a_next_that_a_browser_could_read_as_another_host_stays_on_this_one(
    store: Store, client: TestClient, target: str
) -> None:
    job_id = put(store, FAILED, at(1))
    location = post(client, f"/jobs/{job_id}/retry", {"next": target}).headers["location"]
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    assert location.startswith("/") and location[1:2] not in ("/", "\\", "\t"), location


def test_a_next_on_the_dashboard_is_kept_with_its_query(store: Store, client: TestClient) -> None:
    job_id = put(store, FAILED, at(1))
    response = post(client, f"/jobs/{job_id}/retry", {"next": "/jobs?status=failed&queue=emails"})
    location = urlsplit(response.headers["location"])
    assert location.path == "/jobs"
    assert location.query.startswith("status=failed&queue=emails&notice=")


def test_the_confirmations_way_back_stays_on_the_dashboard(store: Store, client: TestClient) -> None:
    put(store, FAILED, at(1))
    for target in OFF_SITE[:-1]:
        response = post(client, "/jobs/matching", {"action": "retry", "next": target})
        assert response.status_code == 200
        found = re.search(r'<a href="([^"]*)">No, go back</a>', response.text)
        assert found, response.text
        back = html.unescape(found.group(1))
        parts = urlsplit(back)
        assert not parts.scheme and not parts.netloc and back.startswith("/"), f"next={target!r} gave {back!r}"
