"""psycopg's errors as jobkit's: one line that names the server and what happened.

A value the database refuses (a CHECK, a NUL in text, a broken encoding) is a
:class:`ValidationError`: the call's input was wrong and nothing of it was written. A
full disk is a :class:`StoreFullError`. Anything else (a lost connection, a statement
or lock timeout, a server shutting down) is a :class:`StoreError`: the database could
not be used just now, nothing of the call was written, and the call may be tried again.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg

from jobkit.errors import JobkitError, StoreError, StoreFullError, ValidationError
from jobkit.stores.refusals import too_deep


def where(dsn: str) -> str:
    """The server and database a DSN names, without its password: ``host:port/dbname``."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql (an unreadable DSN)"
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or "5432")
    return f"{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def reason(exc: BaseException) -> str:
    """What the server (or libpq) said, on one line."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc) or type(exc).__name__
    return " ".join(text.split())


def store_error(place: str, exc: psycopg.Error) -> JobkitError:
    """The jobkit error for *exc*, raised by the server at *place* (see :func:`where`)."""
    said = reason(exc)
    if isinstance(exc, pg.UniqueViolation):
        return JobkitError(f"cannot add jobs: {said}")
    if isinstance(exc, pg.DiskFull | pg.OutOfMemory | pg.InsufficientResources):
        return StoreFullError(f"{place}: the database server is out of room ({said}); nothing was written", path=place)
    if isinstance(exc, pg.DataError | pg.IntegrityError):
        return ValidationError(f"{place}: the database refused a value: {said}")
    if isinstance(exc, pg.StatementTooComplex):  # "stack depth limit exceeded": never succeeds as it is
        return too_deep(place, said, "the server (about 700)")
    if isinstance(exc, pg.QueryCanceled):
        return StoreError(f"{place}: a statement was cancelled ({said}); nothing was written", path=place)
    if isinstance(exc, pg.LockNotAvailable):
        return StoreError(f"{place}: a lock was not granted in time ({said}); nothing was written", path=place)
    return StoreError(f"{place}: {said}", path=place)
