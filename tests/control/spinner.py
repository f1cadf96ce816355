"""A handler that runs until it is cancelled, and the jobs made of it."""

from __future__ import annotations

import asyncio
import threading
import time

import jobkit
from tests.support import (
    TIMEOUT,
    poll,
)

CANCEL_SEEN_WITHIN = 2.5  # the worker looks for cancellations every second


class Spinner:
    """A handler that runs until ``ctx.cancelled``, then stops the way it was told to."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.saw_cancel = threading.Event()
        self.saw_cancel_at = 0.0
        self.runs = 0

    def spin(self, ctx: jobkit.Context) -> bool:
        """Whether cancellation was seen before the deadline."""
        self.runs += 1
        self.started.set()
        if not poll(lambda: ctx.cancelled):
            return False
        self.saw_cancel_at = time.monotonic()
        self.saw_cancel.set()
        return True

    def stop(self, how: str) -> str:
        if how == "raises Cancelled":
            raise jobkit.Cancelled("stopping as asked")
        if how == "raises another error":
            raise RuntimeError("stopped with an unrelated error")
        return "returned normally"


def spinner_jobs(spinner: Spinner) -> tuple[jobkit.Registry, jobkit.JobSpec[str, str], jobkit.JobSpec[str, str]]:
    jobs = jobkit.Registry()

    @jobs.job(name="t:spin", max_attempts=3, retry_backoff=0)
    def spin(how: str, ctx: jobkit.Context) -> str:
        if not spinner.spin(ctx):
            return "never cancelled"
        return spinner.stop(how)

    @jobs.job(name="t:spin_async", max_attempts=3, retry_backoff=0)
    async def spin_async(how: str, ctx: jobkit.Context) -> str:
        spinner.runs += 1
        spinner.started.set()
        deadline = time.monotonic() + TIMEOUT
        while not ctx.cancelled:
            if time.monotonic() > deadline:
                return "never cancelled"
            await asyncio.sleep(0.002)  # a polling interval on the event loop
        spinner.saw_cancel_at = time.monotonic()
        spinner.saw_cancel.set()
        return spinner.stop(how)

    return jobs, spin, spin_async
