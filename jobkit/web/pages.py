"""The dashboard's pages (GET): overview, jobs, one job, schedules, queues; the live stream; the probe.

Each handler reads what it shows first (the store's short read transactions, in a thread),
then renders: no transaction is open while a template runs. A bad filter or cursor in a
URL is a 400 page naming it.
"""

from __future__ import annotations

from typing import Any

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobkit.errors import ValidationError
from jobkit.model import JobRecord, JobStatus
from jobkit.present import holders, is_overdue, lease_hint
from jobkit.web.filters import JobFilter, format_cursor, parse_cursor
from jobkit.web.live import Snapshot
from jobkit.web.state import Dashboard, dashboard_of, root_of
from jobkit.web.views import actions_for, chart

PAGE_SIZE = 50  # jobs on one page of the jobs list
# A text search reads every job it passes (no index holds the words of params): one page
# reads at most about this many, newest first, and offers to search on past them. About
# 40 ms on SQLite and on PostgreSQL on the machine of the README's figures.
SEARCH_SPAN = 50_000
RUNNING_SHOWN = 50  # running jobs the overview lists (the rest are counted, and a link lists them all)
HOLDERS_SHOWN = 20  # lease holders it lists, the most overdue first (the rest are counted)


async def overview(request: Request) -> Response:
    dashboard = dashboard_of(request)
    snapshot = await dashboard.hub.snapshot()
    return dashboard.render(request, "overview.html", page="overview", **_overview_values(dashboard, snapshot))


def _overview_values(dashboard: Dashboard, snapshot: Snapshot) -> dict[str, Any]:
    now = snapshot.at
    found = holders(snapshot.summary.running)
    shown_holders = sorted(
        ((holder, is_overdue(holder, now), lease_hint(holder, now)) for holder in found),
        key=lambda item: (not item[1], item[0].renewed_at),  # overdue first, then the longest silent
    )
    return {
        "snapshot": snapshot,
        "now": now,
        "statuses": list(JobStatus),
        "chart": chart(dashboard.tally.bars(now)),
        "holders": shown_holders[:HOLDERS_SHOWN],
        "holders_more": max(0, len(shown_holders) - HOLDERS_SHOWN),
        "running": snapshot.summary.running[:RUNNING_SHOWN],
        "running_more": max(0, len(snapshot.summary.running) - RUNNING_SHOWN),
    }


async def jobs(request: Request) -> Response:
    dashboard = dashboard_of(request)
    try:
        chosen = JobFilter.parse(request.query_params)
        after = parse_cursor(request.query_params.get("after"))
    except ValidationError as exc:
        return dashboard.refuse(request, exc)

    def read() -> tuple[list[JobRecord], Any, JobFilter | None]:
        store, bounded = dashboard.store, None
        if chosen.text is not None:
            edge = store.cursor_after(SEARCH_SPAN, after=chosen.search_start(after))
            if edge is not None and store.cursor_after(1, after=(edge[0], "")) is not None:  # older jobs remain
                bounded = chosen.reading_back_to(edge[0])
        arguments = (bounded or chosen).store_arguments()
        return store.list_jobs(**arguments, limit=PAGE_SIZE + 1, after=after), store.now(), bounded

    try:
        found, now, bounded = await run_in_threadpool(read)
    except ValidationError as exc:  # what only the store checks (a text filter it cannot search, say)
        return dashboard.refuse(request, exc)
    page, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
    following = format_cursor(page[-1].created_at, page[-1].id) if more else None
    searched_to = bounded.created_from if bounded is not None and not more else None
    return dashboard.render(
        request,
        "jobs.html",
        page="jobs",
        jobs=page,
        now=now,
        chosen=chosen,
        statuses=list(JobStatus),
        next_url=chosen.url(f"{root_of(request)}/jobs", after=following) if following else None,
        searched_to=searched_to,
        search_older_url=attrs.evolve(chosen, created_until=searched_to).url(f"{root_of(request)}/jobs")
        if searched_to
        else None,
        first_url=chosen.url(f"{root_of(request)}/jobs") if after else None,
        here=chosen.url(request.url.path, **({"after": request.query_params["after"]} if after else {})),
    )


async def job(request: Request) -> Response:
    dashboard = dashboard_of(request)
    job_id = request.path_params["job_id"]

    def read() -> tuple[JobRecord | None, Any, Any, list[JobRecord | None]]:
        store = dashboard.store
        record = store.get(job_id)
        if record is None:
            return None, None, [], []
        return record, store.now(), store.attempts(job_id), [store.get(parent) for parent in record.depends_on]

    record, now, attempts, parents = await run_in_threadpool(read)
    if record is None:
        return dashboard.render(request, "missing.html", status_code=404, page="jobs", job_id=job_id)
    return dashboard.render(
        request,
        "job.html",
        page="jobs",
        job=record,
        now=now,
        attempts=attempts,
        parents=list(zip(record.depends_on, parents, strict=True)),
        actions=actions_for(record),
    )


async def schedules(request: Request) -> Response:
    dashboard = dashboard_of(request)

    def read() -> tuple[Any, Any]:
        return dashboard.store.list_schedules(), dashboard.store.now()

    entries, now = await run_in_threadpool(read)
    return dashboard.render(request, "schedules.html", page="schedules", schedules=entries, now=now)


async def queues(request: Request) -> Response:
    dashboard = dashboard_of(request)
    snapshot = await dashboard.hub.snapshot()
    return dashboard.render(
        request, "queues.html", page="queues", queues=snapshot.queues, statuses=list(JobStatus), now=snapshot.at
    )


# -- live parts: htmx asks for them every second, and swaps them in place ----------------
# Short requests rather than a held stream: a browser allows six connections to a host over
# HTTP/1.1, and six tabs each holding a stream would leave none for loading a page.
async def live_overview(request: Request) -> Response:
    """The overview's body, as the overview page shows it."""
    dashboard = dashboard_of(request)
    snapshot = await dashboard.hub.snapshot()
    return dashboard.render(request, "_overview_body.html", **_overview_values(dashboard, snapshot))


async def live_queues(request: Request) -> Response:
    """The queues page's table."""
    dashboard = dashboard_of(request)
    snapshot = await dashboard.hub.snapshot()
    return dashboard.render(request, "_queues_table.html", queues=snapshot.queues, statuses=list(JobStatus))


async def live_job(request: Request) -> Response:
    """One job's state (status, progress, attempts, lease); it stops asking once the job has finished."""
    dashboard = dashboard_of(request)
    job_id = request.path_params["job_id"]

    def read() -> tuple[JobRecord | None, Any]:
        return dashboard.store.get(job_id), dashboard.store.now()

    record, now = await run_in_threadpool(read)
    if record is None:
        return dashboard.render(request, "missing.html", status_code=404, page="jobs", job_id=job_id)
    return dashboard.render(request, "_job_state.html", job=record, now=now)


async def healthz(request: Request) -> Response:
    """For probes: whether the store answers, in JSON; no credentials needed."""
    dashboard = dashboard_of(request)
    ok, detail = await run_in_threadpool(dashboard.store.health)
    return JSONResponse({"ok": ok, "store": detail, "read_only": dashboard.read_only}, status_code=200 if ok else 503)
