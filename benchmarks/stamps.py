"""Start and end times of a peer's handler, sent over local UDP to the process that enqueued the job.

pgqueuer and procrastinate store no results, so their ``stamp`` handlers tell the
latency driver when they ran: one datagram ``"n start end"`` (wall-clock seconds, taken
at the handler's entry and just before it returns) to ``127.0.0.1:PORT``, the port named
by :data:`PORT_VARIABLE` in the worker's environment. Sending one costs a few
microseconds and touches no database.
"""

from __future__ import annotations

import os
import socket
import time

PORT_VARIABLE = "JOBKIT_BENCH_STAMP_PORT"
HOST = "127.0.0.1"


def free_port() -> int:
    """A local UDP port free now, for the worker's environment and the driver's socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


class Sender:
    """The handler's side: sends ``n start end`` to the port in the environment (nothing if unset)."""

    def __init__(self) -> None:
        port = os.environ.get(PORT_VARIABLE)
        self.address = None if port is None else (HOST, int(port))
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, n: int, start: float) -> None:
        if self.address is not None:
            self.socket.sendto(f"{n} {start!r} {time.time()!r}".encode(), self.address)


class Receiver:
    """The driver's side: a UDP socket on local *port*; :meth:`take` returns a job's times."""

    def __init__(self, port: int) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((HOST, port))
        self.port: int = self.socket.getsockname()[1]
        self.seen: dict[int, tuple[float, float]] = {}

    def take(self, n: int, timeout: float) -> tuple[float, float]:
        """(start, end) of job *n*'s handler, waiting up to *timeout* seconds for its datagram."""
        deadline = time.monotonic() + timeout
        while n not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no stamp from job {n} within {timeout:g}s")
            self.socket.settimeout(left)
            number, start, end = self.socket.recv(256).decode().split()
            self.seen[int(number)] = (float(start), float(end))
        return self.seen.pop(n)

    def close(self) -> None:
        self.socket.close()
