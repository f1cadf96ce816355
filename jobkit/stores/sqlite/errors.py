"""What SQLite's errors mean to a user: every ``apsw.Error`` becomes a jobkit error.

Two kinds, because the worker treats them differently:

- the database or the machine is in the way (a full disk, an I/O error, a file that
  cannot be opened or written, a damaged file, a lock held too long): a
  :class:`~jobkit.errors.StoreError` (:class:`~jobkit.errors.StoreFullError` for a full
  disk). Nothing of the failed call was written; the same call may work later, so a
  worker backs off and tries again.
- the database refused this one row (a constraint, a value too big for SQLite): a
  :class:`~jobkit.errors.ValidationError`. Trying again changes nothing, so a worker
  fails that job alone.
"""

from __future__ import annotations

import apsw

from jobkit.errors import JobkitError, StoreError, StoreFullError, ValidationError
from jobkit.stores.refusals import too_deep

_ENVIRONMENT: tuple[tuple[type[apsw.Error], str], ...] = (
    (apsw.FullError, "the disk is full (or the database reached its size limit)"),
    (apsw.IOError, "the disk failed to read or write the file (an I/O error)"),
    (
        apsw.CantOpenError,
        "the file, or its -wal or -shm file beside it, cannot be opened (is the directory there, "
        "and may this user write in it?)",
    ),
    (
        apsw.ReadOnlyError,
        "the database is read-only here (file permissions, a read-only mount, or -wal/-shm files "
        "that belong to another user)",
    ),
    (apsw.PermissionsError, "the operating system denied access to the file"),
    (apsw.CorruptError, "the database file is damaged; restore it from a backup"),
    (apsw.NotADBError, "the file is not (or no longer) a SQLite database"),
    (apsw.NoMemError, "SQLite ran out of memory"),
    (apsw.LockedError, "a table is locked by another connection in this process"),
    (apsw.BusyError, "the database stayed locked by another writer"),
    (apsw.ProtocolError, "the file's locking failed (is it on a network file system?)"),
    (apsw.InterruptError, "the operation was interrupted"),
    (apsw.SchemaChangeError, "the database's tables changed under this connection"),
    (apsw.ConnectionClosedError, "the connection is closed"),
)

ROW_REFUSALS = (apsw.ConstraintError, apsw.TooBigError, apsw.MismatchError, apsw.RangeError)  # one row's fault


TOO_DEEP = ("nested too deep", "levels of trigger recursion")  # SQLite's words past its 1,000 nested triggers


def store_error(path: str, exc: apsw.Error, *, writing: bool) -> JobkitError:
    """The jobkit error that says what *exc* (met while *writing*, or reading) means for the file at *path*."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, ROW_REFUSALS):
        return ValidationError(f"{path}: the database refused the row ({detail}); nothing was written", value=detail)
    if isinstance(exc, apsw.SQLError) and any(words in detail for words in TOO_DEEP):
        return too_deep(path, detail, "SQLite (about 500)")
    what = next((text for kind, text in _ENVIRONMENT if isinstance(exc, kind)), None)
    if what is None:
        what = f"SQLite failed ({type(exc).__name__})"
    outcome = "; nothing was written" if writing else ""
    advice = "; free some space and try again" if isinstance(exc, apsw.FullError) else ""
    message = f"{path}: {what}: {detail}{outcome}{advice}"
    if isinstance(exc, apsw.FullError):
        return StoreFullError(message, path=path)
    return StoreError(message, path=path)
