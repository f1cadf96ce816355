"""The actions (every store): retry, cancel, purge one job, a selection, everything matching; queues; schedules.

Each answers 303 back to the page it came from with a notice saying what it did; a job an
action does not apply to is left exactly as it was.
"""

from __future__ import annotations

import html
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

import jobkit
from jobkit.model import JobStatus
from jobkit.store import Store
from jobkit.web.filters import parse_time
from tests.support import record
from tests.web.conftest import Page, at, jobs, notice, ok, post, put, state

PENDING, RUNNING, COMPLETED = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED
FAILED, CANCELLED = JobStatus.FAILED, JobStatus.CANCELLED


# -- one job --------------------------------------------------------------------------------
def test_retry_one_failed_job(store: Store, client: TestClient) -> None:
    job_id = put(store, FAILED, at(1))
    response = post(client, f"/jobs/{job_id}/retry", {"next": f"/jobs/{job_id}"})
    assert notice(response) == "retried 1 job"
    assert urlsplit(response.headers["location"]).path == f"/jobs/{job_id}"
    assert record(store, job_id).status is PENDING
    page = client.get(response.headers["location"])
    assert Page(page.text).by_id("notice")
    assert "retried 1 job" in page.text


def test_cancel_one_pending_job(store: Store, client: TestClient) -> None:
    job_id = put(store, PENDING, at(1))
    response = post(client, f"/jobs/{job_id}/cancel", {"next": "/jobs"})
    assert notice(response) == "cancelled (or asked to stop) 1 job"
    assert record(store, job_id).status is CANCELLED


def test_cancel_one_running_job_asks_it_to_stop(store: Store, client: TestClient) -> None:
    job_id = put(store, RUNNING, at(1))
    assert notice(post(client, f"/jobs/{job_id}/cancel")) == "cancelled (or asked to stop) 1 job"
    after = record(store, job_id)
    assert after.status is RUNNING and after.cancel_requested
    assert "(cancel asked)" in client.get(f"/jobs/{job_id}").text


@pytest.mark.parametrize("status", [COMPLETED, FAILED, CANCELLED])
def test_purge_one_finished_job(store: Store, client: TestClient, status: JobStatus) -> None:
    job_id = put(store, status, at(1))
    kept = put(store, status, at(2))
    assert notice(post(client, f"/jobs/{job_id}/purge", {"next": "/jobs"})) == "purged 1 job"
    assert store.get(job_id) is None
    assert store.get(kept) is not None
    assert client.get(f"/jobs/{job_id}").status_code == 404


NOT_ELIGIBLE = [
    (PENDING, "retry", "retried"),
    (RUNNING, "retry", "retried"),
    (COMPLETED, "retry", "retried"),
    (COMPLETED, "cancel", "cancelled"),
    (FAILED, "cancel", "cancelled"),
    (PENDING, "purge", "purged"),
    (RUNNING, "purge", "purged"),
]


@pytest.mark.parametrize(("status", "action", "done"), NOT_ELIGIBLE)
def test_an_action_that_does_not_apply_changes_nothing_and_says_so(
    store: Store, client: TestClient, status: JobStatus, action: str, done: str
) -> None:
    job_id = put(store, status, at(1))
    before = record(store, job_id)
    said = notice(post(client, f"/jobs/{job_id}/{action}", {"next": "/jobs"}))
    assert record(store, job_id) == before
    assert said == f"job {job_id} is {status.value}: it cannot be {done}"


def test_an_action_on_an_unknown_job_says_it_is_not_there(store: Store, client: TestClient) -> None:
    assert "is not there" in notice(post(client, "/jobs/no-such-job/retry"))


def test_an_unknown_action_is_a_400(store: Store, client: TestClient) -> None:
    job_id = put(store, FAILED, at(1))
    before = state(store)
    response = post(client, f"/jobs/{job_id}/explode")
    assert response.status_code == 400
    assert "action must be one of retry, cancel, purge" in html.unescape(response.text)
    assert state(store) == before


def test_a_job_action_by_get_is_not_allowed(store: Store, client: TestClient) -> None:
    job_id = put(store, FAILED, at(1))
    assert client.get(f"/jobs/{job_id}/retry").status_code == 405
    assert record(store, job_id).status is FAILED


# -- a selection ----------------------------------------------------------------------------
def test_retry_a_selection(store: Store, client: TestClient) -> None:
    first, second = put(store, FAILED, at(1)), put(store, CANCELLED, at(2))
    pending, completed = put(store, PENDING, at(3)), put(store, COMPLETED, at(4))
    untouched = put(store, FAILED, at(5))
    before = {job_id: record(store, job_id) for job_id in (pending, completed, untouched)}
    chosen = [first, second, pending, completed, "no-such-job", first]
    response = post(client, "/jobs/actions", {"action": "retry", "job": chosen, "next": "/jobs?status=failed"})
    assert notice(response) == ("retried 2 jobs; 3 left as they were (not failed or cancelled, or changed meanwhile)")
    assert parse_qs(urlsplit(response.headers["location"]).query)["status"] == ["failed"]
    assert record(store, first).status is PENDING and record(store, second).status is PENDING
    assert {job_id: record(store, job_id) for job_id in before} == before


def test_cancel_a_selection(store: Store, client: TestClient) -> None:
    pending, running, completed = put(store, PENDING, at(1)), put(store, RUNNING, at(2)), put(store, COMPLETED, at(3))
    before = record(store, completed)
    said = notice(post(client, "/jobs/actions", {"action": "cancel", "job": [pending, running, completed]}))
    assert said == ("cancelled (or asked to stop) 2 jobs; 1 left as it was (already finished, or changed meanwhile)")
    assert record(store, pending).status is CANCELLED
    assert record(store, running).cancel_requested
    assert record(store, completed) == before


def test_purge_a_selection(store: Store, client: TestClient) -> None:
    finished = [put(store, status, at(n)) for n, status in enumerate((COMPLETED, FAILED, CANCELLED))]
    pending = put(store, PENDING, at(5))
    said = notice(post(client, "/jobs/actions", {"action": "purge", "job": [*finished, pending]}))
    assert said == "purged 3 jobs; 1 left as it was (not finished, or changed meanwhile)"
    assert all(store.get(job_id) is None for job_id in finished)
    assert store.get(pending) is not None


def test_a_selection_of_nothing_does_nothing(store: Store, client: TestClient) -> None:
    put(store, FAILED, at(1))
    before = state(store)
    assert notice(post(client, "/jobs/actions", {"action": "retry"})) == "no job was selected: nothing was done"
    assert state(store) == before


def test_the_jobs_page_form_acts_on_the_boxes_ticked(store: Store, client: TestClient) -> None:
    failed = [put(store, FAILED, at(n)) for n in range(3)]
    page = Page(client.get("/jobs?status=failed").text)
    form = page.form_with(id="selection")
    assert page.forms[form].attrs == {"method": "post", "action": "/jobs/actions", "id": "selection"}
    boxes = [e.attrs["value"] for e in page.elements if e.form == form and e.attrs.get("name") == "job"]
    assert sorted(boxes) == sorted(failed)
    fields = page.fields(form)
    assert fields["next"] == "/jobs?status=failed"
    response = client.post(
        "/jobs/actions", data={**fields, "action": "retry", "job": boxes[:2]}, follow_redirects=False
    )
    assert notice(response) == "retried 2 jobs"
    assert [record(store, job_id).status for job_id in failed].count(PENDING) == 2


# -- everything matching --------------------------------------------------------------------
def confirm(client: TestClient, action: str, **filters: str) -> tuple[Page, dict[str, str]]:
    """Step one: the confirmation page for *action* on what *filters* match, and its form's fields."""
    response = post(client, "/jobs/matching", {"action": action, "next": "/jobs", **filters})
    assert response.status_code == 200, response.text
    page = Page(response.text)
    form = page.form_with(id="confirm")
    assert page.forms[form].attrs["action"] == "/jobs/matching"
    return page, page.fields(form)


def test_retry_everything_matching_counts_asks_and_then_acts(store: Store, client: TestClient) -> None:
    failed = [put(store, FAILED, at(n), queue="emails") for n in range(3)]
    other_queue = put(store, FAILED, at(4), queue="images")
    cancelled = put(store, CANCELLED, at(5), queue="emails")
    completed = put(store, COMPLETED, at(6), queue="emails")
    before = state(store)

    page, fields = confirm(client, "retry", queue="emails")
    assert state(store) == before, "the first step changed something"
    count = html.unescape(page.text[page.text.index('id="confirm-count"') :].split("</p>", 1)[0])
    assert "5 jobs match; retry applies to" in count and "<strong>4</strong>" in count
    assert fields["queue"] == "emails" and fields["action"] == "retry" and fields["as_of"]

    # a job that arrives after the count is not touched
    late = put(store, FAILED, parse_time("as_of", fields["as_of"]) + timedelta(seconds=1), queue="emails")
    response = client.post("/jobs/matching", data=fields, follow_redirects=False)
    assert notice(response) == (
        "retried 4 jobs; 1 left as it was (not failed or cancelled, or changed meanwhile), "
        "of those matching queue=emails"
    )
    assert urlsplit(response.headers["location"]).path == "/jobs"
    assert all(record(store, job_id).status is PENDING for job_id in [*failed, cancelled])
    assert record(store, late).status is FAILED
    assert record(store, other_queue).status is FAILED
    assert record(store, completed).status is COMPLETED


def test_purge_everything_matching_a_status(store: Store, client: TestClient) -> None:
    completed = [put(store, COMPLETED, at(n)) for n in range(4)]
    failed = put(store, FAILED, at(9))
    _, fields = confirm(client, "purge", status="completed")
    assert notice(client.post("/jobs/matching", data=fields, follow_redirects=False)) == (
        "purged 4 jobs, of those matching status=completed"
    )
    assert all(store.get(job_id) is None for job_id in completed)
    assert store.get(failed) is not None


def test_cancel_everything(store: Store, client: TestClient) -> None:
    pending, running = put(store, PENDING, at(1)), put(store, RUNNING, at(2))
    finished = [put(store, status, at(3 + n)) for n, status in enumerate((COMPLETED, FAILED, CANCELLED))]
    before = [record(store, job_id) for job_id in finished]
    page, fields = confirm(client, "cancel")
    assert "every job" in html.unescape(page.text)
    said = notice(client.post("/jobs/matching", data=fields, follow_redirects=False))
    assert said == (
        "cancelled (or asked to stop) 2 jobs; 3 left as they were (already finished, or changed meanwhile), "
        "of those matching every job"
    )
    assert record(store, pending).status is CANCELLED
    assert record(store, running).cancel_requested
    assert [record(store, job_id) for job_id in finished] == before


def test_everything_matching_takes_more_than_one_page(
    store: Store, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobkit.web.actions.BULK_PAGE", 7)
    failed = [put(store, FAILED, at(n // 3)) for n in range(23)]
    page, fields = confirm(client, "retry", status="failed")
    assert "23 jobs match" in html.unescape(page.text)
    assert notice(client.post("/jobs/matching", data=fields, follow_redirects=False)).startswith("retried 23 jobs,")
    assert all(record(store, job_id).status is PENDING for job_id in failed)


def test_the_jobs_page_offers_everything_matching_its_filter(store: Store, client: TestClient) -> None:
    put(store, FAILED, at(1), queue="emails")
    page = Page(client.get("/jobs?status=failed&queue=emails").text)
    form = page.form_with(id="matching")
    fields = page.fields(form)
    assert fields["status"] == "failed" and fields["queue"] == "emails"
    assert fields["next"] == "/jobs?status=failed&queue=emails"
    buttons = {e.attrs["value"] for e in page.find("button") if e.form == form}
    assert buttons == {"retry", "cancel", "purge"}


def test_everything_matching_with_a_bad_filter_is_a_400(store: Store, client: TestClient) -> None:
    put(store, FAILED, at(1))
    before = state(store)
    response = post(client, "/jobs/matching", {"action": "retry", "status": "broken"})
    assert response.status_code == 400
    assert "status must be one of" in html.unescape(response.text)
    response = post(client, "/jobs/matching", {"action": "retry", "as_of": "whenever"})
    assert response.status_code == 400
    assert "as_of" in html.unescape(response.text)
    response = post(client, "/jobs/matching", {"action": "nuke"})
    assert response.status_code == 400
    assert state(store) == before


# -- queues ---------------------------------------------------------------------------------
def test_pause_and_resume_a_queue(store: Store, client: TestClient) -> None:
    put(store, PENDING, at(1), queue="emails")
    response = post(client, "/queues/emails/pause", {"next": "/queues"})
    assert notice(response) == "queue emails paused"
    assert urlsplit(response.headers["location"]).path == "/queues"
    assert {info.name: info.paused for info in store.queues()} == {"emails": True}
    page = Page(client.get("/queues").text)
    assert [form.attrs["action"] for form in page.forms] == ["/queues/emails/resume"]

    assert notice(post(client, "/queues/emails/resume", {"next": "/queues"})) == "queue emails resumed"
    assert {info.name: info.paused for info in store.queues()} == {"emails": False}


def test_a_paused_queue_is_not_claimed_from(store: Store, client: TestClient) -> None:
    job_id = ok.later(1, store, queue="emails")
    post(client, "/queues/emails/pause")
    assert jobkit.tick(store, jobs, limit=5).claimed == 0
    post(client, "/queues/emails/resume")
    assert jobkit.tick(store, jobs, limit=5).completed == 1
    assert record(store, job_id).status is COMPLETED


def test_a_bad_queue_action_is_a_400(store: Store, client: TestClient) -> None:
    before = state(store)
    assert post(client, "/queues/emails/explode").status_code == 400
    assert post(client, "/queues/bad%20name/pause").status_code == 400
    assert state(store) == before


# -- schedules ------------------------------------------------------------------------------
def test_disable_enable_and_run_a_schedule(store: Store, client: TestClient) -> None:
    jobkit.schedule(store, ok, "0 3 * * *", 7, name="nightly")
    response = post(client, "/schedules/nightly/disable", {"next": "/schedules"})
    assert notice(response) == "schedule nightly disabled"
    assert urlsplit(response.headers["location"]).path == "/schedules"
    entry = store.get_schedule("nightly")
    assert entry is not None and not entry.enabled

    assert notice(post(client, "/schedules/nightly/enable", {"next": "/schedules"})) == "schedule nightly enabled"
    entry = store.get_schedule("nightly")
    assert entry is not None and entry.enabled

    said = notice(post(client, "/schedules/nightly/run", {"next": "/schedules"}))
    assert said.startswith("schedule nightly ran now: job ")
    job_id = said.rsplit(" ", 1)[1]
    made = record(store, job_id)
    assert made.job_name == "web.ok" and made.params == "7" and made.status is PENDING
    assert jobkit.tick(store, jobs, limit=5).completed == 1


def test_run_now_runs_a_disabled_schedule(store: Store, client: TestClient) -> None:
    jobkit.schedule(store, ok, "0 3 * * *", 8, name="off", enabled=False)
    said = notice(post(client, "/schedules/off/run"))
    assert record(store, said.rsplit(" ", 1)[1]).params == "8"
    entry = store.get_schedule("off")
    assert entry is not None and not entry.enabled


def test_an_unknown_schedule_is_said_so(store: Store, client: TestClient) -> None:
    before = state(store)
    said = notice(post(client, "/schedules/nowhere/disable", {"next": "/schedules"}))
    assert "nowhere" in said
    assert state(store) == before
    assert post(client, "/schedules/nowhere/explode").status_code == 400


def test_a_schedule_whose_name_has_a_slash_can_be_acted_on(store: Store, client: TestClient) -> None:
    # any non-empty name is a schedule name; the page's forms must reach it
    jobkit.schedule(store, ok, "0 3 * * *", 7, name="reports/daily")
    page = Page(client.get("/schedules").text)
    (disable,) = [form.attrs["action"] for form in page.forms if form.attrs["action"].endswith("/disable")]
    response = post(client, disable, {"next": "/schedules"})
    assert notice(response) == "schedule reports/daily disabled"
    entry = store.get_schedule("reports/daily")
    assert entry is not None and not entry.enabled


def test_a_schedule_with_spaces_and_symbols_in_its_name(store: Store, client: TestClient) -> None:
    name = "weekly report: a&b?c=d #1"
    jobkit.schedule(store, ok, "0 3 * * 1", 7, name=name)
    page = Page(client.get("/schedules").text)
    actions = sorted(form.attrs["action"] for form in page.forms)
    for action in actions:
        assert notice(post(client, action))
    said = notice(post(client, actions[1]))  # disable, then run again
    assert said.startswith(f"schedule {name} ran now")
    entry = store.get_schedule(name)
    assert entry is not None and not entry.enabled


def test_a_notice_replaces_the_one_before(store: Store, client: TestClient) -> None:
    first, second = put(store, FAILED, at(1)), put(store, FAILED, at(2))
    page = Page(client.get("/jobs?status=failed").text)
    response = client.post(
        "/jobs/actions",
        data={**page.fields(page.form_with(id="selection")), "action": "retry", "job": [first]},
        follow_redirects=False,
    )
    assert notice(response) == "retried 1 job"
    page = Page(client.get(response.headers["location"]).text)  # the page that says so, and acts again
    response = client.post(
        "/jobs/actions",
        data={**page.fields(page.form_with(id="selection")), "action": "retry", "job": [second]},
        follow_redirects=False,
    )
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["status"] == ["failed"]
    assert query["notice"] == ["retried 1 job"], f"the notices pile up: {response.headers['location']}"
