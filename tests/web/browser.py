"""What the dashboard's browser tests share: Chromium through Playwright, an app served in a thread, job records.

A plain module, imported by tests/web/test_browser*.py: their fixtures wrap these helpers.

- :func:`chromium` is Debian's Chromium (``/usr/bin/chromium``, or ``$JOBKIT_TEST_BROWSER``),
  never a downloaded browser; without it the browser tests FAIL, saying how to install it.
- :class:`Served` (from ``examples.dashboard_screenshots``, which anyone can run without
  the tests) runs an ASGI app under uvicorn on a free loopback port in a thread, waiting
  (with a deadline) until it listens, and stops it at the end.
- :class:`Watch` notes what a page must never do: open a dialog, throw, fail a request.
- ``pending``, ``running``, ``failed``, ... build records as any writer could store
  them, so a test shows a scene without running a worker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from examples.dashboard_screenshots import Served, free_port
from jobkit.model import JobRecord, JobStatus, new_id

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Response

__all__ = [  # Served and free_port are the example's, used from here too
    "Served",
    "Watch",
    "chromium",
    "chromium_path",
    "completed",
    "failed",
    "free_port",
    "pending",
    "running",
]

BROWSER_ENV = "JOBKIT_TEST_BROWSER"  # a Chromium executable other than Debian's
DEBIAN_CHROMIUM = "/usr/bin/chromium"
LIVE_TIMEOUT = 5_000  # milliseconds a live update may take to show (the API promises about 2 s)
VIEWPORT = {"width": 1280, "height": 900}


# -- the browser ------------------------------------------------------------------------
class MissingBrowser(RuntimeError):
    """No Chromium where the tests look: the message says how to install it."""


def chromium_path() -> str:
    """The Chromium the tests drive: ``$JOBKIT_TEST_BROWSER``, else Debian's ``/usr/bin/chromium``.

    Raises :class:`MissingBrowser` (the tests turn it into a failure, in CI and out of it:
    a browser test that is skipped proves nothing) when that file is not an executable.
    """
    given = os.environ.get(BROWSER_ENV, "").strip()
    path = given or DEBIAN_CHROMIUM
    if Path(path).is_file() and os.access(path, os.X_OK):
        return path
    where = f"${BROWSER_ENV}={given}" if given else DEBIAN_CHROMIUM
    ci = " (CI=true: .ci/run installs it when it runs as root)" if os.environ.get("CI") == "true" else ""
    raise MissingBrowser(
        f"the dashboard's browser tests need Chromium at {where}, and it is not an executable there{ci}: "
        f"install Debian's package, as root: apt-get install -y chromium "
        f"(or point ${BROWSER_ENV} at a Chromium; never `playwright install`)"
    )


@contextlib.contextmanager
def chromium(executable: str | None = None) -> Iterator[Browser]:
    """Headless Chromium (*executable*, else :func:`chromium_path`), driven by Playwright's sync API, closed after."""
    from playwright.sync_api import sync_playwright

    executable = executable or chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


@attrs.define(slots=False)  # Playwright keeps its wrappers of bound handlers on the instance
class Watch:
    """What a page did that it must not: dialogs opened (each dismissed), uncaught errors, failed requests."""

    page: Page
    dialogs: list[str] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)
    failed: list[str] = attrs.Factory(list)
    console: list[str] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("response", self._response)
        self.page.on("console", self._console)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        with contextlib.suppress(Exception):  # the page may be gone already
            dialog.dismiss()

    def _response(self, response: Response) -> None:
        # 404 (a purged job's page) and 403 (a refused action) are answers a test may mean to get;
        # a 5xx, or a 4xx for a script or stylesheet, is a fault.
        kind = response.request.resource_type
        if response.status >= 500 or (response.status >= 400 and kind not in ("document", "fetch", "xhr")):
            self.failed.append(f"{response.status} {response.request.method} {response.url} ({kind})")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(message.text)

    def problems(self) -> list[str]:
        return [
            *(f"dialog opened: {d}" for d in self.dialogs),
            *(f"uncaught error: {e}" for e in self.errors),
            *(f"request failed: {f}" for f in self.failed),
        ]


# -- serving ----------------------------------------------------------------------------
def dashboard_of(app: Any) -> Any:
    """The :class:`jobkit.web.state.Dashboard` of an app :func:`jobkit.web.create_app` made (no auth, no base_path)."""
    return app.state.dashboard


# -- records ----------------------------------------------------------------------------
XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_MORE = "\"><svg onload=alert(1)><a href='javascript:alert(2)'>x</a>"
XSS = f"{XSS_SCRIPT}{XSS_IMG}{XSS_MORE}"


def _record(status: JobStatus, now: datetime, **fields: Any) -> JobRecord:
    age = fields.pop("age", timedelta(seconds=30))
    created = fields.pop("created_at", now - age)
    values: dict[str, Any] = {
        "id": new_id(),
        "job_name": "shop.tasks:resize",
        "params": '{"url": "a.png"}',
        "status": status,
        "scheduled_for": created,
        "created_at": created,
        "updated_at": created,
        **fields,
    }
    return JobRecord(**values)


def pending(now: datetime, **fields: Any) -> JobRecord:
    """A pending job, due since it was created (*age* ago, 30 s by default)."""
    return _record(JobStatus.PENDING, now, **fields)


def running(now: datetime, *, progress: int = 0, token: str | None = None, **fields: Any) -> JobRecord:
    """A running job held by *token* (a new one by default) under a lease that outlives any test."""
    token = token or f"test-worker:{new_id()[-12:]}"
    started = now - timedelta(seconds=5)
    values: dict[str, Any] = {
        "worker_id": token,
        "worker_started_at": started,
        "worker_expires_at": now + timedelta(days=1),
        "attempt_count": 1,
        "progress": progress,
        **fields,
    }
    return _record(JobStatus.RUNNING, now, **values)


def ended(status: JobStatus, now: datetime, **fields: Any) -> JobRecord:
    """A job that finished (completed, failed, cancelled) a few seconds ago, after one attempt."""
    finished = fields.pop("completed_at", now - timedelta(seconds=3))
    values: dict[str, Any] = {
        "attempt_count": 1,
        "worker_started_at": finished - timedelta(seconds=2),
        "completed_at": finished,
        "updated_at": finished,
        **fields,
    }
    if status is JobStatus.COMPLETED:
        values.setdefault("result", '{"ok": true}')
    elif status is JobStatus.FAILED:
        values.setdefault("error", "ValueError: the image is not a PNG")
        values["attempt_count"] = fields.get("attempt_count", fields.get("max_attempts", 3))
    else:
        values.setdefault("error", "cancelled")
    return _record(status, now, **values)


def failed(now: datetime, **fields: Any) -> JobRecord:
    return ended(JobStatus.FAILED, now, **fields)


def completed(now: datetime, **fields: Any) -> JobRecord:
    return ended(JobStatus.COMPLETED, now, **fields)


def ids(records: Sequence[JobRecord]) -> list[str]:
    return [record.id for record in records]
