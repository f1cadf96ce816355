"""`make run`: enqueue example jobs into the demo's own database, drain them with a worker, show progress.

The worker is a real separate process, `python -m jobkit.worker DATABASE --burst`, exactly
as you would run it; this script only enqueues, watches the file and reports. The
database is examples/demo.sqlite unless you name another; an existing file is used only
if it holds nothing but the demo's jobs (each run adds its jobs), so the demo never
deletes or writes into a database of yours.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import jobkit
from examples.tasks import Thumbnail, thumbnail

ROOT = Path(__file__).resolve().parent.parent  # where `examples.tasks` imports from
DATABASE = Path("examples") / "demo.sqlite"
JOBS = 36
BAR = 30
REFRESH = 0.25  # seconds between frames of the display


def bar(fraction: float, width: int = BAR) -> str:
    filled = round(fraction * width)
    return "#" * filled + "." * (width - filled)


def open_demo_store(path: Path) -> jobkit.Store | str:
    """The demo's store at *path*, or why the demo will not use that file."""
    existed = path.exists()
    try:
        store = jobkit.open_store(path, create=not existed, upgrade=False)
    except jobkit.JobkitError as exc:
        return f"{exc} (the demo uses only a file of its own: name another)"
    names = set(store.summary(since=datetime.now(timezone.utc)).by_name) if existed else set()
    if names - {thumbnail.name}:
        store.close()
        others = ", ".join(sorted(names - {thumbnail.name}))
        return f"{path} holds jobs the demo did not make ({others}); the demo leaves it alone: name another file"
    return store


class Output:
    """The worker's stderr (its log and its summary line), read in a thread and printed between frames.

    Written straight to the terminal, those lines would land inside the display, which
    then erases them (and leaves a stale frame) when it redraws in place.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self._lines.append(line)

    def take(self) -> list[str]:
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def rest(self) -> list[str]:
        """Every line still to print, once the worker has exited and closed its end."""
        self._reader.join()
        return self.take()


class Display:
    """Progress lines, redrawn in place on a terminal; one line a refresh in a log."""

    def __init__(self, store: jobkit.Store, ids: list[str]) -> None:
        self.store, self.ids = store, ids
        self.tty = sys.stdout.isatty()
        self.shown = 0  # lines of the frame on screen now

    def draw(self, elapsed: float, above: Sequence[str] = ()) -> None:
        """Replace the frame on screen by a new one, with *above* printed before it (it stays)."""
        records = [r for r in (self.store.get(i) for i in self.ids) if r is not None]
        running = [r for r in records if r.status is jobkit.JobStatus.RUNNING]
        done = sum(r.status.finished for r in records)
        total = sum(100 if r.status.finished else r.progress for r in records) / (100 * max(len(records), 1))
        lines = [f"[{bar(total)}] {done:>2}/{len(records)} done, {len(running)} running  ({elapsed:4.1f}s)"]
        if self.tty:
            lines += [
                f"    {r.id[-12:]} [{bar(r.progress / 100, 20)}] {r.progress:>3}% {r.progress_message or ''}"
                for r in running
            ]
            if self.shown:
                sys.stdout.write(f"\x1b[{self.shown}F\x1b[J")  # up to the frame's first line, clear below
        sys.stdout.write("".join(above) + "\n".join(lines) + "\n")
        sys.stdout.flush()
        self.shown = len(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    parser.add_argument("database", nargs="?", type=Path, default=ROOT / DATABASE, help=f"default {DATABASE}")
    parser.add_argument("--count", type=int, default=JOBS, help=f"jobs to enqueue (default {JOBS})")
    args = parser.parse_args(argv)
    path: Path = args.database.resolve()
    opened = open_demo_store(path)
    if isinstance(opened, str):
        print(f"demo: {opened}", file=sys.stderr)
        return 1
    with opened as store:
        ids = thumbnail.later_many(
            [Thumbnail(image=f"photo-{n:02d}.jpg", width=64 * (1 + n % 3)) for n in range(args.count)], store
        )
        shown = os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
        command = ["-m", "jobkit.worker", shown, "--burst", "--concurrency", "6", "--quiet"]
        print(f"enqueued {len(ids)} jobs into {shown}")
        print(f"starting: python {' '.join(command)}\n")
        worker = subprocess.Popen(
            [sys.executable, *command],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the demo alone, which passes it on
        )
        assert worker.stderr is not None
        # Ctrl-C goes to the worker as it would from a terminal: the first stops it claiming
        # (running jobs finish, the rest are given back), a second ends it at once. The demo
        # itself goes on drawing until the worker is gone, so no frame is left half drawn.
        previous = signal.signal(signal.SIGINT, lambda signum, frame: worker.send_signal(signum))
        output, display, started = Output(worker.stderr), Display(store, ids), time.monotonic()
        try:
            while worker.poll() is None:
                display.draw(time.monotonic() - started, output.take())
                time.sleep(REFRESH)  # a display refresh, not a wait for a condition
        finally:
            signal.signal(signal.SIGINT, previous)
        display.draw(time.monotonic() - started, output.rest())  # the worker's last lines: its summary
        print()
        report(store, ids, time.monotonic() - started)
    return worker.returncode


def report(store: jobkit.Store, ids: list[str], elapsed: float) -> None:
    """A few results, typed through the spec, and the tally of this run's jobs."""
    records = [r for r in (store.get(i) for i in ids) if r is not None]
    for record in records[:5]:
        result = thumbnail.result_of(record)
        print(f"  {record.id}  {record.status.value:<9}  {result.value if result.ok else result.error}")
    tally = {status: sum(r.status is status for r in records) for status in jobkit.JobStatus}
    print(
        f"  ... {len(records)} jobs: {tally[jobkit.JobStatus.COMPLETED]} completed, "
        f"{tally[jobkit.JobStatus.FAILED]} failed, in {elapsed:.1f}s"
    )


if __name__ == "__main__":
    sys.exit(main())
