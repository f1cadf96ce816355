"""``--processes N``: a supervisor that runs N worker children and replaces one that dies."""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

logger = logging.getLogger("jobkit.worker")


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


def supervise(argv: Sequence[str], processes: int) -> int:
    """Run *processes* worker children; restart one that dies; pass SIGTERM/SIGINT on."""
    command = [sys.executable, "-m", "jobkit.worker", *_child_args(argv)]
    env = {**os.environ, "JOBKIT_SUPERVISED": "1"}
    stopping = threading.Event()
    received: list[int] = []
    children: list[subprocess.Popen[bytes]] = []

    def spawn() -> subprocess.Popen[bytes]:
        # A session of its own: a Ctrl-C in the terminal reaches the supervisor only, which
        # passes it on once (twice would make a child exit at once, abandoning its jobs).
        child = subprocess.Popen(command, env=env, start_new_session=True)
        if received:  # a signal came while it was starting
            child.send_signal(received[0])
        return child

    def forward(signum: int, _frame: object) -> None:
        if stopping.is_set():
            for child in children:
                child.kill()
            os._exit(128 + signum)
        received.append(signum)
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    children.extend(spawn() for _ in range(processes))
    logger.info("supervisor %d: started %d workers: %s", os.getpid(), processes, [c.pid for c in children])
    restarts: collections.deque[float] = collections.deque(maxlen=10)
    while True:
        alive = [c for c in children if c.poll() is None]
        if not alive and (stopping.is_set() or all(c.returncode == 0 for c in children)):
            failed = [c.pid for c in children if c.returncode != 0]
            if failed:
                logger.error("workers %s did not stop cleanly", failed)
            return 1 if failed else 0
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or code == 0 or stopping.is_set():
                continue
            restarts.append(time.monotonic())
            if len(restarts) == restarts.maxlen and restarts[-1] - restarts[0] < 10:
                logger.error("workers keep dying (%d restarts in 10s); waiting before the next", len(restarts))
                stopping.wait(5)
            if stopping.is_set():
                break
            logger.warning("worker %d exited with %d; starting another", child.pid, code)
            children[i] = spawn()
        stopping.wait(0.1)
