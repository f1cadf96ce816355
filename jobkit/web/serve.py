"""``python -m jobkit web TARGET``: the dashboard served by uvicorn until Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

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
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    Server(config).run()
    return 0


class Server(uvicorn.Server):
    """uvicorn's server, but a SIGTERM or Ctrl-C that stopped it is not raised again when it has.

    uvicorn re-raises the signal after a graceful shutdown (so a bare process dies of it);
    here the command goes on to close its store and exit 0, as the worker does.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
