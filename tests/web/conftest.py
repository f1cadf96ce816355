"""The dashboard's HTTP tests: an app on the ``store`` fixture, a TestClient, and the helpers the tests share.

The app is built with ``create_app(store)`` (a store passed in stays open: the ``store``
fixture closes it) and its tally settles at once, so totals count a job as soon as it
finishes. Records are written directly (:func:`put`) where a test needs a status or a
time, or made by a Registry's specs and run by ``jobkit.tick``. Nothing sleeps: the live
stream is read for a bounded number of lines, and closed by a watchdog if what a test
waits for never comes.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx2 as httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import jobkit
from jobkit.model import JobRecord, JobStatus, new_id
from jobkit.store import Store
from jobkit.web import create_app
from jobkit.web.state import Dashboard
from tests.support import T0, make_job

PAYLOADS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    '" autofocus onfocus="alert(1)',
)
"""What a job's params, error, name, queue... may hold; a page shows each as text, never as markup."""

RAW = ("<script>alert", "<img", 'onfocus="alert')
"""What one of :data:`PAYLOADS` looks like when it reaches a page unescaped."""

LONG_AGO = timedelta(days=3650)  # a lease that outlives every test

jobs = jobkit.Registry()


@jobs.job(name="web.ok", max_attempts=1)
def ok(params: int, ctx: jobkit.Context) -> int:
    return params


@jobs.job(name="web.boom", max_attempts=1)
def boom(params: str, ctx: jobkit.Context) -> int:
    raise ValueError(params)


# -- the app and its client -----------------------------------------------------------------
def dashboard(app: ASGIApp) -> Dashboard:
    """The Dashboard of an app create_app made (without base_path or auth: those wrap it)."""
    return cast(Dashboard, cast(Starlette, app).state.dashboard)


@pytest.fixture
def app(store: Store) -> ASGIApp:
    made = create_app(store)
    dashboard(made).tally.settle = timedelta(0)
    return made


@pytest.fixture
def client(app: ASGIApp) -> Iterator[TestClient]:
    with TestClient(app) as made:
        yield made


# -- records --------------------------------------------------------------------------------
def put(store: Store, status: JobStatus, at: datetime, **fields: Any) -> str:
    """A job in *status*, created at *at*, written directly: the fields each status needs are filled in."""
    job_id = fields.pop("id", None) or new_id()
    values: dict[str, Any] = {
        "job_name": "web.ok",
        "params": "1",
        "status": status,
        "scheduled_for": at,
        "created_at": at,
        "updated_at": at,
    }
    if status is JobStatus.RUNNING:
        values.update(
            worker_id=f"worker-{new_id()}",
            worker_started_at=at,
            worker_expires_at=at + LONG_AGO,
            attempt_count=1,
        )
    if status.finished:
        values.update(completed_at=at + timedelta(seconds=1), updated_at=at + timedelta(seconds=1), attempt_count=1)
    if status is JobStatus.FAILED:
        values.update(error="ValueError: it broke", max_attempts=1)
    values.update(fields)
    job = make_job(job_id, **values)
    store.add([job])
    return job.id


def at(seconds: float) -> datetime:
    """T0 and *seconds*: the creation times of records written directly."""
    return T0 + timedelta(seconds=seconds)


@attrs.frozen
class State:
    """Everything an action could change: each job's record, the queues' pauses, the schedules."""

    jobs: tuple[JobRecord, ...]
    paused: tuple[tuple[str, bool], ...]
    schedules: tuple[tuple[str, bool, str | None], ...]


def state(store: Store) -> State:
    return State(
        jobs=tuple(sorted(store.list_jobs(limit=100_000), key=lambda job: job.id)),
        paused=tuple((info.name, info.paused) for info in store.queues()),
        schedules=tuple((entry.name, entry.enabled, entry.last_job_id) for entry in store.list_schedules()),
    )


# -- pages ----------------------------------------------------------------------------------
@attrs.define
class Element:
    tag: str
    attrs: dict[str, str]
    form: int | None  # the index of the form it is in, if any


class Page(HTMLParser):
    """The elements of a page, each with its attributes and the form it sits in; the text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.elements: list[Element] = []
        self.forms: list[Element] = []
        self._form: int | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Element(tag, values, None))
            self._form = len(self.forms) - 1
        self.elements.append(Element(tag, values, self._form))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None

    def find(self, tag: str, **wanted: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and all(e.attrs.get(k) == v for k, v in wanted.items())]

    def by_id(self, element_id: str) -> Element:
        (found,) = [e for e in self.elements if e.attrs.get("id") == element_id]
        return found

    def fields(self, form: int) -> dict[str, str]:
        """The hidden and text inputs of form number *form*, as a browser would send them (no buttons)."""
        return {
            e.attrs["name"]: e.attrs.get("value", "")
            for e in self.elements
            if e.form == form and e.tag == "input" and "name" in e.attrs and e.attrs.get("type") != "checkbox"
        }

    def form_with(self, **wanted: str) -> int:
        (index,) = [i for i, form in enumerate(self.forms) if all(form.attrs.get(k) == v for k, v in wanted.items())]
        return index

    def urls(self) -> list[str]:
        """Every URL the page names: links, scripts, styles, form actions, the live parts htmx asks for.

        ``data:`` URLs (the empty icon) name nothing on any server.
        """
        return [
            e.attrs[name]
            for e in self.elements
            for name in ("href", "src", "action", "hx-get")
            if name in e.attrs and not e.attrs[name].startswith("data:")
        ]

    def listed(self) -> list[str]:
        """The ids of the jobs in the jobs page's list, in order."""
        return [e.attrs["data-job"] for e in self.elements if e.tag == "tr" and "data-job" in e.attrs]


def listed(client: TestClient, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return Page(response.text).listed()


def token(client: TestClient, path: str = "/jobs", **kwargs: Any) -> str:
    """The CSRF token the page's forms carry."""
    response = client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    (value,) = {e.attrs["value"] for e in Page(response.text).find("input", name="csrf_token")}
    return value


def post(client: TestClient, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
    """A POST the way a dashboard form sends it (with the page's token), not following the redirect."""
    fields = {"csrf_token": token(client), **(data or {})}
    return client.post(url, data=fields, follow_redirects=False, **kwargs)


def notice(response: httpx.Response) -> str:
    """What the redirect after an action says was done."""
    assert response.status_code == 303, f"{response.status_code}: {response.text}"
    found = parse_qs(urlsplit(response.headers["location"]).query).get("notice")
    assert found, f"no notice in {response.headers['location']}"
    return found[-1]


def error_text(response: httpx.Response) -> str:
    """The message of a 400 page."""
    assert response.status_code == 400, response.text
    page = Page(response.text)
    assert page.find("p", id="error"), response.text
    start = response.text.index('id="error">') + len('id="error">')
    return html.unescape(response.text[start : response.text.index("</p>", start)])


def assert_escaped(text: str, where: str) -> None:
    for raw in RAW:
        assert raw not in text, f"{raw!r} reached {where} unescaped"


# -- the live stream ------------------------------------------------------------------------
@attrs.frozen
class Event:
    """One live part of the dashboard, as htmx asks for it: its name and its HTML."""

    name: str
    data: str


def live_parts(client: TestClient, url: str, wanted: set[str]) -> list[Event]:
    """The live parts a page at *url* (``PREFIX/live`` or ``PREFIX/live?job=ID``) asks for every second.

    ``counts`` and ``running`` are in the overview's body (``/live/overview``), ``queues``
    is the queues page's table (``/live/queues``), ``job`` one job's state (``/live/jobs/ID``).
    """
    prefix, _, rest = url.partition("/live")
    job_id = rest.partition("job=")[2]
    answers = {"overview": client.get(f"{prefix}/live/overview"), "queues": client.get(f"{prefix}/live/queues")}
    if job_id:
        answers["job"] = client.get(f"{prefix}/live/jobs/{job_id}")
    for where, response in answers.items():
        assert response.status_code == 200, f"{where}: {response.status_code}"
        assert response.headers["content-type"].startswith("text/html")
    found = [Event("counts", answers["overview"].text), Event("running", answers["overview"].text)]
    found.append(Event("queues", answers["queues"].text))
    if job_id:
        found.append(Event("job", answers["job"].text))
    missing = wanted - {e.name for e in found}
    assert not missing, f"no live part {missing}"
    return found
