"""Real worker processes on a real SQLite file, and bounded waits on what they do.

Nothing here sleeps to wait for something: :func:`wait_until` polls a condition (at
``tests.support.POLL``) until a deadline and fails with a description of the scene when it passes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import apsw

import jobkit
from jobkit.model import JobRecord, JobStatus
from tests import support
from tests.chaos import chaos_jobs
from tests.chaos.chaos_jobs import Trace

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]  # the checkout: where `tests.chaos.chaos_jobs` imports
JOBS_MODULE = chaos_jobs.__name__
STARTED = re.compile(r"^\S+ \S+ INFO +worker \S+ started: ", re.MULTILINE)
# What must never reach a worker's log: a busy database escaping, or a crash.
TROUBLE = re.compile(r"database is locked|SQLITE_BUSY|BusyError|stayed locked|Traceback", re.IGNORECASE)


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll *predicate* until it returns something true and return that; fail after *timeout* seconds."""
    return support.wait_until(predicate, what, timeout, describe=describe)


def children_of(pid: int) -> set[int]:
    """The live child processes of *pid*, from /proc."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def process_state(pid: int) -> str:
    """The one-letter state of process *pid* (R, S, T for stopped, Z...), or "" when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def write_lock_free(db: Path) -> bool:
    """Whether the write lock of *db* can be taken right now (taken and let go at once)."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except apsw.BusyError:
        return False
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time that process *pid* has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Proc:
    """One process started by a test, its output captured in files (a pipe could fill and block it)."""

    def __init__(self, argv: Sequence[str], *, name: str, folder: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = folder / f"{name}.out"
        self.stderr_path = folder / f"{name}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid = self.popen.pid
        self.started = time.monotonic()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        """The exit code (negative: killed by that signal); fail if it is still running after *timeout*."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} (pid {self.pid}) still running {timeout:g}s later\n{self.tail()}"
            ) from None

    def freeze(self, db: Path, timeout: float = 10) -> None:
        """SIGSTOP this process at a moment it holds no write lock on *db*.

        A process frozen inside a write transaction keeps SQLite's one write lock, and
        every other writer waits for it (no store can help that); so when the stop lands
        inside one, let the process go on and try again.
        """

        def stopped_outside_a_write() -> bool:
            self.signal(signal.SIGSTOP)
            wait_until(lambda: process_state(self.pid) == "T", 5, f"{self.name} to stop")
            if write_lock_free(db):
                return True
            self.signal(signal.SIGCONT)
            wait_until(lambda: process_state(self.pid) != "T", 5, f"{self.name} to go on")
            return False

        wait_until(stopped_outside_a_write, timeout, f"{self.name} to stop outside a write transaction")

    def kill_tree(self) -> None:
        """SIGKILL this process and its children (a supervisor's workers), by pid."""
        if not self.alive():
            return
        for child in children_of(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.popen.kill()
        self.popen.wait(10)

    def workers_started(self) -> int:
        """How many worker loops this process (or, for a supervisor, its children) have started."""
        return len(STARTED.findall(self.stderr()))

    def tail(self, lines: int = 15) -> str:
        text = "\n".join(self.stderr().splitlines()[-lines:])
        state = "running" if self.alive() else f"exit {self.popen.returncode}"
        return f"--- {self.name} (pid {self.pid}, {state}) stderr:\n{text}"


class Harness:
    """A database, a side-effect log and the processes of one test, all under *folder*."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db = folder / "jobs.sqlite"
        self.log = folder / "side-effects.log"
        self.store = jobkit.SqliteStore(self.db)
        self.procs: list[Proc] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_")}
        self.env[chaos_jobs.LOG_ENV] = str(self.log)
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"

    # -- processes ----------------------------------------------------------------------
    def spawn(self, argv: Sequence[str], name: str) -> Proc:
        proc = Proc(argv, name=f"{len(self.procs):02d}-{name}", folder=self.folder, env=self.env)
        self.procs.append(proc)
        return proc

    def worker(self, *options: str, jobs: bool = True, name: str = "worker") -> Proc:
        """``python -m jobkit.worker DB --jobs tests.chaos.chaos_jobs OPTIONS`` (without --jobs: on demand)."""
        argv = [sys.executable, "-m", "jobkit.worker", str(self.db)]
        if jobs:
            argv += ["--jobs", JOBS_MODULE]
        return self.spawn([*argv, *options], name)

    def python(self, code: str, *args: str, name: str) -> Proc:
        return self.spawn([sys.executable, "-c", code, *args], name)

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``python -m jobkit.worker ARGS`` to its end (bounded), capturing its output."""
        return run_worker_command(args, env=self.env, timeout=timeout)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill_tree()
        self.store.close()

    # -- what happened --------------------------------------------------------------------
    def records(self) -> dict[str, JobRecord]:
        return {r.id: r for r in self.store.list_jobs(limit=1_000_000)}

    def traces(self) -> list[Trace]:
        return chaos_jobs.read_traces(self.log)

    def started(self, job_id: str, pid: int | None = None) -> list[Trace]:
        return [t for t in self.traces() if t.event == "start" and t.job_id == job_id and pid in (None, t.pid)]

    def all_done(self, ids: Iterable[str], status: JobStatus = JobStatus.COMPLETED) -> bool:
        records = self.records()
        return all(records[i].status is status for i in ids)

    def describe(self) -> str:
        """The scene, for a failure message: counts by status and the tail of every log."""
        counts = {s.value: n for s, n in self.store.counts().items() if n}
        return "\n".join([f"jobs by status: {counts}", *(p.tail() for p in self.procs)])

    def wait(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        return wait_until(predicate, timeout, what, describe=self.describe)

    def assert_clean(self, procs: Iterable[Proc] | None = None) -> None:
        """No worker log shows a busy database or a traceback."""
        for proc in self.procs if procs is None else procs:
            found = TROUBLE.findall(proc.stderr())
            assert not found, f"{proc.name} logged {Counter(found)}\n{proc.tail(40)}"


def run_worker_command(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``python -m jobkit.worker ARGS`` from the checkout, to its end (killed after *timeout*)."""
    return subprocess.run(
        [sys.executable, "-m", "jobkit.worker", *args],
        cwd=ROOT,
        env=env if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def result(record: JobRecord) -> dict[str, Any]:
    """The decoded result of a nap job: who ran the attempt that was recorded."""
    assert record.result is not None, f"job {record.id} has no result: {record}"
    value: dict[str, Any] = json.loads(record.result)
    return value


def stop_all(procs: Iterable[Proc], timeout: float = 15) -> None:
    """SIGTERM every process, then expect each to exit 0 within *timeout*."""
    procs = list(procs)
    for proc in procs:
        proc.signal(signal.SIGTERM)
    for proc in procs:
        code = proc.wait_exit(timeout)
        assert code == 0, f"{proc.name} exited with {code} after SIGTERM\n{proc.tail()}"
