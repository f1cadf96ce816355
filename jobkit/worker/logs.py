"""The worker command's log: one line a job at the default level, written to stderr in batches.

A worker draining short jobs logged two INFO lines a job, and each line cost about 30 us
(a LogRecord that looked up the caller's frame, the thread and the process, a strftime,
and a write and flush of its own): the default level halved the drain. Now:

- a job's start is logged at DEBUG; its end at INFO (completed, with its time), or as a
  warning (failed, retried, lost), with its id and name: the one line a user reads;
- the command's LogRecords skip what its format does not show (the caller's file and
  line, thread and process names): the logging HOWTO's "Optimization" switches;
- the time is formatted once a second, not once a line;
- the INFO lines of jobs (logger ``jobkit.run``) are written together, at most
  :data:`DELAY` seconds after the first of them, by a thread that sleeps while nothing
  waits; any other line (the worker starting or stopping, a warning, an error) is written
  at once, after the lines before it. A worker killed with SIGKILL, or by a handler's
  ``os._exit``, may lose the last :data:`DELAY` seconds of job lines; never its own.

This is the command's own set-up (``python -m jobkit.worker``): a program that runs the
worker as a library keeps its logging as it configured it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
DELAY = 0.2  # seconds an INFO line may wait to be written with the ones after it
MAX_WAITING = 1000  # lines held at most before they are written, whatever the time
JOB_LINES = "jobkit.run"  # the logger of the line each job gets: the only lines that wait


class FastFormatter(logging.Formatter):
    """:data:`FORMAT`'s times, each second's text made once (``2026-12-06 21:10:43,123``)."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._second = -1
        self._text = ""

    def format(self, record: logging.LogRecord) -> str:
        """:data:`FORMAT` by hand for a line with no exception or stack to show: the %-formatting of the
        record's whole ``__dict__`` and the look for ``asctime`` in the format were half a job line's cost."""
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        return f"{record.asctime} {record.levelname:<7} {record.message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._text},{int(record.msecs):03d}"


class BatchedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes jobs' INFO lines together, within :data:`DELAY`; any other line at once, after the lines before it."""

    def __init__(self, stream: TextIO, *, batched: str = JOB_LINES) -> None:
        super().__init__(stream)
        self._batched = batched  # the logger whose INFO lines wait
        self._waiting: list[str] = []
        self._wake = threading.Event()
        self._closing = threading.Event()
        # Started with the first job line: a supervisor, which logs none, keeps one thread. (Linux
        # sends a child's parent-death signal as each thread it is handed to dies: a second thread
        # in a SIGKILLed supervisor would send its children a second SIGTERM, "exit now".)
        self._writer: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)  # handle() holds self.lock around emit()
        if record.levelno >= logging.WARNING or record.name != self._batched or len(self._waiting) >= MAX_WAITING:
            self.flush()
        elif len(self._waiting) == 1:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_soon, name="jobkit-log", daemon=True)
                self._writer.start()
            self._wake.set()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._waiting:
                text, self._waiting = "".join(self._waiting), []
                try:
                    self.stream.write(text)
                except Exception:  # a closed or broken stderr: the lines are dropped, as logging drops them
                    return
            super().flush()

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        self.flush()
        super().close()

    def _write_soon(self) -> None:
        while True:
            self._wake.wait()  # asleep while nothing waits to be written
            if self._closing.is_set():
                return
            self._closing.wait(DELAY)  # let the lines of the next moments join the first
            self._wake.clear()
            self.flush()


def configure(level: int, stream: TextIO) -> None:
    """Log at *level* to *stream* as the worker command does; switch off what its LogRecords need not find."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no frame walk for the caller's file and line
    handler = BatchedHandler(stream)
    handler.setFormatter(FastFormatter())
    logging.basicConfig(level=level, handlers=[handler])
