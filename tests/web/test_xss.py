"""Every value from the database or the request is shown as text (every store): no page, no live fragment runs it.

Each of :data:`PAYLOADS` goes into every field a page shows (params, result, error,
traceback, job name, queue, correlation id, unique key, progress message, worker id, a
schedule's name and params) and into the request itself (filters, the notice, a job id in
the path, a bulk action's filter). The pages must hold none of them unescaped, and must
still show them, escaped, where they belong.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote, urlencode

import pytest
from starlette.testclient import TestClient

import jobkit
from jobkit.model import JobStatus
from jobkit.store import Store
from tests.web.conftest import PAYLOADS, assert_escaped, at, boom, jobs, live_parts, post, put

echo = jobkit.Registry()


@echo.job(name="web.echo")
def echo_job(params: str, ctx: jobkit.Context) -> str:
    return params


def hostile(store: Store, payload: str) -> dict[str, str]:
    """A job of each status with *payload* in every field the pages show, and a schedule named with it."""
    fields = {
        "job_name": payload,
        "queue": payload,
        "correlation_id": payload,
        "unique_key": None,
        "params": json.dumps({"note": payload}),
    }
    made = {
        "failed": put(
            store, JobStatus.FAILED, at(1), **fields, error=f"ValueError: {payload}", traceback=f"Traceback\n{payload}"
        ),
        "completed": put(store, JobStatus.COMPLETED, at(2), **fields, result=json.dumps([payload])),
        "running": put(
            store,
            JobStatus.RUNNING,
            at(3),
            **{**fields, "unique_key": payload},
            progress=40,
            progress_message=f"{payload}\n{payload}",
            worker_id=payload,
        ),
        "pending": put(store, JobStatus.PENDING, at(4), **fields),
    }
    jobkit.schedule(store, echo_job, "0 3 * * *", payload, name=payload)
    return made


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_page_shows_a_stored_value_unescaped(store: Store, client: TestClient, payload: str) -> None:
    made = hostile(store, payload)
    pages = ["/", "/jobs", "/queues", "/schedules", *(f"/jobs/{job_id}" for job_id in made.values())]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_escaped(response.text, path)
    for path in ("/jobs", f"/jobs/{made['failed']}", f"/jobs/{made['running']}"):
        assert payload in html.unescape(client.get(path).text), f"{path} does not show the value at all"
    failed = html.unescape(client.get(f"/jobs/{made['failed']}").text)
    assert f"ValueError: {payload}" in failed and f"Traceback\n{payload}" in failed


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_request_value_comes_back_unescaped(store: Store, client: TestClient, payload: str) -> None:
    hostile(store, payload)
    urls = [
        f"/jobs?{urlencode({'queue': payload, 'name': payload, 'correlation_id': payload, 'text': payload})}",
        f"/jobs?{urlencode({'status': payload})}",  # the 400 page names it
        f"/jobs?{urlencode({'created_from': payload})}",
        f"/jobs?{urlencode({'after': payload})}",
        f"/jobs?{urlencode({'after': f'2026-01-01T00:00:00+00:00~{payload}'})}",
        f"/?{urlencode({'notice': payload})}",
        f"/jobs/{quote(payload.replace('/', ''), safe='')}",  # the 404 page names the id (a / would make it an action)
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code in (200, 400, 404), url
        assert_escaped(response.text, url)
    assert payload in html.unescape(client.get(f"/?{urlencode({'notice': payload})}").text)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_bulk_confirmation_shows_its_filter_escaped(store: Store, client: TestClient, payload: str) -> None:
    hostile(store, payload)
    response = post(client, "/jobs/matching", {"action": "retry", "queue": payload, "next": f"/jobs?q={payload}"})
    assert response.status_code == 200, response.text
    assert_escaped(response.text, "the confirmation page")
    assert "4 jobs match" in html.unescape(response.text)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_an_action_notice_shows_a_value_escaped(store: Store, client: TestClient, payload: str) -> None:
    made = hostile(store, payload)
    response = post(client, f"/jobs/{made['failed']}/retry", {"next": "/jobs"})
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert_escaped(page.text, "the page after an action")
    response = post(client, f"/queues/{quote(payload, safe='')}/pause", {"next": "/queues"})
    assert_escaped(response.text, "the answer to a bad queue name")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_live_fragment_holds_a_value_unescaped(store: Store, client: TestClient, payload: str) -> None:
    made = hostile(store, payload)
    events = live_parts(client, f"/live?job={made['running']}", {"counts", "running", "queues", "job"})
    for event in events:
        assert_escaped(event.data, f"the {event.name} event")
    shown = {event.name: html.unescape(event.data) for event in events}
    assert payload in shown["running"] and payload in shown["queues"] and payload in shown["job"]


def test_a_progress_message_is_shown_as_the_text_it_is(store: Store, client: TestClient) -> None:
    forged = "\n\nevent: counts\ndata: <img src=x onerror=alert(1)>\r\revent: evil\rdata: x\r\n\r\nevent: evil\n"
    job_id = put(store, JobStatus.RUNNING, at(1), progress=10, progress_message=forged)
    events = live_parts(client, f"/live?job={job_id}", {"counts", "running", "queues", "job"})
    assert sorted(event.name for event in events) == ["counts", "job", "queues", "running"]
    for event in events:
        assert_escaped(event.data, f"the {event.name} event")
    (state,) = [event.data for event in events if event.name == "job"]
    assert "event: evil" in html.unescape(state)  # shown as the text it is


def test_a_real_failure_is_escaped_too(store: Store, client: TestClient) -> None:
    # a real job, run by a worker, whose failure message holds markup
    job_id = boom.later(PAYLOADS[1], store)
    jobkit.tick(store, jobs, limit=1)
    text = client.get(f"/jobs/{job_id}").text
    assert_escaped(text, "the failed job's page")
    assert PAYLOADS[1] in html.unescape(text)
