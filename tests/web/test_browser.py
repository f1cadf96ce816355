"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright, on every store.

Each test serves ``create_app(store)`` with uvicorn in a thread and clicks through it as
a person would: the nav links, the jobs filter and its paging, the actions (one job, a
selection, everything matching a filter), queues and schedules, live updates without a
reload, and what an attacker would try (markup in a job's fields, a form on another
origin posting to the dashboard). Every page a test opens is watched: a dialog, an
uncaught script error or a failed script/stylesheet request fails the test.

Without Chromium these tests fail (never skip), saying ``apt-get install -y chromium``.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import attrs
import pytest
from playwright.sync_api import Browser, Page, expect

import jobkit
from jobkit.model import Complete, JobRecord, JobStatus, Lease, Schedule, new_id
from jobkit.store import Store
from jobkit.web import create_app
from jobkit.web.security import csrf_token
from tests.support import ROOT, Background, wait_until
from tests.web.browser import (
    LIVE_TIMEOUT,
    VIEWPORT,
    XSS,
    XSS_IMG,
    XSS_SCRIPT,
    MissingBrowser,
    Served,
    Watch,
    chromium,
    chromium_path,
    completed,
    dashboard_of,
    failed,
    ids,
    pending,
    running,
)

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module; a missing one fails every test, saying how to install it."""
    try:
        executable = chromium_path()
    except MissingBrowser as exc:
        pytest.fail(str(exc), pytrace=False)
    with chromium(executable) as launched:
        yield launched


@pytest.fixture
def serve() -> Iterator[Callable[[Any], Served]]:
    """``serve(app)``: the app listening on a free port until the test ends (after its tabs close)."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(Served(app))


@attrs.define
class Tab:
    """A page of a fresh browser context, watched (see :class:`Watch`)."""

    page: Page
    watch: Watch

    def marker(self) -> None:
        """Set a window variable that only a page load (a navigation) would lose."""
        self.page.evaluate("window.__kept = 'no reload'")

    def kept(self) -> bool:
        return bool(self.page.evaluate("window.__kept === 'no reload'"))


@pytest.fixture
def tab(browser: Browser, serve: Callable[[Any], Served]) -> Iterator[Tab]:
    """A new page (1280 wide); after the test, no dialog, script error or failed asset may have happened."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch = Watch(page)
    yield Tab(page, watch)
    context.close()  # before the servers stop: no event stream is left open
    assert watch.problems() == [], "the page did what it must not"


@attrs.define
class Site:
    """The dashboard of ``store`` at ``url``."""

    url: str
    store: Store
    app: Any

    def at(self, path: str) -> str:
        return self.url + path

    def record(self, job_id: str) -> JobRecord:
        found = self.store.get(job_id)
        assert found is not None, f"job {job_id} is gone"
        return found


@pytest.fixture
def site(store: Store, serve: Callable[[Any], Served]) -> Site:
    app = create_app(store)
    return Site(serve(app).url, store, app)


@pytest.fixture
def memory_site(serve: Callable[[Any], Served]) -> Iterator[Site]:
    """The dashboard of a MemoryStore: for what does not depend on the store (the HTTP side, the browser's)."""
    with jobkit.MemoryStore() as store:
        app = create_app(store)
        yield Site(serve(app).url, store, app)


def add(store: Store, *records: JobRecord) -> list[str]:
    store.add(list(records))
    return ids(records)


def notice(page: Page) -> str:
    return page.locator("#notice").inner_text()


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# -- pages and navigation ---------------------------------------------------------------
def test_the_nav_links_reach_every_page(site: Site, tab: Tab) -> None:
    now = site.store.now()
    job_id, *_ = add(
        site.store,
        failed(now, job_name="shop.payments:charge", queue="payments"),
        pending(now, job_name="shop.emails:send", queue="emails"),
    )
    jobkit.pause(site.store, "emails")
    page = tab.page
    page.goto(site.at("/"))
    expect(page).to_have_title(re.compile("Overview"))
    expected = [("Jobs", "/jobs", "Jobs"), ("Queues", "/queues", "Queues"), ("Schedules", "/schedules", "Schedules")]
    for link, path, heading in [*expected, ("Overview", "/", "Overview")]:
        page.locator("header nav").get_by_role("link", name=link, exact=True).click()
        expect(page).to_have_url(site.at(path))
        expect(page.locator("h1")).to_contain_text(heading)
        expect(page.locator("header nav a[aria-current=page]")).to_have_text(link)
    # From the overview's counts to a filtered list, to one job, to its queue's jobs.
    page.locator("#counts a.count.failed").click()
    expect(page).to_have_url(site.at("/jobs?status=failed"))
    expect(page.locator("#filters select[name=status]")).to_have_value("failed")
    page.locator(f"#job-list tr[data-job='{job_id}'] a").click()
    expect(page).to_have_url(site.at(f"/jobs/{job_id}"))
    expect(page.locator("h1")).to_contain_text("shop.payments:charge")
    page.locator("dl.facts").get_by_role("link", name="payments").click()
    expect(page.locator("#filters input[name=queue]")).to_have_value("payments")
    expect(page.locator("#job-list tbody tr")).to_have_count(1)
    page.locator("header a.brand").click()
    expect(page).to_have_url(site.at("/"))
    expect(page.locator("#queue-counts tr[data-queue=emails] .badge.paused")).to_be_visible()


def test_a_page_at_1280_pixels_does_not_scroll_sideways(
    tmp_path: Path, tab: Tab, serve: Callable[[Any], Served]
) -> None:
    """The width of the README's screenshots: every page's content fits it (tables included)."""
    from examples.dashboard_screenshots import build_scene

    with jobkit.SqliteStore(tmp_path / "shop.sqlite") as store:
        scene = build_scene(store)
        url = serve(create_app(store)).url
        wide = {}
        for path in ["/", "/jobs", f"/jobs/{scene.failed_job}", f"/jobs/{scene.waiting_job}", "/queues", "/schedules"]:
            tab.page.goto(url + path)
            scroll, client = tab.page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            if scroll > client:
                wide[path] = f"{scroll}px of content in a {client}px window"
        assert wide == {}


# -- the jobs list: filter and page on ---------------------------------------------------
def test_the_filter_form_and_older_pages_on_through_every_match(site: Site, tab: Tab) -> None:
    now = site.store.now()
    same = now - timedelta(minutes=5)  # 60 of them created at one instant: the cursor must break ties by id
    wanted = [
        failed(now, job_name="shop:a", created_at=same if index < 60 else now - timedelta(minutes=10 + index))
        for index in range(75)
    ]
    others = [completed(now, job_name="shop:a") for _ in range(20)] + [
        failed(now, job_name="shop:b") for _ in range(20)
    ]
    for start in range(0, len(wanted), 25):
        add(site.store, *wanted[start : start + 25])
    add(site.store, *others)
    page = tab.page
    page.goto(site.at("/jobs"))
    expect(page.locator("#job-list tbody tr")).to_have_count(50)
    page.locator("#filters select[name=status]").select_option("failed")
    page.locator("#filters input[name=name]").fill("shop:a")
    page.locator("#filters").get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/jobs\?"))
    query = parse_qs(urlsplit(page.url).query)
    assert query["status"] == ["failed"] and query["name"] == ["shop:a"]
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        rows = page.locator("#job-list tbody tr[data-job]")
        seen += [row.get_attribute("data-job") or "" for row in rows.all()]
        expect(page.locator("#filters select[name=status]")).to_have_value("failed")
        expect(page.locator("#filters input[name=name]")).to_have_value("shop:a")
        for status in rows.locator("span.status").all_inner_texts():
            assert status == "failed"
        older = page.locator("#older")
        if older.count() == 0:
            break
        assert pages < 5, "the pages never end"
        older.click()
        expect(page.locator("#newest")).to_be_visible()
    assert pages == 2
    assert len(seen) == len(set(seen)), "a job was listed on two pages"
    expected = sorted(wanted, key=lambda job: (job.created_at, job.id), reverse=True)
    assert seen == ids(expected), "every match, newest first, each once"
    page.locator("#newest").click()
    expect(page.locator("#job-list tbody tr[data-job]")).to_have_count(50)
    assert page.locator("#job-list tbody tr[data-job]").first.get_attribute("data-job") == expected[0].id


def test_the_filter_form_finds_text_queue_and_times(site: Site, tab: Tab) -> None:
    now = site.store.now().replace(microsecond=0)
    old, new, other_queue = (
        failed(now, error="TimeoutError: smtp.example.com", created_at=now - timedelta(hours=3)),
        failed(now, error="TimeoutError: smtp.example.com", created_at=now - timedelta(minutes=30)),
        pending(now, params='{"to": "SMTP.example.com"}', queue="emails", created_at=now - timedelta(minutes=20)),
    )
    add(site.store, old, new, other_queue, completed(now, params='{"to": "elsewhere"}'))
    page = tab.page
    page.goto(site.at("/jobs"))
    form = page.locator("#filters")
    form.locator("input[name=text]").fill("smtp.example")
    form.get_by_role("button", name="Filter").click()
    expect(page.locator("#job-list tbody tr[data-job]")).to_have_count(3)  # params or error, either case
    form.locator("input[name=queue]").fill("emails")
    form.get_by_role("button", name="Filter").click()
    expect(page.locator("#job-list tbody tr[data-job]")).to_have_count(1)
    expect(page.locator(f"#job-list tr[data-job='{other_queue.id}']")).to_be_visible()
    form.locator("input[name=queue]").fill("")
    form.locator("input[name=created_from]").fill((now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"))
    form.get_by_role("button", name="Filter").click()
    expect(page.locator("#job-list tbody tr[data-job]")).to_have_count(2)
    assert old.id not in (page.locator("#job-list tbody").get_attribute("innerHTML") or "")
    form.locator("input[name=created_until]").fill((now - timedelta(minutes=25)).strftime("%Y-%m-%dT%H:%M:%S"))
    form.get_by_role("button", name="Filter").click()
    expect(page.locator("#job-list tbody tr[data-job]")).to_have_count(1)
    expect(page.locator(f"#job-list tr[data-job='{new.id}']")).to_be_visible()
    # The URL says the filter: opened again (shared), it shows the same jobs and the same form.
    shared = page.url
    page.goto(site.at("/"))
    page.goto(shared)
    expect(page.locator("#job-list tbody tr[data-job]")).to_have_count(1)
    expect(form.locator("input[name=text]")).to_have_value("smtp.example")
    page.get_by_role("link", name="clear").click()
    expect(page).to_have_url(site.at("/jobs"))
    expect(page.locator("#job-list tbody tr[data-job]")).to_have_count(4)


# -- actions -----------------------------------------------------------------------------
def test_two_selected_jobs_are_retried_and_the_notice_says_so(site: Site, tab: Tab) -> None:
    now = site.store.now()
    first, second, third = add(site.store, failed(now), failed(now), failed(now))
    page = tab.page
    page.goto(site.at("/jobs?status=failed"))
    page.get_by_label(f"select {first}").check()
    page.get_by_label(f"select {third}").check()
    page.locator("#selection .bulk").get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#notice")).to_have_text("retried 2 jobs")
    expect(page).to_have_url(re.compile(r"/jobs\?status=failed&notice="))  # back on the list it came from
    assert [site.record(job).status for job in (first, second, third)] == [PENDING, FAILED, PENDING]
    expect(page.locator("#job-list tbody tr[data-job]")).to_have_count(1)  # only the one left failed is listed
    # A second action from the page the first one came back to: its notice is the one shown.
    page.get_by_label(f"select {second}").check()
    page.locator("#selection .bulk").get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#notice")).to_have_text("retried 1 job")
    expect(page.locator("#no-jobs")).to_be_visible()
    assert site.record(second).status is PENDING


def test_a_selection_says_which_jobs_were_left_as_they_were(site: Site, tab: Tab) -> None:
    now = site.store.now()
    done, waiting = add(site.store, completed(now), pending(now))
    page = tab.page
    page.goto(site.at("/jobs"))
    page.get_by_label("select all").check()
    page.locator("#selection .bulk").get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#notice")).to_contain_text("retried 0 jobs; 2 left as they were")
    assert site.record(done).status is COMPLETED and site.record(waiting).status is PENDING


def test_retry_all_matching_asks_with_the_count_then_retries_them(site: Site, tab: Tab) -> None:
    now = site.store.now()
    retried = add(site.store, *(failed(now, queue="emails") for _ in range(4)))
    kept = add(site.store, failed(now, queue="default"), completed(now, queue="emails"))
    page = tab.page
    page.goto(site.at("/jobs?queue=emails"))
    page.locator("#matching").get_by_role("button", name="Retry all…").click()
    expect(page.locator("h1")).to_contain_text("Retry everything matching queue=emails?")
    expect(page.locator("#confirm-count")).to_contain_text("5 jobs match; retry applies to 4 of them")
    assert all(site.record(job).status is FAILED for job in retried), "asking changed nothing"
    page.get_by_role("button", name="Yes, retry 4 jobs").click()
    expect(page.locator("#notice")).to_have_text(
        "retried 4 jobs; 1 left as it was (not failed or cancelled, or changed meanwhile), "
        "of those matching queue=emails"
    )
    expect(page).to_have_url(re.compile(r"/jobs\?queue=emails&notice="))
    assert all(site.record(job).status is PENDING for job in retried)
    assert [site.record(job).status for job in kept] == [FAILED, COMPLETED]


def test_no_go_back_from_the_confirmation_changes_nothing(site: Site, tab: Tab) -> None:
    now = site.store.now()
    (job,) = add(site.store, completed(now))
    page = tab.page
    page.goto(site.at("/jobs"))
    page.locator("#matching").get_by_role("button", name="Purge all…").click()
    expect(page.locator("#confirm-count")).to_contain_text("1 job match; purge applies to 1 of them")
    page.get_by_role("link", name="No, go back").click()
    expect(page).to_have_url(site.at("/jobs"))
    assert site.record(job).status is COMPLETED


def test_one_job_is_cancelled_then_purged_from_its_page(site: Site, tab: Tab) -> None:
    now = site.store.now()
    (job,) = add(site.store, pending(now, job_name="shop.emails:send", params='{"to": "ada@example.com"}'))
    page = tab.page
    page.goto(site.at(f"/jobs/{job}"))
    expect(page.locator("#params")).to_contain_text('"to": "ada@example.com"')
    actions = page.locator("#job-actions")
    expect(actions.get_by_role("button")).to_have_text(["Cancel"])
    actions.get_by_role("button", name="Cancel").click()
    expect(page.locator("#notice")).to_have_text("cancelled (or asked to stop) 1 job")
    expect(page).to_have_url(re.compile(rf"/jobs/{job}\?notice="))
    expect(page.locator("#job-status")).to_have_text("cancelled")
    assert site.record(job).status is CANCELLED
    expect(actions.get_by_role("button")).to_have_text(["Retry", "Purge"])
    actions.get_by_role("button", name="Purge").click()
    expect(page.locator("#notice")).to_have_text("purged 1 job")
    expect(page.locator("h1")).to_contain_text(f"No job {job}")
    assert site.store.get(job) is None


def test_a_running_job_is_asked_to_stop(site: Site, tab: Tab) -> None:
    now = site.store.now()
    (job,) = add(site.store, running(now, progress=40))
    page = tab.page
    page.goto(site.at(f"/jobs/{job}"))
    page.locator("#job-actions").get_by_role("button", name="Cancel").click()
    expect(page.locator("#notice")).to_have_text("cancelled (or asked to stop) 1 job")
    expect(page.locator("#job-state")).to_contain_text("(cancel asked)")
    assert site.record(job).cancel_requested


def test_a_queue_is_paused_and_resumed_from_the_queues_page(site: Site, tab: Tab) -> None:
    now = site.store.now()
    add(site.store, pending(now, queue="emails"), pending(now, queue="default"))
    page = tab.page
    page.goto(site.at("/queues"))
    row = page.locator("#queues tr[data-queue=emails]")
    expect(row.locator("td").nth(1)).to_have_text("1")
    row.get_by_role("button", name="Pause").click()
    expect(page.locator("#notice")).to_have_text("queue emails paused")
    expect(page).to_have_url(re.compile(r"/queues\?notice="))
    expect(row.locator(".badge.paused")).to_be_visible()
    assert {info.name: info.paused for info in site.store.queues()} == {"default": False, "emails": True}
    row.get_by_role("button", name="Resume").click()
    expect(page.locator("#notice")).to_have_text("queue emails resumed")
    expect(row.get_by_role("button", name="Pause")).to_be_visible()
    assert not any(info.paused for info in site.store.queues())


@attrs.frozen
class Digest:
    to: str


schedule_jobs = jobkit.Registry()


@schedule_jobs.job(name="tests.web:digest")
def digest(params: Digest, ctx: jobkit.Context) -> int:
    return 0


@pytest.mark.parametrize("name", ["daily-digest", "reports/daily digest"])
def test_a_schedule_runs_now_and_is_disabled_and_enabled(site: Site, tab: Tab, name: str) -> None:
    """A schedule's name is any text (``reports/daily digest`` too): its buttons act on that schedule."""
    jobkit.schedule(site.store, digest, "0 3 * * *", Digest(to="ops@example.com"), name=name)
    page = tab.page
    page.goto(site.at("/schedules"))
    row = page.locator(f"#schedules tr[data-schedule='{name}']")
    expect(row.locator("td").nth(4)).to_have_text("yes")
    row.get_by_role("button", name="Run now").click()
    expect(page.locator("#notice")).to_contain_text(f"schedule {name} ran now: job ")
    job_id = notice(page).rpartition("job ")[2]
    made = site.record(job_id)
    assert (made.job_name, json.loads(made.params), made.status) == (
        "tests.web:digest",
        {"to": "ops@example.com"},
        PENDING,
    )
    row.get_by_role("button", name="Disable").click()
    expect(page.locator("#notice")).to_have_text(f"schedule {name} disabled")
    expect(row.locator("td").nth(4)).to_have_text("no")
    stored = site.store.get_schedule(name)
    assert stored is not None and not stored.enabled
    row.get_by_role("button", name="Enable").click()
    expect(page.locator("#notice")).to_have_text(f"schedule {name} enabled")
    stored = site.store.get_schedule(name)
    assert stored is not None and stored.enabled


class SlowStore:
    """A MemoryStore whose summary takes as long as a big queue's (longer than the Hub's QUICK)."""

    def __init__(self, store: Store, seconds: float) -> None:
        self.store = store
        self.seconds = seconds

    def summary(self, *, since: Any) -> Any:
        time.sleep(self.seconds)
        return self.store.summary(since=since)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize("speed", ["quick", "slow"])
def test_a_page_loaded_after_a_change_made_elsewhere_shows_that_change(
    tab: Tab, serve: Callable[[Any], Served], speed: str
) -> None:
    """A queue paused by ``jobkit pause`` (another process), a job of a new name: a page loaded later shows them.

    On a quick store the page loaded after FRESH shows them at once. On a slow one (a big
    queue) a page answers from the last snapshot while a fresh one is read, so what it
    shows may be a moment old; its live part brings the change within the live window
    (LIVE_TIMEOUT), without a reload.
    """
    from jobkit.web.live import FRESH, QUICK

    with jobkit.MemoryStore() as memory:
        store: Any = memory if speed == "quick" else SlowStore(memory, QUICK + 0.1)
        url = serve(create_app(store)).url
        now = memory.now()
        add(memory, pending(now, queue="emails"))
        page = tab.page
        page.goto(url + "/queues")
        expect(page.locator("#queues tr[data-queue=emails]")).to_contain_text("running")
        jobkit.pause(memory, "emails")  # as `python -m jobkit pause emails` does, from elsewhere
        add(memory, pending(now, job_name="shop.reports:new_report", queue="emails"))
        page.wait_for_timeout(1000 * (FRESH + 0.5))  # longer than a snapshot is fresh: the next load reads again
        page.goto(url + "/queues")
        state = page.locator("#queues tr[data-queue=emails] td").nth(6)
        if speed == "quick":
            assert state.inner_text() == "paused", f"loaded {FRESH + 0.5:g}s after the pause: {state.inner_text()!r}"
        expect(state).to_have_text("paused", timeout=LIVE_TIMEOUT)
        page.wait_for_timeout(1000 * (FRESH + 0.5))
        page.goto(url + "/")
        names = page.locator("#by-name")
        if speed == "quick":
            assert "shop.reports:new_report" in names.inner_text(), "the overview loaded after the job was added"
        expect(names).to_contain_text("shop.reports:new_report", timeout=LIVE_TIMEOUT)


# -- live updates ------------------------------------------------------------------------
@attrs.frozen
class Steps:
    name: str


class Gates:
    """A handler's two stops: it reports 25%, waits for ``half``, reports 75%, waits for ``end``."""

    def __init__(self) -> None:
        self.half = threading.Event()
        self.end = threading.Event()


def gated_registry(gates: Gates) -> tuple[jobkit.Registry, jobkit.JobSpec[Steps, int]]:
    jobs = jobkit.Registry()

    @jobs.job(name="tests.web:gated", max_attempts=1)
    def gated(params: Steps, ctx: jobkit.Context) -> int:
        ctx.progress(25, "a quarter")
        assert gates.half.wait(20), "the test never let the job go on"
        ctx.progress(75, "three quarters")
        assert gates.end.wait(20), "the test never let the job end"
        return 1

    return jobs, gated


def test_the_overview_shows_progress_and_counts_change_without_a_reload(site: Site, tab: Tab) -> None:
    gates = Gates()
    jobs, gated = gated_registry(gates)
    page = tab.page
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    with Background(site.store, jobs, poll_interval=0.05):
        job = gated.later(Steps("live"), site.store)
        wait_until(lambda: site.record(job).progress == 25, "the job's first progress")
        page.goto(site.at("/"))
        bar = page.locator(f"#running tr[data-job='{job}'] [role=progressbar]")
        expect(bar).to_have_attribute("aria-valuenow", "25")
        expect(page.locator("#counts .count.running .n")).to_have_text("1")
        expect(page.locator("#counts .count.pending .n")).to_have_text("0")
        page.wait_for_function("() => window.htmx !== undefined")
        tab.marker()

        gates.half.set()
        wait_until(lambda: site.record(job).progress == 75, "the job's second progress")
        expect(bar).to_have_attribute("aria-valuenow", "75", timeout=LIVE_TIMEOUT)
        expect(page.locator(f"#running tr[data-job='{job}']")).to_contain_text("three quarters")

        now = site.store.now()
        add(site.store, *(pending(now, job_name="tests.web:other", queue="later") for _ in range(3)))
        expect(page.locator("#counts .count.pending .n")).to_have_text("3", timeout=LIVE_TIMEOUT)
        expect(page.locator("#queue-counts tr[data-queue=later] td").nth(1)).to_have_text("3", timeout=LIVE_TIMEOUT)

        gates.end.set()
        wait_until(lambda: site.record(job).status is COMPLETED, "the job's end")
        expect(page.locator("#running")).to_contain_text("No job is running.", timeout=LIVE_TIMEOUT)
        expect(page.locator("#counts .count.completed .n")).to_have_text("1", timeout=LIVE_TIMEOUT)
        expect(page.locator("#counts .count.running .n")).to_have_text("0")
    assert tab.kept(), "the page was reloaded"
    assert navigations == [site.at("/")], "the page navigated"


def test_a_job_page_follows_its_job_without_a_reload(site: Site, tab: Tab) -> None:
    now = site.store.now()
    job = running(now, progress=10, progress_message="starting")
    add(site.store, job)
    assert job.worker_id is not None
    page = tab.page
    page.goto(site.at(f"/jobs/{job.id}"))
    bar = page.locator("#job-state [role=progressbar]")
    expect(bar).to_have_attribute("aria-valuenow", "10")
    page.wait_for_function("() => window.htmx !== undefined")
    tab.marker()
    assert site.store.progress(Lease(job.id, job.worker_id), 55, "halfway", now=site.store.now())
    expect(bar).to_have_attribute("aria-valuenow", "55", timeout=LIVE_TIMEOUT)
    expect(page.locator("#job-state")).to_contain_text("halfway")
    assert site.store.finish([Complete(job.id, job.worker_id, '{"rows": 3}', site.store.now())]) == [True]
    expect(page.locator("#job-status")).to_have_text("completed", timeout=LIVE_TIMEOUT)
    assert tab.kept(), "the page was reloaded"


# -- what an attacker tries --------------------------------------------------------------
def xss_scene(store: Store) -> dict[str, str]:
    """Jobs and a schedule whose every free-text field holds markup; their ids by what they are."""
    now = store.now()
    params = json.dumps({"html": XSS, "note": XSS_IMG})
    bad = failed(
        now,
        job_name=f"shop:{XSS}",
        params=params,
        error=XSS,
        traceback=f"Traceback (most recent call last):\n{XSS}",
        correlation_id=XSS,
    )
    done = completed(now, job_name=XSS_SCRIPT, params=params, result=json.dumps({"html": XSS}))
    busy = running(now, job_name=XSS_IMG, params=params, progress=30, progress_message=XSS)
    waiting = pending(now, job_name=XSS, params=params, unique_key=XSS)
    add(store, bad, done, busy, waiting)
    child = pending(now, job_name="shop:child", depends_on=(bad.id,))
    with contextlib.suppress(jobkit.JobkitError):  # a store may refuse a child of a failed job: then no child
        add(store, child)
    store.put_schedule(
        Schedule(
            id=new_id(),
            name=f"digest {XSS}",
            job_name=XSS,
            cron_expression="0 3 * * *",
            params=params,
            timezone="UTC",
            enabled=True,
            next_run_at=now + timedelta(hours=1),
            created_at=now,
            updated_at=now,
        )
    )
    return {"failed": bad.id, "completed": done.id, "running": busy.id, "pending": waiting.id, "child": child.id}


def test_markup_in_a_job_is_shown_as_text_and_never_runs(site: Site, tab: Tab) -> None:
    scene = xss_scene(site.store)
    page = tab.page
    escaped = quote(XSS, safe="")
    paths = [
        *(f"/jobs/{job_id}" for job_id in scene.values()),
        "/jobs",
        f"/jobs?name={escaped}&text={escaped}&correlation_id={escaped}&queue={escaped}",
        f"/jobs?status={escaped}",  # a 400 page naming the value
        f"/jobs/{quote(XSS_IMG, safe='')}",  # a 404 page naming the id
        f"/?notice={escaped}",
        "/queues",
        "/schedules",
        "/",
    ]
    for path in paths:
        page.goto(site.at(path))
        assert page.evaluate("typeof window.__xss") == "undefined", f"script ran on {path}"
    page.goto(site.at(f"/jobs/{scene['failed']}"))
    expect(page.locator("#params")).to_contain_text(XSS_SCRIPT)  # shown, as text
    expect(page.locator("#error")).to_have_text(XSS)
    expect(page.locator("h1")).to_contain_text(f"shop:{XSS}")
    assert page.locator("#params script, #error img, h1 img, h1 script, svg[onload]").count() == 0
    # The overview, while its live fragments (the running job's message among them) come in again.
    page.goto(site.at("/"))
    tab.marker()
    busy = site.record(scene["running"])
    assert busy.worker_id is not None
    assert site.store.progress(Lease(busy.id, busy.worker_id), 60, f"{XSS} again", now=site.store.now())
    bar = page.locator(f"#running tr[data-job='{busy.id}'] [role=progressbar]")
    expect(bar).to_have_attribute("aria-valuenow", "60", timeout=LIVE_TIMEOUT)
    expect(page.locator(f"#running tr[data-job='{busy.id}']")).to_contain_text("<script>window.__xss=1</script>")
    page.goto(site.at(f"/jobs/{busy.id}"))
    assert site.store.progress(Lease(busy.id, busy.worker_id), 65, XSS, now=site.store.now())
    expect(page.locator("#job-state [role=progressbar]")).to_have_attribute("aria-valuenow", "65", timeout=LIVE_TIMEOUT)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert tab.watch.dialogs == []


@attrs.frozen
class Attack:
    """A form another site serves that posts to the dashboard as soon as it loads."""

    path: str
    fields: dict[str, str | list[str]]

    def html(self, dashboard: str) -> str:
        inputs = "".join(
            f'<input type="hidden" name="{name}" value="{value}">'
            for name, values in self.fields.items()
            for value in ([values] if isinstance(values, str) else values)
        )
        return (
            f'<!doctype html><title>win a prize</title><form method="post" action="{dashboard}{self.path}">{inputs}'
            "</form><script>document.forms[0].submit()</script>"
        )


def evil_app(pages: dict[str, str]) -> Any:
    """Another site: ``/page/NAME`` serves ``pages[NAME]``; ``/`` a page with nothing on it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(pages[request.path_params["name"]])

    async def empty(request: Request) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>elsewhere</title><p>nothing here</p>")

    return Starlette(routes=[Route("/page/{name}", page), Route("/", empty)])


def test_a_form_on_another_origin_cannot_act_and_changes_nothing(site: Site, tab: Tab, serve: Any) -> None:
    now = site.store.now()
    done, broken = add(site.store, completed(now), failed(now))
    add(site.store, pending(now, queue="emails"))
    jobkit.schedule(site.store, digest, "0 3 * * *", Digest(to="ops@example.com"), name="digest")
    forged = "0" * 64
    attacks = {
        "purge": Attack(f"/jobs/{done}/purge", {"next": "/"}),
        "retry-forged-token": Attack("/jobs/actions", {"action": "retry", "job": [broken], "csrf_token": forged}),
        "purge-all": Attack(
            "/jobs/matching", {"action": "purge", "as_of": (now + timedelta(days=1)).isoformat(), "next": "/jobs"}
        ),
        "pause": Attack("/queues/emails/pause", {"next": "/queues"}),
        "run-schedule": Attack("/schedules/digest/run", {"csrf_token": ""}),
    }
    evil = serve(evil_app({name: attack.html(site.url) for name, attack in attacks.items()}))
    assert urlsplit(evil.url).port != urlsplit(site.url).port
    page = tab.page
    for name, attack in attacks.items():
        with page.expect_response(site.at(attack.path)) as answer:
            page.goto(f"{evil.url}/page/{name}")
        assert answer.value.status == 403, f"{name}: {answer.value.status}"
        expect(page.locator("body")).to_contain_text("nothing was changed")
    # The other site cannot read a page of the dashboard (and its token) either: no CORS grant.
    page.goto(evil.url + "/")
    outcome = page.evaluate(
        """async (url) => { try { const r = await fetch(url); return 'read ' + (await r.text()).length }
                            catch (e) { return 'blocked' } }""",
        site.at("/jobs"),
    )
    assert outcome == "blocked"
    no_cors = page.evaluate(
        """async (url) => { const body = new URLSearchParams({next: '/'});
                            await fetch(url, {method: 'POST', mode: 'no-cors', body}); return 'sent' }""",
        site.at(f"/jobs/{done}/purge"),
    )
    assert no_cors == "sent"
    assert site.record(done).status is COMPLETED
    assert site.record(broken).status is FAILED
    assert not any(info.paused for info in site.store.queues())
    assert len(site.store.list_jobs()) == 3, "no job was made (the schedule did not run) or deleted"
    # The dashboard's own form, with its token, does act.
    page.goto(site.at(f"/jobs/{done}"))
    page.locator("#job-actions").get_by_role("button", name="Purge").click()
    expect(page.locator("#notice")).to_have_text("purged 1 job")
    assert site.store.get(done) is None


def test_another_site_cannot_show_the_dashboard_in_a_frame(memory_site: Site, tab: Tab, serve: Any) -> None:
    """Clickjacking: a page that frames the dashboard (under a decoy) must not get its buttons to be clicked.

    The CSRF token does not help here (the framed page is the dashboard's own, token and
    all), so the dashboard must forbid framing (``X-Frame-Options: DENY`` or a
    ``Content-Security-Policy: frame-ancestors 'none'``).
    """
    now = memory_site.store.now()
    (job,) = add(memory_site.store, completed(now))
    decoy = (
        "<!doctype html><title>win a prize</title><p>Click the red button to claim your prize!</p>"
        f'<iframe src="{memory_site.at(f"/jobs/{job}")}" width="900" height="600" style="opacity: 0.01"></iframe>'
    )
    evil = serve(evil_app({"decoy": decoy}))
    page = tab.page
    with page.expect_response(memory_site.at(f"/jobs/{job}")) as answer:
        page.goto(f"{evil.url}/page/decoy")
    headers = answer.value.headers
    page.wait_for_load_state("load")
    shown = [frame for frame in page.frames if frame.url.startswith(memory_site.url)]
    buttons = shown[0].locator("#job-actions button").count() if shown else 0
    assert buttons == 0, (
        f"the framed job page shows its {buttons} action buttons under another site's page "
        f"(x-frame-options: {headers.get('x-frame-options')!r}, "
        f"content-security-policy: {headers.get('content-security-policy')!r})"
    )
    assert memory_site.record(job).status is COMPLETED


def test_six_open_tabs_leave_the_dashboard_answering(memory_site: Site, browser: Browser) -> None:
    """Each overview holds a live stream open; a browser keeps 6 connections per host over HTTP/1.1.

    The Hub is built for "ten open browser tabs"; with six, every connection the browser
    allows is a stream that never ends, and no further page of the dashboard loads (in
    that browser) until one tab closes.
    """
    now = memory_site.store.now()
    add(memory_site.store, running(now, progress=10))
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        tabs = [context.new_page() for _ in range(6)]
        for page in tabs:
            page.goto(memory_site.at("/"))
            expect(page.locator("#counts .count.running .n")).to_have_text("1")
        page = tabs[0]
        try:
            page.locator("header nav").get_by_role("link", name="Jobs", exact=True).click(no_wait_after=True)
            expect(page.locator("h1")).to_have_text("Jobs", timeout=10_000)
        except AssertionError:
            pytest.fail(
                "with 6 overview tabs open, following a link in one of them did not load the jobs page within 10s "
                "(the browser's 6 connections to the dashboard are all taken)",
                pytrace=False,
            )
        another = context.new_page()
        answer = another.goto(memory_site.at("/queues"), timeout=10_000)
        assert answer is not None and answer.status == 200
    finally:
        context.close()


def test_a_read_only_dashboard_shows_no_controls_and_refuses_actions(
    store: Store, tab: Tab, serve: Callable[[Any], Served]
) -> None:
    now = store.now()
    broken, busy, _ = add(store, failed(now), running(now, progress=50), completed(now))
    jobkit.schedule(store, digest, "0 3 * * *", Digest(to="ops@example.com"), name="digest")
    app = create_app(store, read_only=True)
    url = serve(app).url
    page = tab.page
    for path in ["/", "/jobs", f"/jobs/{broken}", f"/jobs/{busy}", "/queues", "/schedules", "/jobs?status=failed"]:
        page.goto(url + path)
        expect(page.locator("#read-only")).to_be_visible()
        controls = page.locator("input[type=checkbox], input[name=csrf_token], button:not(#filters button)")
        assert controls.evaluate_all("found => found.map(e => e.outerHTML)") == [], path
        # What is left to press only looks (the jobs filter, a GET form): no form can post.
        sending = page.locator("form[method=post] :is(button, input[type=submit], input[type=image])")
        assert sending.count() == 0, path
    token = csrf_token(dashboard_of(app).secret)  # even the right token: nothing acts
    forms: list[tuple[str, dict[str, str | float | bool]]] = [
        (f"/jobs/{broken}/retry", {"csrf_token": token}),
        ("/jobs/actions", {"csrf_token": token, "action": "retry", "job": broken}),
        ("/queues/default/pause", {"csrf_token": token}),
        ("/schedules/digest/run", {"csrf_token": token}),
    ]
    for path, form in forms:
        answer = page.request.post(url + path, form=form, max_redirects=0)
        assert answer.status == 403, path
    assert store.get(broken) is not None and store.get(broken).status is FAILED  # type: ignore[union-attr]
    assert not any(info.paused for info in store.queues())
    assert len(store.list_jobs()) == 3


def test_basic_auth_guards_every_page_and_the_live_stream_works_behind_it(
    store: Store, browser: Browser, serve: Callable[[Any], Served]
) -> None:
    now = store.now()
    job = running(now, progress=5)
    add(store, job)
    assert job.worker_id is not None
    url = serve(create_app(store, auth="ops:s3cret")).url
    stranger = browser.new_context()
    try:
        for path in ["/", "/jobs", f"/jobs/{job.id}", "/live/overview", "/metrics", "/static/htmx.min.js"]:
            assert stranger.request.get(url + path).status == 401, path
        assert stranger.request.get(url + "/healthz").json()["ok"] is True
    finally:
        stranger.close()
    context = browser.new_context(viewport=VIEWPORT, http_credentials={"username": "ops", "password": "s3cret"})  # type: ignore[arg-type]
    try:
        page = context.new_page()
        watch = Watch(page)
        page.goto(url + "/")
        bar = page.locator(f"#running tr[data-job='{job.id}'] [role=progressbar]")
        expect(bar).to_have_attribute("aria-valuenow", "5")
        assert store.progress(Lease(job.id, job.worker_id), 45, None, now=store.now())
        expect(bar).to_have_attribute("aria-valuenow", "45", timeout=LIVE_TIMEOUT)
        page.locator("header nav").get_by_role("link", name="Jobs").click()
        expect(page.locator("h1")).to_have_text("Jobs")
        assert watch.problems() == []
    finally:
        context.close()


# -- under a prefix ----------------------------------------------------------------------
def host_app(dashboard: Any, prefix: str) -> Any:
    """A host application (as FastAPI or Django would be) with the dashboard mounted at *prefix*."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Mount, Route

    async def home(request: Request) -> HTMLResponse:
        return HTMLResponse(f'<!doctype html><title>shop</title><a href="{prefix}/">queue</a>')

    return Starlette(routes=[Route("/", home), Mount(prefix, app=dashboard)])


@pytest.mark.parametrize("how", ["mounted", "base_path"])
def test_under_a_prefix_every_link_form_and_live_update_stays_under_it(
    store: Store, tab: Tab, serve: Callable[[Any], Served], how: str
) -> None:
    prefix = "/ops/queue"
    now = store.now()
    broken = failed(now, queue="emails")
    busy = running(now, progress=15)
    add(store, broken, busy, *(completed(now, created_at=now - timedelta(seconds=index + 1)) for index in range(55)))
    assert busy.worker_id is not None
    if how == "mounted":
        url = serve(host_app(create_app(store), prefix)).url
        tab.page.goto(url + "/")
        tab.page.get_by_role("link", name="queue").click()
    else:
        url = serve(create_app(store, base_path=prefix)).url
        tab.page.goto(url + prefix + "/")
    page = tab.page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    expect(page).to_have_url(url + prefix + "/")
    page.wait_for_function("() => window.htmx !== undefined")  # its scripts came from under the prefix
    hrefs = page.locator("a[href^='/']").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs and all(href.startswith(prefix + "/") for href in hrefs), hrefs
    tab.marker()
    assert store.progress(Lease(busy.id, busy.worker_id), 85, None, now=store.now())
    bar = page.locator(f"#running tr[data-job='{busy.id}'] [role=progressbar]")
    expect(bar).to_have_attribute("aria-valuenow", "85", timeout=LIVE_TIMEOUT)
    assert tab.kept()
    page.locator("header nav").get_by_role("link", name="Jobs").click()
    expect(page).to_have_url(url + prefix + "/jobs")
    page.locator("#older").click()
    expect(page).to_have_url(re.compile(re.escape(url + prefix + "/jobs?after=")))
    page.locator("#filters input[name=queue]").fill("emails")
    page.locator("#filters").get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(re.escape(url + prefix + "/jobs?") + ".*queue=emails"))
    page.get_by_label(f"select {broken.id}").check()
    page.locator("#selection .bulk").get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#notice")).to_have_text("retried 1 job")
    expect(page).to_have_url(re.compile(re.escape(url + prefix + "/jobs?") + ".*queue=emails.*&notice="))
    page.locator("header nav").get_by_role("link", name="Queues").click()
    page.locator("#queues tr[data-queue=emails]").get_by_role("button", name="Pause").click()
    expect(page.locator("#notice")).to_have_text("queue emails paused")
    expect(page).to_have_url(re.compile(re.escape(url + prefix + "/queues?notice=")))
    outside = [seen for seen in requests if not urlsplit(seen).path.startswith(prefix + "/")]
    assert outside == [], "requests left the mount point"
    assert store.get(broken.id).status is PENDING  # type: ignore[union-attr]


# -- the screenshots ---------------------------------------------------------------------
def test_the_screenshot_script_saves_the_five_pages(tmp_path: Path) -> None:
    try:
        chromium_path()
    except MissingBrowser as exc:
        pytest.fail(str(exc), pytrace=False)
    outdir = tmp_path / "shots"
    done = subprocess.run(
        [sys.executable, "-m", "examples.dashboard_screenshots", str(outdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in ("overview", "jobs", "job", "queues", "schedules"):
        path = outdir / f"{name}.png"
        assert path.is_file(), f"{name}.png was not made: {done.stdout}{done.stderr}"
        width, height = png_size(path)
        assert width == 1280 and height >= 600, (name, width, height)
        assert path.stat().st_size > 20_000, f"{name}.png is nearly empty"
