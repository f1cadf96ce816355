"""The dashboard's actions (POST): retry, cancel, purge one job, a selection, or everything a filter matches;
pause and resume a queue; enable, disable or run a schedule now.

Every action is refused with 403, changing nothing, on a read-only dashboard or without
the app's CSRF token. Each does what the library call does (:mod:`jobkit.control`,
:mod:`jobkit.recurring`), whose rules say which jobs it may change; the others are left
as they are and counted in the notice it redirects back with (303, so a reload does not
act twice).

"Everything matching" first answers with a page that counts the jobs and asks; the
confirmation carries the moment of that count, and the action takes only jobs created
before it, so it acts on what was counted, not on what arrived since.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from jobkit import control
from jobkit.control import cancel_many, pause, resume, retry
from jobkit.errors import JobkitError, ValidationError
from jobkit.model import JobRecord, JobStatus
from jobkit.recurring import disable, enable, run_now
from jobkit.store import Store
from jobkit.web.filters import JobFilter, parse_time
from jobkit.web.security import token_matches
from jobkit.web.state import dashboard_of, root_of
from jobkit.web.views import actions_for

BULK_PAGE = 500  # jobs read and acted on per step of a bulk action: one short transaction each
JOB_ACTIONS = ("retry", "cancel", "purge")

Handler = Callable[[Request, FormData], Awaitable[Response]]


def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """*handler*, behind the read-only switch and the CSRF check: a refusal is 403 and changes nothing."""

    async def endpoint(request: Request) -> Response:
        dashboard = dashboard_of(request)
        if dashboard.read_only:
            return PlainTextResponse("this dashboard is read-only: it changes nothing\n", status_code=403)
        form = await request.form()
        offered = request.headers.get("x-csrf-token") or _text(form, "csrf_token")
        if not token_matches(dashboard.secret, offered):
            return PlainTextResponse("missing or wrong CSRF token: nothing was changed\n", status_code=403)
        try:
            return await handler(request, form)
        except ValidationError as exc:
            return dashboard.refuse(request, exc)
        except JobkitError as exc:  # an unknown schedule, a job that went away: the library's own words
            return _back(request, form, str(exc))
        finally:
            dashboard.hub.forget()

    return endpoint


def _text(form: FormData, field: str) -> str | None:
    value = form.get(field)
    return value if isinstance(value, str) else None


def way_back(request: Request, form: FormData) -> str:
    """The page a form came from (its ``next``) if that is one of ours, else the dashboard's front page."""
    root = root_of(request)
    target = _text(form, "next") or ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(f"{root}/") or target.startswith("//"):
        return f"{root}/"  # never off the dashboard
    return target


def _back(request: Request, form: FormData, notice: str) -> Response:
    """303 to the page the form came from, telling what was done."""
    target = way_back(request, form)
    joiner = "&" if urlsplit(target).query else "?"
    return RedirectResponse(f"{target}{joiner}{urlencode({'notice': notice})}", status_code=303)


# -- jobs -------------------------------------------------------------------------
def act(store: Store, action: str, jobs: Sequence[JobRecord]) -> tuple[int, int]:
    """Do *action* to those of *jobs* it applies to; return (changed, left as they were)."""
    chosen = [job.id for job in jobs if action in actions_for(job)]
    if not chosen:
        changed = 0
    elif action == "retry":
        changed = len(retry(store, chosen))
    elif action == "purge":
        changed = len(control.purge_jobs(store, chosen))
    else:
        after = cancel_many(store, chosen)
        changed = sum(1 for job in after if job.status is JobStatus.CANCELLED or job.cancel_requested)
    return changed, len(jobs) - changed


PARTICIPLES = {"retry": "retried", "cancel": "cancelled", "purge": "purged"}


def said(action: str, changed: int, skipped: int) -> str:
    """``retried 3 jobs; 1 left as it was (not failed or cancelled)``."""
    done = {"retry": "retried", "cancel": "cancelled (or asked to stop)", "purge": "purged"}[action]
    why = {"retry": "not failed or cancelled", "cancel": "already finished", "purge": "not finished"}[action]
    text = f"{done} {changed} job{'s' if changed != 1 else ''}"
    if skipped:
        text += f"; {skipped} left as {'it was' if skipped == 1 else 'they were'} ({why}, or changed meanwhile)"
    return text


def job_action(action: str) -> str:
    """*action* if it is one done to jobs, else a ValidationError naming it."""
    if action not in JOB_ACTIONS:
        raise ValidationError(f"action must be one of {', '.join(JOB_ACTIONS)}, not {action!r}", value=action)
    return action


async def one_job(request: Request, form: FormData) -> Response:
    store = dashboard_of(request).store
    action = job_action(request.path_params["action"])
    job_id = request.path_params["job_id"]

    def run() -> str:
        job = store.get(job_id)
        if job is None:
            return f"job {job_id} is not there (purged?): nothing was done"
        changed, _ = act(store, action, [job])
        if changed:
            return said(action, changed, 0)
        return f"job {job_id} is {job.status.value}: it cannot be {PARTICIPLES[action]}"

    return _back(request, form, await run_in_threadpool(run))


async def selected_jobs(request: Request, form: FormData) -> Response:
    store = dashboard_of(request).store
    action = job_action(_text(form, "action") or "")
    job_ids = [value for value in form.getlist("job") if isinstance(value, str)]
    if not job_ids:
        return _back(request, form, "no job was selected: nothing was done")

    def run() -> str:
        found = [job for job in (store.get(job_id) for job_id in dict.fromkeys(job_ids)) if job is not None]
        changed, skipped = act(store, action, found)
        return said(action, changed, skipped + len(dict.fromkeys(job_ids)) - len(found))

    return _back(request, form, await run_in_threadpool(run))


def matching(store: Store, chosen: JobFilter, before: datetime) -> list[list[JobRecord]]:
    """Every job *chosen* matches that was created before *before*, a page at a time (newest first)."""
    arguments = chosen.store_arguments()
    until = arguments["created_until"]
    arguments["created_until"] = before if until is None else min(until, before)
    return list(control.pages(store, size=BULK_PAGE, **arguments))


async def matching_jobs(request: Request, form: FormData) -> Response:
    """Step one (no ``as_of``): count and ask. Step two: act on what was counted, page by page."""
    dashboard = dashboard_of(request)
    store = dashboard.store
    action = job_action(_text(form, "action") or "")
    chosen = JobFilter.parse({key: value for key, value in form.items() if isinstance(value, str)})
    as_of = _text(form, "as_of")
    if not as_of:

        def count() -> tuple[datetime, int, int]:
            now = store.now()
            pages = matching(store, chosen, now)
            total = sum(len(page) for page in pages)
            applies = sum(1 for page in pages for job in page if action in actions_for(job))
            return now, total, applies

        now, total, applies = await run_in_threadpool(count)
        return dashboard.render(
            request,
            "confirm.html",
            page="jobs",
            action=action,
            chosen=chosen,
            total=total,
            applies=applies,
            as_of=now.isoformat(),
            next=way_back(request, form),
        )
    before = parse_time("as_of", as_of)

    def run() -> str:
        changed = skipped = 0
        for page in matching(store, chosen, before):
            done, left = act(store, action, page)
            changed, skipped = changed + done, skipped + left
        return f"{said(action, changed, skipped)}, of those matching {chosen.describe()}"

    return _back(request, form, await run_in_threadpool(run))


# -- queues and schedules ---------------------------------------------------------
async def queue_action(request: Request, form: FormData) -> Response:
    store = dashboard_of(request).store
    name, action = request.path_params["name"], request.path_params["action"]
    if action not in ("pause", "resume"):
        raise ValidationError(f"a queue can be paused or resumed, not {action!r}", value=action)
    await run_in_threadpool(pause if action == "pause" else resume, store, name)
    return _back(request, form, f"queue {name} {'paused' if action == 'pause' else 'resumed'}")


async def schedule_action(request: Request, form: FormData) -> Response:
    store = dashboard_of(request).store
    name, action = request.path_params["name"], request.path_params["action"]
    if action == "enable":
        await run_in_threadpool(enable, store, name)
        return _back(request, form, f"schedule {name} enabled")
    if action == "disable":
        await run_in_threadpool(disable, store, name)
        return _back(request, form, f"schedule {name} disabled")
    if action == "run":
        job_id = await run_in_threadpool(run_now, store, name)
        return _back(request, form, f"schedule {name} ran now: job {job_id}")
    raise ValidationError(f"a schedule can be enabled, disabled or run, not {action!r}", value=action)
