"""A real worker process whose wall clock is the machine's shifted by an offset the test can change.

``python -m tests.chaos.shifted DB OFFSET_FILE [LOCK_TIMEOUT]`` runs
:func:`jobkit.run_worker` on the chaos jobs until SIGTERM, with a clock that reads
OFFSET_FILE (seconds, as text) whenever the file changes: writing a new number there
steps this worker's clock, as NTP or a resumed VM steps a host's, without touching the
machine's. Only the wall clock moves; ``time.monotonic()`` stays honest, as it does when
a real clock steps.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from datetime import datetime, timedelta

import jobkit
from jobkit.model import utc_now
from jobkit.worker import run_worker
from tests.chaos import chaos_jobs

REAP_EVERY = 0.05  # reap far more often than the heartbeat, so a step meets a reap before a beat


class ShiftedClock:
    """``utc_now()`` plus the seconds written in *path* (read again whenever the file changes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._offset = timedelta(0)

    def __call__(self) -> datetime:
        with self._lock:
            try:
                stat = os.stat(self.path)
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._stamp:
                    with open(self.path, encoding="ascii") as f:
                        self._offset = timedelta(seconds=float(f.read().strip() or 0))
                    self._stamp = stamp
            except (OSError, ValueError):
                pass  # a file being rewritten: keep the offset read last
            return utc_now() + self._offset


def main(argv: list[str]) -> int:
    database, offset_file = argv[0], argv[1]
    lock_timeout = float(argv[2]) if len(argv) > 2 else 3.0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(message)s", stream=sys.stderr)
    with jobkit.SqliteStore(database, create=False) as store:
        report = run_worker(
            store,
            chaos_jobs.jobs,
            clock=ShiftedClock(offset_file),
            concurrency=1,
            lock_timeout=lock_timeout,
            poll_interval=0.1,
            reap_every=REAP_EVERY,
        )
    print(f"shifted worker: {report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
