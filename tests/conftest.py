"""Shared fixtures: one ``store`` fixture runs each contract test on every store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import jobkit
from jobkit.store import Store

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TIMEOUT = 10.0  # the longest any single wait in a test may take


def poll(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Whether *condition* became true within *timeout* seconds, checked every few ms."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)  # a polling interval, not a wait for something to happen
    return True


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Fail the test unless *condition* becomes true within *timeout* seconds."""
    if not poll(condition, timeout):
        pytest.fail(f"timed out after {timeout}s waiting for {what}")


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each test that takes ``store`` runs once on MemoryStore and once on SqliteStore."""
    made: Store = jobkit.MemoryStore() if request.param == "memory" else jobkit.SqliteStore(tmp_path / "jobs.sqlite")
    with made:
        yield made
