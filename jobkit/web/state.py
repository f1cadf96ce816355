"""What every request of one dashboard shares: its store, its snapshot hub, its templates, its settings.

Templates are Jinja2 with autoescaping on for every page and fragment: whatever a job's
params, result, error or name hold (``<script>`` included) is shown as text. Times and
JSON are formatted by :mod:`jobkit.present`, the same helpers the admin command uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from jobkit import present
from jobkit.errors import ValidationError
from jobkit.store import Store
from jobkit.web.live import Hub
from jobkit.web.security import csrf_token
from jobkit.web.tally import Tally

STATIC = Path(__file__).parent / "static"


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("jobkit.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=present.format_time,
        first_line=present.first_line,
        pretty=present.pretty,
        age=present.format_age,
    )
    env.globals.update(relative=present.format_relative, since=present.format_since)
    return env


@attrs.define
class Dashboard:
    """One app's store and settings; ``owns_store`` when the app opened it (and so closes it)."""

    store: Store
    read_only: bool
    secret: bytes
    owns_store: bool
    tally: Tally = attrs.Factory(Tally)
    templates: Environment = attrs.Factory(environment)
    hub: Hub = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.hub = Hub(self.store, self.tally)

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        """*template* with *values* and what every page needs: where it is mounted, the token, read-only or not."""
        html = self.fragment(request, template, **values)
        return HTMLResponse(html, status_code=status_code)

    def refuse(self, request: Request, error: ValidationError) -> HTMLResponse:
        """The 400 page naming what in the request was wrong (nothing was read or changed for it)."""
        return self.render(request, "error.html", status_code=400, page="jobs", message=str(error))

    def fragment(self, request: Request, template: str, **values: Any) -> str:
        context = {
            "root": root_of(request),
            "csrf": csrf_token(self.secret),
            "read_only": self.read_only,
            "notice": request.query_params.get("notice", ""),
            **values,
        }
        return self.templates.get_template(template).render(context)


def root_of(request: Request) -> str:
    """Where the app is mounted (the ASGI ``root_path``): every link and form starts with it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard
