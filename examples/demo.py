"""`make run`: enqueue example jobs into jobs.sqlite, drain them with a worker, show progress.

The worker is a real separate process, `python -m jobkit.worker jobs.sqlite --burst`,
exactly as you would run it; this script only enqueues, watches the file and reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jobkit
from examples.tasks import Thumbnail, thumbnail

DATABASE = Path("jobs.sqlite")
JOBS = 36
BAR = 30


def bar(fraction: float, width: int = BAR) -> str:
    filled = round(fraction * width)
    return "#" * filled + "." * (width - filled)


def main() -> int:
    for leftover in (DATABASE, Path(f"{DATABASE}-wal"), Path(f"{DATABASE}-shm")):
        leftover.unlink(missing_ok=True)
    with jobkit.SqliteStore(DATABASE) as store:
        ids = thumbnail.later_many(
            [Thumbnail(image=f"photo-{n:02d}.jpg", width=64 * (1 + n % 3)) for n in range(JOBS)], store
        )
        print(f"enqueued {len(ids)} jobs into {DATABASE}")
        print(f"starting: {sys.executable} -m jobkit.worker {DATABASE} --burst --concurrency 6 --quiet\n")
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobkit.worker", str(DATABASE), "--burst", "--concurrency", "6", "--quiet"],
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        started, shown = time.monotonic(), 0
        while worker.poll() is None:
            shown = show(store, ids, time.monotonic() - started, shown)
            time.sleep(0.25)  # a display refresh, not a wait for a condition
        show(store, ids, time.monotonic() - started, shown)
        print()
        for job_id in ids[:5]:
            record = store.get(job_id)
            assert record is not None
            print(f"  {job_id}  {record.status.value:<9}  {record.result}")
        counts = store.counts()
        print(
            f"  ... and {len(ids) - 5} more: {counts[jobkit.JobStatus.COMPLETED]} completed, "
            f"{counts[jobkit.JobStatus.FAILED]} failed, in {time.monotonic() - started:.1f}s"
        )
    return worker.returncode


def show(store: jobkit.Store, ids: list[str], elapsed: float, shown: int) -> int:
    """Draw the progress lines (in place on a terminal); return how many were drawn."""
    records = [r for r in (store.get(i) for i in ids) if r is not None]
    running = [r for r in records if r.status is jobkit.JobStatus.RUNNING]
    done = sum(r.status.finished for r in records)
    total = sum(100 if r.status.finished else r.progress for r in records) / (100 * len(records))
    lines = [f"[{bar(total)}] {done:>2}/{len(records)} done, {len(running)} running  ({elapsed:4.1f}s)"]
    lines += [
        f"    {r.id[-12:]} [{bar(r.progress / 100, 20)}] {r.progress:>3}% {r.progress_message or ''}" for r in running
    ]
    if sys.stdout.isatty() and shown:
        sys.stdout.write(f"\x1b[{shown}F\x1b[J")  # back to the first line drawn last time, clear below
    elif not sys.stdout.isatty():
        lines = lines[:1]  # a log, not a screen: one line a refresh
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return len(lines)


if __name__ == "__main__":
    sys.exit(main())
