"""``--processes N``: a supervisor that keeps N worker children running, and children that never outlive it.

The supervisor replaces any child that exits while it is not stopping, whatever the exit
code (a child stopped by a stray SIGTERM exits 0 with work still queued), after a delay
that doubles while children keep dying soon after they start, so that a child that
cannot start does not spin. SIGTERM/SIGINT are passed on once; the supervisor waits for
its children to finish their jobs and exits 0; a second signal kills them and exits.

A child must not outlive its supervisor, however the supervisor ends (SIGKILL, the OOM
killer): orphans would keep claiming with stale settings, and each restart would add
more. Each child therefore stops (a SIGTERM to itself: the worker's graceful stop) when
its parent goes: by Linux's ``prctl(PR_SET_PDEATHSIG)`` where it exists, else by a pipe
whose only write end the supervisor holds, which reads end-of-file in the child once the
supervisor is gone, on any POSIX system.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import attrs

logger = logging.getLogger("jobkit.worker")

SUPERVISED = "JOBKIT_SUPERVISED"  # "1" in a child: enforce sync handlers' timeouts
PARENT_PID = "JOBKIT_SUPERVISOR_PID"
PARENT_PIPE = "JOBKIT_SUPERVISOR_PIPE"  # the descriptor of the read end, inherited by each child
POLL = 0.1  # how often the supervisor looks at its children
RESTART_BASE = 0.5  # seconds before starting again a child that died soon after it started
RESTART_MAX = 30.0
STEADY = 30.0  # a child that ran this long was not crash-looping: its replacement starts at once
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def restart_delay(quick_deaths: int) -> float:
    """Seconds to wait before a new child, after *quick_deaths* children in a row died soon after starting."""
    if quick_deaths <= 0:
        return 0.0
    return min(RESTART_MAX, RESTART_BASE * float(2 ** min(quick_deaths - 1, 16)))


@attrs.define
class _Slot:
    """One of the N places a child runs in."""

    child: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    start_at: float = 0.0  # when to start the next child (time.monotonic())
    done: bool = False  # --burst: its child found nothing more to do


def _child_args(argv: Sequence[str]) -> list[str]:
    """*argv* without --processes (both its forms)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return out


def supervise(argv: Sequence[str], processes: int, *, burst: bool = False) -> int:
    """Run *processes* worker children until SIGTERM/SIGINT (or, *burst*, until each finds nothing due)."""
    read_end, write_end = os.pipe()  # both close-on-exec: a child inherits only the read end (pass_fds)
    command = [sys.executable, "-m", "jobkit.worker", *_child_args(argv)]
    env = {**os.environ, SUPERVISED: "1", PARENT_PID: str(os.getpid()), PARENT_PIPE: str(read_end)}
    stopping = threading.Event()
    received: list[int] = []
    slots = [_Slot() for _ in range(processes)]

    def spawn(slot: _Slot) -> None:
        # A session of its own: a Ctrl-C in the terminal reaches the supervisor only, which
        # passes it on once (twice would make a child exit at once, abandoning its jobs).
        # Spawned from the main thread, which lives as long as the process: PR_SET_PDEATHSIG
        # fires when the thread that started the child ends.
        try:
            child = subprocess.Popen(command, env=env, start_new_session=True, pass_fds=(read_end,))
        except OSError as exc:  # out of processes or memory: try again later
            slot.quick_deaths += 1
            slot.start_at = time.monotonic() + restart_delay(slot.quick_deaths)
            logger.error("could not start a worker (%s); trying again in %.1fs", exc, slot.start_at - time.monotonic())
            return
        slot.child, slot.started = child, time.monotonic()
        if received:  # a signal came while it was starting
            child.send_signal(received[0])

    def forward(signum: int, _frame: object) -> None:
        if stopping.is_set():
            for slot in slots:
                if slot.child is not None and slot.child.poll() is None:
                    slot.child.kill()
            os._exit(128 + signum)
        received.append(signum)
        stopping.set()
        for slot in slots:
            if slot.child is not None and slot.child.poll() is None:
                slot.child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        for slot in slots:
            spawn(slot)
        pids = [s.child.pid for s in slots if s.child is not None]
        logger.info("supervisor %d: started %d workers: %s", os.getpid(), len(pids), pids)
        while True:
            now = time.monotonic()
            for slot in slots:
                _tend(slot, now, stopping.is_set(), burst=burst, spawn=spawn)
            if stopping.is_set() and all(s.child is None or s.child.poll() is not None for s in slots):
                return _stopped(slots, received[0])
            if burst and all(s.done for s in slots):
                return 0
            stopping.wait(POLL)
    finally:
        os.close(write_end)
        os.close(read_end)


def _tend(slot: _Slot, now: float, stopping: bool, *, burst: bool, spawn: Callable[[_Slot], None]) -> None:
    """Notice that a slot's child exited and schedule its replacement; start one that is due."""
    child = slot.child
    if child is not None and not stopping and child.poll() is not None:
        code = child.returncode
        slot.child = None
        if burst and code == 0:
            slot.done = True
            return
        slot.quick_deaths = slot.quick_deaths + 1 if now - slot.started < STEADY else 0
        wait = restart_delay(slot.quick_deaths)
        slot.start_at = now + wait
        later = f" in {wait:.1f}s (children keep exiting soon after they start)" if wait else ""
        logger.warning("worker %d exited with %d; starting another%s", child.pid, code, later)
    if slot.child is None and not slot.done and not stopping and now >= slot.start_at:
        spawn(slot)


def _stopped(slots: Sequence[_Slot], signum: int) -> int:
    """The supervisor's exit code once every child has exited after *signum* was passed on."""
    # A child that the signal reached before it had set up its handler died of it; it had
    # claimed nothing yet, so that is a clean stop too.
    failed = [
        (s.child.pid, s.child.returncode)
        for s in slots
        if s.child is not None and s.child.returncode not in (0, -signum)
    ]
    if failed:
        logger.error("workers did not stop cleanly (pid, exit code): %s", failed)
    return 1 if failed else 0


# -- in a child -----------------------------------------------------------------------------------
def guard_child() -> None:
    """In a child of :func:`supervise`: stop (SIGTERM to this process) as soon as the supervisor is gone.

    Does nothing in a process that no supervisor started. The variables are taken out of
    the environment, so that processes this one starts do not watch a descriptor that
    is not theirs.
    """
    parent, pipe = os.environ.pop(PARENT_PID, None), os.environ.pop(PARENT_PIPE, None)
    if parent is None or not parent.isdigit():
        return
    # One means only: two SIGTERMs would be the worker's "second signal", which exits at once
    # without giving running jobs back. The kernel's signal where Linux offers it, else the pipe.
    armed = die_with_parent()
    if not armed and pipe is not None and pipe.isdigit() and _is_pipe(int(pipe)):
        watch_parent_pipe(int(pipe))
    if os.getppid() != int(parent):  # it died before this child could watch it; no handler is set up yet
        stop_self()


def die_with_parent() -> bool:
    """Ask Linux to send this process SIGTERM when its parent ends; False where that cannot be asked."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # here: a worker that is not a supervised child never needs it (3 ms of every start)
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def watch_parent_pipe(fd: int) -> None:
    """Stop this process when *fd*, the read end of a pipe only the parent writes to, reads end-of-file."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):  # the parent never writes; data would only be noise
                pass
        stop_self()

    threading.Thread(target=watch, name="jobkit-parent-watch", daemon=True).start()


def stop_self() -> None:
    """SIGTERM to this process: the worker's graceful stop once it runs, a plain exit before."""
    logger.warning("the supervisor is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
