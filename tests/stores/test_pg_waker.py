"""PostgresWaker's ring, which needs no server: a waker made without ``connect`` only polls."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

import pytest

from jobkit.stores.postgres.waker import PostgresWaker
from tests.support import counted

QUIET = 0.05  # how long a wait that nothing should wake is given


@pytest.fixture
def waker() -> Iterator[PostgresWaker]:
    made = PostgresWaker(None, "jobkit_test", "a test")
    yield made
    made.close()


def test_rings_before_a_wait_takes_them_write_one_byte(waker: PostgresWaker, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = counted(monkeypatch, os, "write")
    for _ in range(50):
        waker.ring()
    assert len(writes) == 1
    assert waker.wait(QUIET, commits=False)
    waker.ring()  # the wait took the last one: this is a new ring
    assert len(writes) == 2
    assert waker.wait(QUIET, commits=False)


def test_a_byte_whose_ring_was_taken_does_not_wake_every_select_after_it(
    waker: PostgresWaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ringer sets the flag and is preempted; the wait takes the flag; then the byte lands.
    os.write(waker._write, b"\0")
    selects = counted(monkeypatch, select, "select")
    assert not waker.wait(QUIET, commits=False)  # no ring: the time runs out
    assert len(selects) <= 2  # the stale byte's, then one sleep to the deadline (it spun before)
