"""The worker command's log: one INFO line a job, written in batches, a warning at once, nothing out of order."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from jobkit.worker import logs
from tests.support import wait_until

JOBS = "jobkit.test-logs.run"  # stands for jobkit.run: no job of another test's threads logs here


class Stream(io.StringIO):
    """A stream that counts its writes (the syscalls a real stderr would make)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.guard = threading.Lock()

    def write(self, text: str) -> int:
        with self.guard:
            self.writes += 1
            return super().write(text)

    def text(self) -> str:
        with self.guard:
            return self.getvalue()


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, Stream, logs.BatchedHandler]]:
    stream = Stream()
    handler = logs.BatchedHandler(stream, batched=JOBS)
    handler.setFormatter(logs.FastFormatter())
    logger = logging.getLogger(JOBS)
    kept = logger.propagate, logger.level
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = kept
        handler.close()


def test_info_lines_are_written_together_soon_after_the_first(
    logged: tuple[logging.Logger, Stream, logs.BatchedHandler],
) -> None:
    logger, stream, _ = logged
    for n in range(50):
        logger.info("job %d: completed", n)
    wait_until(lambda: stream.text().count("\n") == 50, "the lines written", timeout=logs.DELAY * 20)
    assert stream.writes < 10, "not a write a line"
    messages = [line.split("INFO", 1)[1].strip() for line in stream.text().splitlines()]
    assert messages == [f"job {n}: completed" for n in range(50)]


def test_a_warning_is_written_at_once_after_the_lines_before_it(
    logged: tuple[logging.Logger, Stream, logs.BatchedHandler],
) -> None:
    logger, stream, _ = logged
    logger.info("job 1: completed")
    logger.warning("job 2: failed")
    assert [line.split(" ", 2)[2] for line in stream.text().splitlines()] == [
        "INFO    job 1: completed",
        "WARNING job 2: failed",
    ], "in order, and out before warning() returned"


def test_a_line_of_the_worker_itself_is_written_at_once(
    logged: tuple[logging.Logger, Stream, logs.BatchedHandler],
) -> None:
    logger, stream, handler = logged
    logger.info("job 1: completed")
    worker = logging.getLogger("jobkit.worker.test-logs")
    worker.propagate, worker.level = False, logging.INFO
    worker.addHandler(handler)
    try:
        worker.info("worker w1 started")  # a worker that dies next (os._exit in a job) has said it started
    finally:
        worker.removeHandler(handler)
    assert [line.split("INFO", 1)[1].strip() for line in stream.text().splitlines()] == [
        "job 1: completed",
        "worker w1 started",
    ]


def test_closing_writes_what_waits(logged: tuple[logging.Logger, Stream, logs.BatchedHandler]) -> None:
    logger, stream, handler = logged
    logger.info("the last line")
    handler.close()
    assert stream.text().endswith("the last line\n")


def test_the_fast_formatter_writes_what_the_plain_one_does() -> None:
    record = logging.LogRecord("jobkit", logging.INFO, __file__, 1, "job %s: completed", ("x",), None)
    record.created, record.msecs = 1_780_000_000.25, 250.0
    again = logging.LogRecord("jobkit", logging.INFO, __file__, 1, "job %s: completed", ("y",), None)
    again.created, again.msecs = 1_780_000_000.75, 750.0
    warning = logging.LogRecord("jobkit.run", logging.WARNING, __file__, 1, "job %s %s: %d%%", ("z", "n", 5), None)
    try:
        raise ValueError("bad")
    except ValueError:
        failed = logging.LogRecord("jobkit", logging.ERROR, __file__, 1, "job %s failed", ("w",), sys.exc_info())
    records = (record, again, warning, failed)
    fast, plain = logs.FastFormatter(), logging.Formatter(logs.FORMAT)
    assert [fast.format(r) for r in records] == [plain.format(r) for r in records]
    assert "ValueError: bad" in fast.format(failed)


def test_no_thread_is_started_until_a_job_line_waits() -> None:
    """A supervisor logs no job lines: it must keep one thread (see BatchedHandler.__init__)."""
    stream = Stream()
    before = {t.name for t in threading.enumerate()}
    handler = logs.BatchedHandler(stream, batched=JOBS)
    handler.setFormatter(logs.FastFormatter())
    try:
        handler.handle(logging.LogRecord("jobkit.worker", logging.INFO, __file__, 1, "supervisor started", (), None))
        assert "jobkit-log" not in {t.name for t in threading.enumerate()} - before
        handler.handle(logging.LogRecord(JOBS, logging.INFO, __file__, 1, "job 1: completed", (), None))
        assert "jobkit-log" in {t.name for t in threading.enumerate()}
    finally:
        handler.close()
