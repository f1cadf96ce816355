"""Stopping a worker: a running job given back, or let finish within the grace period.

Multi-process scenarios (signals, kill -9, several workers on one file) live in tests/chaos/.
Nothing here sleeps to wait: handlers and tests meet on Events, and conditions are polled
with a deadline.
"""

from __future__ import annotations

import logging
import threading

import pytest

import jobkit
from jobkit.store import Store
from jobkit.worker import Report
from tests.support import (
    COMPLETED,
    PENDING,
    TIMEOUT,
    Background,
    record,
    wait_until,
)


# -- stopping -------------------------------------------------------------------------------------------------
def test_stopping_with_no_grace_gives_a_running_job_back_without_spending_its_attempt(store: Store) -> None:
    registry = jobkit.Registry()
    started, gate, finished = threading.Event(), threading.Event(), threading.Event()

    @registry.job(name="t:long")
    def long(params: int, ctx: jobkit.Context) -> int:
        started.set()
        try:
            assert gate.wait(TIMEOUT)
            return params
        finally:
            finished.set()

    job_id = long.later(1, store)
    with Background(store, registry, concurrency=1, poll_interval=0.05, grace=0) as bg:
        assert started.wait(TIMEOUT)
        report = bg.stop()
    assert report == Report(claimed=1, released=1)
    job = record(store, job_id)
    assert (job.status, job.attempt_count, job.worker_id, job.worker_expires_at) == (PENDING, 0, None, None)

    gate.set()
    assert finished.wait(TIMEOUT)
    assert record(store, job_id) == job, "a handler that finished after its job was given back changed it"


def test_stopping_lets_a_running_job_finish_within_the_grace_period(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobkit.worker")
    registry = jobkit.Registry()
    started, gate = threading.Event(), threading.Event()

    @registry.job(name="t:long")
    def long(params: int, ctx: jobkit.Context) -> int:
        started.set()
        assert gate.wait(TIMEOUT)
        return params

    job_id = long.later(1, store)
    with Background(store, registry, concurrency=2, poll_interval=0.05, grace=TIMEOUT) as bg:
        assert started.wait(TIMEOUT)
        bg.stop_event.set()
        wait_until(lambda: any("stopping" in r.getMessage() for r in caplog.records), "the worker to stop claiming")
        too_late = long.later(2, store)
        gate.set()
        report = bg.returned()
    assert report == Report(claimed=1, completed=1)
    assert record(store, job_id).status is COMPLETED
    assert (record(store, too_late).status, record(store, too_late).attempt_count) == (PENDING, 0)
