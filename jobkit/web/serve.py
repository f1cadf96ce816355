"""``python -m jobkit web TARGET``: the dashboard served by uvicorn until Ctrl-C or SIGTERM."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn

from jobkit.store import Store
from jobkit.web.app import create_app
from jobkit.web.security import check_bind


def serve(
    store: Store,
    *,
    host: str,
    port: int,
    read_only: bool,
    base_path: str,
    auth: tuple[str, str] | None,
    say: Callable[[str], object] = print,
) -> int:
    """Serve *store*'s dashboard on *host*:*port*; refuses a non-loopback *host* without *auth*."""
    check_bind(host, auth)
    app = create_app(store, read_only=read_only, auth=auth, base_path=base_path)
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if read_only else ""
    say(f"jobkit dashboard on http://{shown}:{port}{base_path.rstrip('/')}/{mode}; Ctrl-C stops it")
    # Open event streams never end by themselves: give them 2 s to go once asked to stop.
    uvicorn.run(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    return 0
