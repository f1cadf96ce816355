"""The jobs page (every store): each filter selects the right jobs, a bad one is a 400 naming it, the cursor pages.

Records are written directly, each at a time of its own, so that the expected selection is
known exactly; the paging walks follow the page's own "older" link, as a browser does.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from starlette.testclient import TestClient

from jobkit.model import JobStatus
from jobkit.store import Store
from jobkit.web.pages import PAGE_SIZE
from tests.web.conftest import Page, at, error_text, listed, put

PENDING, RUNNING, COMPLETED = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED
FAILED, CANCELLED = JobStatus.FAILED, JobStatus.CANCELLED


def scene(store: Store) -> dict[str, str]:
    """Five jobs, a second apart: a at T0, b at T0+1s, ... e at T0+4s."""
    return {
        "a": put(
            store,
            FAILED,
            at(0),
            queue="emails",
            job_name="web.mail",
            correlation_id="order-1",
            params='{"to": "Alice@example.com"}',
            error="SMTP refused: mailbox FULL",
        ),
        "b": put(
            store,
            COMPLETED,
            at(1),
            queue="emails",
            job_name="web.mail",
            correlation_id="order-2",
            params='{"to": "bob@example.com"}',
        ),
        "c": put(
            store, PENDING, at(2), queue="default", job_name="web.resize", correlation_id="order-1", params='{"u": 1}'
        ),
        "d": put(store, RUNNING, at(3), queue="images", job_name="web.resize", params='{"url": "needle.png"}'),
        "e": put(
            store, CANCELLED, at(4), queue="default", job_name="web.mail", params='{"to": "carol"}', error="by hand"
        ),
    }


CASES = [
    ({}, "edcba"),
    ({"status": "failed"}, "a"),
    ({"status": "pending"}, "c"),
    ({"status": "running"}, "d"),
    ({"status": "cancelled"}, "e"),
    ({"status": ""}, "edcba"),  # the form's "any"
    ({"queue": "emails"}, "ba"),
    ({"queue": "nowhere"}, ""),
    ({"name": "web.resize"}, "dc"),
    ({"correlation_id": "order-1"}, "ca"),
    ({"text": "alice"}, "a"),  # params, ASCII letters in either case
    ({"text": "full"}, "a"),  # the error
    ({"text": "needle"}, "d"),
    ({"text": "example.com"}, "ba"),
    ({"created_from": "2026-01-01T00:00:02"}, "edc"),  # from: at or after, UTC when no offset is given
    ({"created_until": "2026-01-01T00:00:02"}, "ba"),  # until: before
    ({"created_from": "2026-01-01T00:00:01", "created_until": "2026-01-01T00:00:03"}, "cb"),
    ({"created_from": "2026-01-01T02:00:02+02:00"}, "edc"),  # an offset
    ({"created_from": "2026-01-01T00:00:02Z"}, "edc"),
    ({"created_from": "2026-01-01T00:00"}, "edcba"),  # minutes, as a datetime-local field may send
    ({"status": "failed", "queue": "emails"}, "a"),
    ({"name": "web.mail", "queue": "default"}, "e"),
    ({"correlation_id": "order-1", "status": "pending"}, "c"),
    ({"queue": " emails "}, "ba"),  # spaces around a value are not part of it
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[urlencode(q) or "none" for q, _ in CASES])
def test_a_filter_selects_the_jobs_it_names(
    store: Store, client: TestClient, query: dict[str, str], expected: str
) -> None:
    made = scene(store)
    shown = listed(client, f"/jobs?{urlencode(query)}")
    assert shown == [made[letter] for letter in expected]


def test_the_filter_form_shows_the_filter(store: Store, client: TestClient) -> None:
    scene(store)
    query = {"status": "failed", "queue": "emails", "text": "full", "created_from": "2026-01-01T00:00:00"}
    page = Page(client.get(f"/jobs?{urlencode(query)}").text)
    form = page.form_with(id="filters")
    assert page.forms[form].attrs["method"] == "get"
    fields = page.fields(form)
    assert fields["queue"] == "emails"
    assert fields["text"] == "full"
    assert fields["created_from"] == "2026-01-01T00:00:00"
    assert [e.attrs["value"] for e in page.find("option") if "selected" in e.attrs] == ["failed"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "<b>"}, "status"),
        ({"created_from": "yesterday"}, "created_from"),
        ({"created_until": "2026-13-01"}, "created_until"),
        ({"after": "garbage"}, "after"),
        ({"after": "soon~01a2"}, "after"),
        ({"after": "2026-01-01T00:00:00+00:00~"}, "after"),
    ],
)
def test_a_bad_filter_or_cursor_is_a_400_naming_it(
    store: Store, client: TestClient, query: dict[str, str], field: str
) -> None:
    message = error_text(client.get(f"/jobs?{urlencode(query)}"))
    assert message.startswith(f"{field} "), message
    given = next(iter(query.values()))
    assert repr(given) in message or repr(given.partition("~")[0]) in message, message


def test_a_bad_status_is_told_the_statuses(store: Store, client: TestClient) -> None:
    message = error_text(client.get("/jobs?status=done"))
    assert all(status.value in message for status in JobStatus)


def walk(client: TestClient, url: str) -> tuple[list[str], list[str]]:
    """Follow the "older" links from *url* to the last page: the jobs shown, and each page's URL."""
    shown: list[str] = []
    urls = [url]
    for _ in range(100):
        response = client.get(urls[-1])
        assert response.status_code == 200, response.text
        page = Page(response.text)
        rows = page.listed()
        assert len(rows) <= PAGE_SIZE
        shown.extend(rows)
        older = page.find("a", id="older")
        if not older:
            return shown, urls
        assert len(rows) == PAGE_SIZE, "an older link under a page that is not full"
        urls.append(older[0].attrs["href"])
    raise AssertionError("more than 100 pages")


def test_paging_reaches_every_job_once(store: Store, client: TestClient) -> None:
    # 57 jobs, two a second: jobs made at the same instant are ordered by id
    made = [put(store, PENDING, at(n // 2)) for n in range(PAGE_SIZE + 7)]
    shown, urls = walk(client, "/jobs")
    assert len(urls) == 2
    assert len(shown) == len(made) == len(set(shown))
    assert set(shown) == set(made)
    newest_first = sorted(store.list_jobs(limit=1000), key=lambda job: (job.created_at, job.id), reverse=True)
    assert shown == [job.id for job in newest_first]
    second = Page(client.get(urls[1]).text)
    assert second.find("a", id="newest")[0].attrs["href"] == "/jobs"


def test_paging_keeps_the_filter(store: Store, client: TestClient) -> None:
    failed = []
    for n in range(2 * PAGE_SIZE + 5):
        if n % 3 == 0:
            put(store, COMPLETED, at(n), queue="emails")
        failed.append(put(store, FAILED, at(n), queue="emails"))
    put(store, FAILED, at(1), queue="other")
    shown, urls = walk(client, "/jobs?status=failed&queue=emails")
    assert len(urls) == 3
    assert sorted(shown) == sorted(failed) and len(shown) == len(set(shown))
    for url in urls[1:]:
        query = parse_qs(urlsplit(url).query)
        assert query["status"] == ["failed"] and query["queue"] == ["emails"]
        assert len(query["after"]) == 1
    newest = Page(client.get(urls[2]).text).find("a", id="newest")[0].attrs["href"]
    assert parse_qs(urlsplit(newest).query) == {"status": ["failed"], "queue": ["emails"]}


def test_paging_with_a_time_filter_keeps_its_precision(store: Store, client: TestClient) -> None:
    # the page after the first must show what the first page's filter says: nothing before created_from
    for n in range(PAGE_SIZE + 5):
        put(store, PENDING, at(10 + n))
    early = put(store, PENDING, at(10.25))
    shown, urls = walk(client, "/jobs?created_from=2026-01-01T00:00:10.500000")
    assert early not in shown, f"the older link {urls[-1]} lost the fraction of a second of created_from"
    assert len(shown) == PAGE_SIZE + 4


def test_a_text_filter_of_spaces_is_no_filter(store: Store, client: TestClient) -> None:
    made = scene(store)
    assert listed(client, "/jobs?text=%20%20") == [made[letter] for letter in "edcba"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"created_from": "0001-01-01T00:00:00+05:00"}, "created_from"),  # before year 1 in UTC
        ({"created_until": "9999-12-31T23:59:59-05:00"}, "created_until"),  # after year 9999 in UTC
        ({"after": "9999-12-31T23:59:59-05:00~01a2"}, "after"),
        ({"after": "0001-01-01T00:00:00+05:00~01a2"}, "after"),
    ],
)
def test_a_time_beyond_what_utc_can_hold_is_a_400_naming_it(
    store: Store, client: TestClient, query: dict[str, str], field: str
) -> None:
    scene(store)
    response = client.get(f"/jobs?{urlencode(query)}")
    assert response.status_code == 400, f"{response.status_code} for {query}"
    assert error_text(response).startswith(f"{field} ")


# -- a text search reads a bounded span of jobs a page ------------------------------------------
def test_a_text_search_reads_a_span_of_jobs_a_page_and_searches_on_past_it(
    store: Store, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SEARCH_SPAN jobs a page at most: the page says how far it read and links on; every match is found once."""
    monkeypatch.setattr("jobkit.web.pages.SEARCH_SPAN", 4)
    needles = {n: put(store, COMPLETED, at(n), params='{"x": "needle"}') for n in (0, 1, 9, 10, 11)}
    for n in range(2, 9):
        put(store, COMPLETED, at(n), params='{"x": "hay"}')
    url: str | None = "/jobs?text=NEEDLE"
    found, reads = [], 0
    while url is not None and reads < 20:
        page = Page(client.get(url).text)
        reads += 1
        found += page.listed()
        older = [e.attrs["href"] for e in page.find("a", id="search-older")]
        following = [e.attrs["href"] for e in page.find("a", id="older")]
        assert bool(older) == bool(page.find("p", id="searched"))
        url = (following or older or [None])[0]
    assert found == [needles[n] for n in (11, 10, 9, 1, 0)], "every match, newest first, once"
    # Jobs 11..8 the first page, 7..4 the next, 3..0 the last: no link on from it, nothing is older.
    assert reads == 3


def test_a_text_search_page_links_on_with_the_filter_it_had(
    store: Store, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobkit.web.pages.SEARCH_SPAN", 2)
    for n in range(5):
        put(store, FAILED if n % 2 else COMPLETED, at(n), params='{"x": "hay"}')
    response = client.get("/jobs?text=needle&status=failed")
    page = Page(response.text)
    assert page.listed() == []
    assert "found no matches among them" in " ".join(response.text.split())
    [link] = [e.attrs["href"] for e in page.find("a", id="search-older")]
    query = parse_qs(urlsplit(link).query)
    assert query["text"] == ["needle"] and query["status"] == ["failed"]
    assert query["created_until"] == ["2026-01-01T00:00:03"], "on from the oldest job the page read"


def test_a_search_within_the_span_or_within_its_own_time_range_says_nothing_more(
    store: Store, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobkit.web.pages.SEARCH_SPAN", 3)
    for n in range(6):
        put(store, COMPLETED, at(n), params='{"x": "hay"}')
    assert not Page(client.get("/jobs?text=hay&created_from=2026-01-01T00:00:04").text).find("p", id="searched")
    assert not Page(client.get("/jobs?text=nothing&created_from=2026-01-01T00:00:03").text).find("p", id="searched")
    assert Page(client.get("/jobs?text=nothing").text).find("p", id="searched"), "past the span, it says so"
    assert not Page(client.get("/jobs?name=web.ok").text).find("p", id="searched"), "only a text search is bounded"
