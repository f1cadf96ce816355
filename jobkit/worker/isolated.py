"""Sync handlers in child processes (``WorkerOptions(isolation="process")``, ``--isolation process``).

A handler that holds the GIL (a long regex, a C call that never lets go) freezes every
thread of its process: the worker's loop stops, heartbeats stop, and after the lock
timeout another worker runs the job too. Run in a child process, such a handler
freezes only the child. The worker keeps the lease (its loop goes on beating), and
the handler's thread in the worker only waits on the child's pipe, so it can:

- enforce the spec's ``timeout``: a child still running at the deadline is killed and
  the attempt fails with the same "timed out" error a cooperative handler gets;
- cancel: a cancellation (or a lost lease, or shutdown) sets ``ctx.cancelled`` in the
  child; a child that has not stopped :data:`CANCEL_GRACE` seconds later is killed;
- survive the child's death (SIGKILL, a segfault in a C extension): the attempt fails
  with an error that names the signal or exit code, and the next job gets a new child.

A child is a fresh interpreter (``subprocess`` with ``sys.executable``: nothing of the
worker, no SQLite connection, lock or thread, is carried across ``fork()``, and unlike
multiprocessing's ``spawn`` it never re-runs the worker's ``__main__``), kept for the
next job, at most one per handler thread. It gets the worker's ``sys.path``, imports
the job's module itself and finds the spec by name. It ignores SIGINT and SIGTERM (the
worker decides when a job ends, as it does for its own threads) and dies with the
worker: Linux kills it when the worker goes, and elsewhere an idle child notices.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import logging
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import attrs

import jobkit
from jobkit.context import Context
from jobkit.model import Failed, Outcome, Stopped, Succeeded
from jobkit.spec import JobSpec, Registry
from jobkit.stages import attempt, stored_params, timed_out, unreadable
from jobkit.worker import logs

if TYPE_CHECKING:
    from jobkit.lease import Held

logger = logging.getLogger("jobkit.worker")

CANCEL_GRACE = 2.0  # seconds a child has to stop by itself once asked, before it is killed
LOOK = 0.05  # seconds between looks at the job's cancel flag while its child runs
PARENT_LOOK = 1.0  # seconds between an idle child's looks at whether its worker is still there
PR_SET_PDEATHSIG = 1
# The child's command: where jobkit itself imports from, then serve() on the pipes in argv.
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from jobkit.worker.isolated import main; main(sys.argv[2:])"


@attrs.frozen
class Task:
    """What a child needs to run one attempt: plain values, so that any pickle carries them."""

    job_id: str
    job_name: str
    attempt: int
    params: str
    timeout: float | None
    module: str  # where the spec's function lives: the child imports it to find the spec
    qualname: str


def task_of(held: Held, spec: JobSpec[Any, Any]) -> Task:
    job = held.job
    fn = spec.fn
    return Task(
        job_id=job.id,
        job_name=job.job_name,
        attempt=job.attempt_count,
        params=job.params,
        timeout=spec.timeout,
        module=getattr(fn, "__module__", None) or "",
        qualname=getattr(fn, "__qualname__", None) or "",
    )


def died(code: int | None) -> Failed:
    """The outcome of an attempt whose child ended under it (exit *code*, negative: a signal)."""
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return Failed(f"HandlerDied: the process running the handler {how} before the job ended")


# -- the worker's side ----------------------------------------------------------------------
class Child:
    """One child process and the worker's ends of its two pipes (tasks and cancels in, results out)."""

    def __init__(self, level: int) -> None:
        tasks_read, tasks_write = os.pipe()
        results_read, results_write = os.pipe()
        root = os.path.dirname(os.path.dirname(os.path.abspath(jobkit.__file__)))
        argv = [root, str(tasks_read), str(results_write), str(os.getpid()), str(level)]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, *argv],
                stdin=subprocess.DEVNULL,
                pass_fds=(tasks_read, results_write),
            )
        except BaseException:
            os.close(tasks_write)
            os.close(results_read)
            raise
        finally:  # the child's ends: its own now
            os.close(tasks_read)
            os.close(results_write)
        self.tasks = Connection(tasks_write, readable=False)
        self.results = Connection(results_read, writable=False)
        self.tasks.send(list(sys.path))  # the first message: where the job modules import from

    def alive(self) -> bool:
        return self.process.poll() is None

    def ended(self) -> int | None:
        """The exit code once the child is gone (waited for a moment): negative for a signal."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(5)
        return None

    def kill(self) -> None:
        """End the child now (SIGKILL) and reap it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.ended()
        self.tasks.close()
        self.results.close()

    def close(self) -> None:
        """Ask an idle child to exit; kill it if it does not at once."""
        with contextlib.suppress(OSError):
            self.tasks.send(None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1)
        self.kill()


class Children:
    """The child processes one worker runs sync handlers in: one per handler at work, kept between jobs."""

    def __init__(self) -> None:
        self._idle: list[Child] = []
        self._busy: set[Child] = set()
        self._guard = threading.Lock()
        self._closed = False

    def attempt(self, held: Held, spec: JobSpec[Any, Any], ctx: Context) -> tuple[Outcome, BaseException | None]:
        """Run *held*'s handler in a child, from a handler thread of the worker; never raises."""
        try:
            child = self._take()
        except Exception as exc:  # no process could start (out of memory, out of processes)
            logger.error("job %s: could not start a handler process: %s", held.job.id, exc)
            return Failed(f"HandlerDied: could not start a handler process: {type(exc).__name__}: {exc}"), None
        try:
            outcome, reusable = drive(child, held, spec, ctx)
        except Exception as exc:  # the pipe broke in a way drive() did not foresee: this child is done
            logger.exception("job %s: lost touch with its handler process", held.job.id)
            outcome, reusable = Failed(f"HandlerDied: lost touch with the handler's process: {exc}"), False
        held.took = time.monotonic() - (held.started or time.monotonic())
        self._give(child, reusable)
        return outcome, None

    def close(self) -> None:
        """End every child: idle ones are asked to exit, busy ones are killed (their jobs were given back)."""
        with self._guard:
            self._closed = True
            idle, busy = self._idle, list(self._busy)
            self._idle, self._busy = [], set()
        for child in idle:
            child.close()
        for child in busy:
            child.kill()

    def _take(self) -> Child:
        with self._guard:
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    self._busy.add(child)
                    return child
                child.kill()  # died while idle (killed from outside): start another
        child = Child(logging.getLogger().getEffectiveLevel())
        with self._guard:
            self._busy.add(child)
        return child

    def _give(self, child: Child, reusable: bool) -> None:
        with self._guard:
            self._busy.discard(child)
            keep = reusable and not self._closed
            if keep:
                self._idle.append(child)
        if not keep:
            child.kill()


def drive(child: Child, held: Held, spec: JobSpec[Any, Any], ctx: Context) -> tuple[Outcome, bool]:
    """Send one attempt to *child* and wait for its outcome; whether the child can take another job.

    Progress from the child goes to *ctx* (the worker's, which the lease keeper writes).
    The spec's timeout and the job's cancel flag are enforced here, by killing the child.
    """
    job_id = held.job.id
    try:
        child.tasks.send(task_of(held, spec))
    except OSError:  # it is gone already
        return died(child.ended()), False
    deadline = time.monotonic() + spec.timeout if spec.timeout is not None else None
    asked: float | None = None
    while True:
        wait = LOOK if deadline is None else max(0.0, min(LOOK, deadline - time.monotonic()))
        if multiprocessing.connection.wait([child.results], wait):
            try:
                message = child.results.recv()
            except (EOFError, OSError):  # its end closed: the child is gone
                return died(child.ended()), False
            if message[0] == "progress":
                _forward(ctx, message[1], message[2])
                continue
            return message[1], True
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            logger.error("job %s: still running at its timeout of %gs; its process is killed", job_id, spec.timeout)
            return timed_out(spec), False
        if held.cancel.is_set():
            if asked is None:
                asked = now
                with contextlib.suppress(OSError):
                    child.tasks.send(("cancel", job_id))
            elif now - asked >= CANCEL_GRACE:
                logger.warning("job %s: still running %gs after it was asked to stop; killed", job_id, CANCEL_GRACE)
                return Stopped("cancelled (its process was killed)"), False


def _forward(ctx: Context, percent: int, message: str | None) -> None:
    try:
        ctx.progress(percent, message)
    except Exception:  # a report the worker cannot take must not end the attempt
        logger.exception("job %s: progress from its process was dropped", ctx.job_id)


# -- the child's side -----------------------------------------------------------------------
class _Asked:
    """``ctx.cancelled`` in a child: set when the worker sends a cancel for this job.

    While a job runs, the only messages on the tasks pipe are cancels (the next task
    comes after this one's outcome), so a look is a poll of the pipe, made when the
    handler asks.
    """

    def __init__(self, tasks: Connection, job_id: str) -> None:
        self._tasks = tasks
        self._job_id = job_id
        self._on = False

    def is_set(self) -> bool:
        while not self._on and self._tasks.poll(0):
            message = self._tasks.recv()
            self._on = message == ("cancel", self._job_id)
        return self._on

    def set(self) -> None:
        self._on = True


def main(argv: list[str]) -> None:
    """A child's life: ``TASKS_FD RESULTS_FD PARENT_PID LOG_LEVEL``; run the tasks that come, one at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tasks_fd, results_fd, parent, level = (int(arg) for arg in argv)
    _die_with(parent)
    # Unbatched: a child is killed when its job overruns, and its last lines must be out by then.
    logging.basicConfig(level=level, format=logs.FORMAT, stream=sys.stderr)
    tasks, results = Connection(tasks_fd, writable=False), Connection(results_fd, readable=False)
    specs: dict[tuple[str, str, str], JobSpec[Any, Any]] = {}
    while True:
        while not tasks.poll(PARENT_LOOK):
            if os.getppid() != parent:  # orphaned: where Linux could not be asked to end it
                return
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if isinstance(task, list):  # the worker's sys.path
            sys.path[:] = task
        elif isinstance(task, Task):  # anything else is a cancel that came too late: dropped
            try:
                results.send(("done", run_task(task, specs, tasks, results)))
            except (OSError, ValueError):
                return


def run_task(
    task: Task, specs: dict[tuple[str, str, str], JobSpec[Any, Any]], tasks: Connection, results: Connection
) -> Outcome:
    """One attempt in this child: find the spec, decode the params, run the handler; never raises."""
    key = (task.module, task.qualname, task.job_name)
    try:
        spec = specs.get(key) or find_spec(*key)
    except BaseException as exc:  # an import that fails in any way fails the attempt, not the child
        return Failed(f"UnknownJobError: the handler's process could not find {task.job_name!r}: {exc}")
    specs[key] = spec

    def report(percent: int, message: str | None) -> None:
        results.send(("progress", percent, message))

    ctx = Context(
        job_id=task.job_id,
        job_name=task.job_name,
        attempt=task.attempt,
        sink=report,
        cancel=_Asked(tasks, task.job_id),
        timeout=task.timeout,
    )
    try:
        typed = stored_params(spec, _Params(task.params))  # type: ignore[arg-type]
    except Exception as exc:
        return unreadable(exc)
    outcome, _ = attempt(spec, typed, ctx)  # a SystemExit from the handler ends the attempt, not the child
    if isinstance(outcome, Succeeded):  # the typed value may not pickle; the worker records only the JSON
        return Succeeded(None, outcome.encoded)
    return outcome


@attrs.frozen
class _Params:
    """Stands for the record in :func:`stored_params`, which reads only its params."""

    params: str


def find_spec(module: str, qualname: str, name: str) -> JobSpec[Any, Any]:
    """The spec called *name*, found from the module and qualname of its function."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if isinstance(target, JobSpec) and target.name == name:
        return target
    for value in vars(sys.modules[module]).values():  # the function kept its name: the spec is elsewhere in it
        if isinstance(value, JobSpec) and value.name == name:
            return value
        if isinstance(value, Registry):
            found = value.get(name)
            if found is not None:
                return found
    where = "a script run as __main__, which a handler process cannot import" if module == "__main__" else module
    raise LookupError(f"no job spec named {name!r} in {where}; define the job at the top level of a module")


def _die_with(parent: int) -> None:
    """Linux: SIGKILL this child when the worker's thread that started it ends (the worker dying, too)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it was gone before this child could ask
        os._exit(0)
