"""The web dashboard: ``python -m jobkit web TARGET``, or :func:`create_app` to mount in an ASGI app.

Needs the ``web`` extra (``pip install "jobkit-queue[web]"``): Starlette, Jinja2,
python-multipart, prometheus-client and uvicorn.
"""

from __future__ import annotations

EXTRA = frozenset({"starlette", "jinja2", "multipart", "python_multipart", "prometheus_client", "uvicorn"})

try:
    from jobkit.web.app import create_app
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is installed wherever the tests run
    if exc.name is None or exc.name.partition(".")[0] not in EXTRA:
        raise
    raise ModuleNotFoundError(f'the jobkit dashboard needs its extra ({exc}): pip install "jobkit-queue[web]"') from exc

__all__ = ["create_app"]
