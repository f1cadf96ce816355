"""The tasks huey runs in the benchmarks, on a SqliteHuey configured from the environment.

The consumer (``python -m huey.bin.huey_consumer benchmarks.huey_jobs.huey``) and every
enqueuing process import this module, so they must agree on the file and its settings:
both come from ``BENCH_HUEY_PATH`` and ``BENCH_HUEY_SYNC`` (see :mod:`benchmarks.huey_config`).

``BENCH_HUEY_SYNC`` is one of:

- ``default``: ``SqliteHuey(filename=...)`` exactly as documented, so SQLite's own
  default applies (``synchronous=FULL`` in WAL mode, unless the library was built otherwise);
- ``normal``: huey's ``fsync=`` offers only FULL (True) or OFF (False), so a storage
  subclass runs ``PRAGMA synchronous=NORMAL`` on each connection huey opens;
- ``off``: ``fsync=False`` (``synchronous=OFF``), used only to fill queues quickly before a drain.

``python -m benchmarks.huey_jobs`` prints the journal mode and synchronous setting of the
connection huey opens under the current environment.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from huey import SqliteHuey
from huey.storage import SqliteStorage

from benchmarks import huey_config
from benchmarks.huey_config import HueySync


class NormalSyncStorage(SqliteStorage):  # type: ignore[misc]
    """SqliteHuey's storage with ``PRAGMA synchronous=NORMAL`` on every connection it opens."""

    def _create_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


def make_huey(path: str, sync: HueySync) -> SqliteHuey:
    """A SqliteHuey on *path*, results stored (huey's default)."""
    if sync == "normal":
        return SqliteHuey("bench", filename=path, storage_class=NormalSyncStorage)
    if sync == "off":
        return SqliteHuey("bench", filename=path, fsync=False)
    return SqliteHuey("bench", filename=path)


huey = make_huey(*huey_config.from_environment())


@huey.task()  # type: ignore[untyped-decorator]
def noop(n: int) -> int:
    """Do nothing; the result is stored like any other."""
    return n


@huey.task()  # type: ignore[untyped-decorator]
def stamp(n: int) -> float:
    """Return the wall-clock time this task started at (for enqueue-to-start latency)."""
    return time.time()


def connection_settings() -> dict[str, Any]:
    """The journal mode and synchronous setting of the connection huey uses."""
    conn = huey.storage.conn
    return {
        "journal_mode": conn.execute("pragma journal_mode").fetchone()[0],
        "synchronous": conn.execute("pragma synchronous").fetchone()[0],
        "sqlite": sqlite3.sqlite_version,
    }


if __name__ == "__main__":
    print(json.dumps(connection_settings()))
