"""``create_app(target, ...)``: the dashboard as one ASGI app, to serve alone or mount in another.

Starlette, because it is the small, well-kept core that FastAPI is built on (so the app
mounts into FastAPI or any ASGI host as it is), with Jinja2 templates and htmx (and its
server-sent-events extension) vendored under ``static/``: nothing is fetched at run
time, and every page works as plain HTML forms and links before any script runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from jobkit.errors import ValidationError
from jobkit.store import Store, open_store
from jobkit.web import actions, pages
from jobkit.web.metrics import metrics
from jobkit.web.security import AUTH_ENV, SECRET_ENV, BasicAuth, SecurityHeaders, new_secret, parse_auth
from jobkit.web.state import STATIC, Dashboard


def routes() -> list[BaseRoute]:
    return [
        Route("/", pages.overview, name="overview"),
        Route("/jobs", pages.jobs, name="jobs"),
        Route("/jobs/actions", actions.guarded(actions.selected_jobs), methods=["POST"]),
        Route("/jobs/matching", actions.guarded(actions.matching_jobs), methods=["POST"]),
        Route("/jobs/{job_id}", pages.job, name="job"),
        Route("/jobs/{job_id}/{action}", actions.guarded(actions.one_job), methods=["POST"]),
        Route("/schedules", pages.schedules, name="schedules"),
        # A schedule's name may hold "/": the last segment is the action.
        Route("/schedules/{name:path}/{action}", actions.guarded(actions.schedule_action), methods=["POST"]),
        Route("/queues", pages.queues, name="queues"),
        Route("/queues/{name}/{action}", actions.guarded(actions.queue_action), methods=["POST"]),
        Route("/live/overview", pages.live_overview),
        Route("/live/queues", pages.live_queues),
        Route("/live/jobs/{job_id}", pages.live_job),
        Route("/healthz", pages.healthz),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(
    target: str | os.PathLike[str] | Store,
    *,
    read_only: bool = False,
    auth: str | tuple[str, str] | None = None,
    base_path: str = "",
    secret: str | None = None,
    **store_options: Any,
) -> ASGIApp:
    """The dashboard of the store *target* names (a path, a URL, or a store, as :func:`jobkit.open_store` takes).

    - *read_only*: no action controls, and 403 to every action.
    - *auth*: ``"USER:PASSWORD"`` (or a pair) for HTTP Basic on every page but
      ``/healthz``; None reads ``$JOBKIT_WEB_AUTH``, and without it there is none.
    - *base_path*: serve under this prefix (``/jobs``), for a proxy that does not strip
      it. Mounted inside another app, the dashboard follows the ASGI ``root_path``
      instead, so leave it empty there.
    - *secret*: the CSRF secret (else ``$JOBKIT_WEB_SECRET``, else random per app): give
      the same one to several processes serving one address.

    A store the app opens it also closes when the app shuts down; a store passed in is
    the caller's (a MemoryStore in a notebook, say), and stays open.
    """
    owns = isinstance(target, (str, os.PathLike))
    store = open_store(target, **store_options)
    dashboard = Dashboard(
        store=store, read_only=read_only, secret=new_secret(secret or os.environ.get(SECRET_ENV)), owns_store=owns
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(dashboard.hub.settle)  # a snapshot read may be using the store
            if dashboard.owns_store:
                store.close()

    app = Starlette(routes=routes(), lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])
    app.state.dashboard = dashboard
    served: ASGIApp = app
    base = base_path.rstrip("/")
    if base:
        if not base.startswith("/"):
            raise ValidationError(f"base_path must start with /, not {base_path!r}", value=base_path)
        served = Starlette(routes=[Mount(base, app=app)], lifespan=lifespan)
    credentials = auth if auth is not None else os.environ.get(AUTH_ENV) or None
    if credentials is not None:
        user, password = parse_auth(credentials) if isinstance(credentials, str) else credentials
        served = BasicAuth(served, user, password, base_path=base)
    return served
