"""Screenshots of the dashboard: ``python -m examples.dashboard_screenshots [OUTDIR]`` (default docs/screenshots).

Builds a throwaway SQLite store holding what a shop's queue holds after a busy hour
(three queues, several job names; completed, failed, cancelled, running with progress,
pending, scheduled; a payment job that failed after three attempts, with its traceback;
a report waiting for the job it runs after; schedules), serves its dashboard in this
process, and saves PNGs of the overview, the jobs list, that failed job, the queues and
the schedules, 1280 pixels wide (and at most 1400 high), through headless Chromium (Debian's ``chromium``
package at /usr/bin/chromium, or ``--browser PATH``, or ``$JOBKIT_TEST_BROWSER``;
driven by Playwright for Python, which must never download a browser of its own).

:class:`Served` is also the way to serve the dashboard in-process for anything else
(the browser tests and ``benchmarks.web_scale`` use it): uvicorn in a thread.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

import jobkit
from jobkit.model import JobRecord, JobStatus, new_id

OUTDIR = Path("docs") / "screenshots"
BROWSER_ENV = "JOBKIT_TEST_BROWSER"
CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 800
MOST_HEIGHT = 1400  # pixels of a long page kept (the jobs list's first rows)
PAGES = ("overview", "jobs", "job", "queues", "schedules")
START_TIMEOUT = 10.0  # seconds a server may take to listen
STOP_TIMEOUT = 10.0  # seconds it may take to stop
SCENE_TIMEOUT = 30.0  # seconds the worker may take to run the scene's real jobs


# -- serving in a thread ------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """*app* (any ASGI app) under uvicorn on 127.0.0.1 in a thread; ``url`` is its root, without a slash.

    Entering starts the server and waits (up to :data:`START_TIMEOUT`) until it listens;
    exiting sets ``should_exit`` and joins the thread. Open server-sent-event streams are
    cut after a second, as uvicorn's graceful shutdown allows.
    """

    def __init__(self, app: Any, *, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self._failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name=f"uvicorn:{self.port}", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # shown by __enter__ when the server never listened
            self._failure.append(exc)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"uvicorn on port {self.port} stopped before it listened: {self._failure}")
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"uvicorn on port {self.port} did not listen within {START_TIMEOUT:g}s")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(STOP_TIMEOUT)
        if self.thread.is_alive():
            raise RuntimeError(f"uvicorn on port {self.port} did not stop within {2 * STOP_TIMEOUT:g}s")


# -- the scene ----------------------------------------------------------------------------
jobs = jobkit.Registry()


@attrs.frozen
class Charge:
    order: str
    cents: int
    card: str = "tok_visa_4242"


@attrs.frozen
class Report:
    day: str
    region: str = "eu"


@attrs.frozen
class Receipt:
    order: str
    to: str


class GatewayTimeout(ConnectionError):
    """The payment gateway did not answer."""


def call_gateway(charge: Charge) -> str:
    raise GatewayTimeout(f"payment gateway did not answer within 30s (order {charge.order}, {charge.cents} cents)")


@jobs.job(name="shop.payments:charge_card", max_attempts=3, retry_backoff=0.05, queue="payments")
def charge_card(params: Charge, ctx: jobkit.Context) -> str:
    ctx.progress(10, "calling the gateway")
    return call_gateway(params)


@jobs.job(name="shop.emails:send_receipt", queue="emails")
def send_receipt(params: Receipt, ctx: jobkit.Context) -> str:
    return f"sent to {params.to}"


@jobs.job(name="shop.reports:daily_sales", queue="reports")
def daily_sales(params: Report, ctx: jobkit.Context) -> dict[str, int]:
    return {"orders": 0}


@jobs.job(name="shop.reports:email_report", queue="reports")
def email_report(params: Report, ctx: jobkit.Context) -> str:
    return "sent"


HISTORY = (  # (job name, queue, share of the last hour's jobs, typical seconds, failure rate, error)
    ("shop.emails:send_receipt", "emails", 0.45, 0.4, 0.02, "SMTPServerDisconnected: Connection unexpectedly closed"),
    ("shop.images:thumbnail", "default", 0.30, 1.8, 0.01, "PIL.UnidentifiedImageError: cannot identify image file"),
    ("shop.sync:import_orders", "default", 0.15, 6.0, 0.05, "httpx.ReadTimeout: timed out reading the orders API"),
    ("shop.payments:capture", "payments", 0.10, 0.9, 0.03, "CardDeclined: insufficient funds"),
)
CHECKOUT = Path(__file__).resolve().parent.parent
HIDE_CHECKOUT = """(folder) => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        node.nodeValue = node.nodeValue.split(folder + "/").join("");
    }
}"""
TRACEBACK = """Traceback (most recent call last):
  File "/srv/shop/jobs.py", line 88, in {function}
    result = client.{call}
  File "/srv/shop/clients.py", line 41, in {call_name}
    raise {error_type}({message!r})
{error}
"""


@attrs.frozen
class Scene:
    """What the screenshots show: the failed job's page among them."""

    failed_job: str
    waiting_job: str
    running_jobs: list[str]


def history(now: datetime, rng: random.Random, count: int = 900) -> list[JobRecord]:
    """The last hour's finished jobs, spread over it (busier lately), as a worker would have left them."""
    made: list[JobRecord] = []
    weights = [share for _, _, share, _, _, _ in HISTORY]
    for _ in range(count):
        name, queue, _, seconds, failure_rate, error = rng.choices(HISTORY, weights)[0]
        ago = timedelta(minutes=60 * (1 - rng.random() ** 0.7), seconds=5)
        ran = timedelta(seconds=rng.expovariate(1 / seconds))
        finished_at = now - ago
        started = finished_at - ran
        created = started - timedelta(seconds=rng.uniform(0.05, 4))
        failed = rng.random() < failure_rate
        cancelled = not failed and rng.random() < 0.004
        status = JobStatus.FAILED if failed else JobStatus.CANCELLED if cancelled else JobStatus.COMPLETED
        function = name.rpartition(":")[2]
        error_type, _, message = error.partition(": ")
        made.append(
            JobRecord(
                id=new_id(),
                job_name=name,
                params=f'{{"order": "A-{rng.randint(10000, 99999)}", "attempt_hint": {rng.randint(1, 3)}}}',
                status=status,
                scheduled_for=created,
                created_at=created,
                updated_at=finished_at,
                attempt_count=3 if failed else 1,
                result=None if failed or cancelled else '{"ok": true}',
                error=error if failed else "cancelled" if cancelled else None,
                traceback=TRACEBACK.format(
                    function=function,
                    call=f"{function}()",
                    call_name=function,
                    error_type=error_type,
                    message=message,
                    error=error,
                )
                if failed
                else None,
                worker_started_at=started,
                completed_at=finished_at,
                queue=queue,
                correlation_id=f"checkout-{rng.randint(1000, 9999)}" if queue == "payments" else None,
            )
        )
    return made


def waiting(now: datetime, rng: random.Random) -> list[JobRecord]:
    """Due jobs not claimed yet (the reports queue is paused), and jobs scheduled for later."""
    made = []
    for index in range(40):
        name, queue = rng.choice([("shop.emails:send_receipt", "emails"), ("shop.images:thumbnail", "default")])
        if index < 12:
            name, queue = "shop.reports:weekly_digest", "reports"
        created = now - timedelta(seconds=rng.uniform(1, 240))
        later = index >= 30
        scheduled = now + timedelta(minutes=rng.uniform(5, 180)) if later else created
        made.append(
            JobRecord(
                id=new_id(),
                job_name=name,
                params=f'{{"order": "A-{rng.randint(10000, 99999)}"}}',
                status=JobStatus.PENDING,
                scheduled_for=scheduled,
                created_at=created,
                updated_at=created,
                queue=queue,
            )
        )
    return made


def busy(now: datetime) -> list[JobRecord]:
    """Jobs running now on two workers, with their progress."""
    made = []
    for index, (name, queue, percent, message, worker) in enumerate(
        [
            ("shop.sync:import_orders", "default", 64, "page 32 of 50", "web-1:7301:3f2a"),
            ("shop.images:thumbnail", "default", 20, "resizing 1 of 5", "web-1:7301:3f2a"),
            ("shop.exports:catalogue_csv", "default", 91, "writing rows", "batch-2:1184:9c0e"),
        ]
    ):
        started = now - timedelta(seconds=20 + 40 * index)
        made.append(
            JobRecord(
                id=new_id(),
                job_name=name,
                params='{"source": "erp", "since": "2026-12-04T00:00:00Z"}',
                status=JobStatus.RUNNING,
                scheduled_for=started - timedelta(seconds=1),
                created_at=started - timedelta(seconds=1),
                updated_at=now,
                attempt_count=1,
                progress=percent,
                progress_message=message,
                worker_id=worker,
                worker_started_at=started,
                worker_expires_at=now + timedelta(seconds=25),
                queue=queue,
            )
        )
    return made


def build_scene(store: jobkit.Store, seed: int = 14) -> Scene:
    """Fill *store* (empty) with the shop's busy hour; return the jobs the screenshots show."""
    rng = random.Random(seed)
    now = store.now()
    store.add(history(now, rng))
    # A real worker runs the payment that fails three times, so that its attempts, worker
    # and traceback are what jobkit writes; and a receipt that succeeds.
    charge = charge_card.later(Charge(order="A-40417", cents=12900), store, correlation_id="checkout-4417")
    send_receipt.later(Receipt(order="A-40416", to="ada@example.com"), store)
    stop = threading.Event()
    worker = threading.Thread(
        target=jobkit.run_worker,
        args=(store, jobs),
        kwargs={"stop": stop, "poll_interval": 0.05, "concurrency": 2},
        daemon=True,
    )
    worker.start()
    deadline = time.monotonic() + SCENE_TIMEOUT
    try:
        while (found := store.get(charge)) is None or found.status is not JobStatus.FAILED:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the scene's payment job did not fail within {SCENE_TIMEOUT:g}s: {found}")
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(STOP_TIMEOUT)
    now = store.now()
    store.add(waiting(now, rng))
    running = busy(now)
    store.add(running)
    sales = daily_sales.later(Report(day="2026-12-04"), store, delay=timedelta(minutes=45))
    report = email_report.later(Report(day="2026-12-04"), store, after=[sales])
    jobkit.pause(store, "reports")
    jobkit.schedule(store, daily_sales, "0 3 * * *", Report(day="yesterday"), name="nightly-sales")
    jobkit.schedule(
        store, send_receipt, "*/15 * * * *", Receipt(order="digest", to="ops@example.com"), name="ops-digest"
    )
    jobkit.schedule(
        store, email_report, "0 8 * * MON", Report(day="last-week", region="us"), name="weekly-us", enabled=False
    )
    return Scene(failed_job=charge, waiting_job=report, running_jobs=[job.id for job in running])


# -- the screenshots ------------------------------------------------------------------------
def browser_path(given: str | None = None) -> str:
    """The Chromium to drive: *given*, else ``$JOBKIT_TEST_BROWSER``, else Debian's; a clear error without one."""
    path = given or os.environ.get(BROWSER_ENV) or CHROMIUM
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise SystemExit(
            f"no Chromium at {path}: install Debian's package (as root: apt-get install -y chromium), "
            "or name one with --browser PATH (never `playwright install`)"
        )
    return path


def take(url: str, scene: Scene, outdir: Path, executable: str) -> list[Path]:
    """Save a PNG of each of :data:`PAGES` (full pages, :data:`WIDTH` pixels wide) into *outdir*."""
    from playwright.sync_api import sync_playwright

    outdir.mkdir(parents=True, exist_ok=True)
    paths = {
        "overview": "/",
        "jobs": "/jobs",
        "job": f"/jobs/{scene.failed_job}",
        "queues": "/queues",
        "schedules": "/schedules",
    }
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
            page = context.new_page()
            for name in PAGES:
                page.goto(url + paths[name], wait_until="load")
                page.wait_for_function("() => window.htmx !== undefined")
                page.evaluate(HIDE_CHECKOUT, str(CHECKOUT))  # a real traceback names this checkout's folder
                path = outdir / f"{name}.png"
                tall = page.evaluate("document.documentElement.scrollHeight")
                clip = {"x": 0, "y": 0, "width": WIDTH, "height": min(tall, MOST_HEIGHT)}
                page.screenshot(path=str(path), full_page=True, clip=clip)  # type: ignore[arg-type]
                saved.append(path)
            context.close()
        finally:
            browser.close()
    return saved


def make(outdir: Path, executable: str) -> list[Path]:
    """Build the scene in a temporary store, serve it, and save the screenshots; return their paths."""
    from jobkit.web import create_app

    with tempfile.TemporaryDirectory(prefix="jobkit-screenshots-") as tmp:
        store = jobkit.SqliteStore(Path(tmp) / "shop.sqlite")
        try:
            scene = build_scene(store)
            with Served(create_app(store)) as served:
                return take(served.url, scene, outdir, executable)
        finally:
            store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.dashboard_screenshots", description=__doc__.split("\n")[0]
    )
    parser.add_argument("outdir", nargs="?", type=Path, default=OUTDIR, help=f"where the PNGs go (default {OUTDIR})")
    parser.add_argument("--browser", help=f"a Chromium executable (default ${BROWSER_ENV}, else {CHROMIUM})")
    args = parser.parse_args(argv)
    for path in make(args.outdir, browser_path(args.browser)):
        print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
