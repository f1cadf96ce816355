"""GroupCommit: concurrent calls share a write; each caller gets its own outcome; no call is written twice.

The writes are gated with events, so which calls wait together is known, not hoped for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from jobkit.errors import StoreError
from jobkit.stores.grouped import GroupCommit
from tests.support import TIMEOUT, wait_until


class Disk:
    """A write_all that records each batch; the first write waits for *gate* (to let others queue behind it)."""

    def __init__(self, outcome: Callable[[str], Any] = str.upper) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.outcome = outcome
        self.fail_with: BaseException | None = None

    def write_all(self, arguments: Sequence[str]) -> list[Any]:
        self.batches.append(list(arguments))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.gate.wait(TIMEOUT)
        if self.fail_with is not None and len(self.batches) == 2:
            raise self.fail_with
        return [self.outcome(a) for a in arguments]


def call_in_threads(
    group: GroupCommit[str, Any], arguments: Sequence[str]
) -> tuple[list[threading.Thread], dict[str, Any]]:
    results: dict[str, Any] = {}

    def call(argument: str) -> None:
        try:
            results[argument] = group(argument)
        except BaseException as exc:
            results[argument] = exc

    threads = [threading.Thread(target=call, args=(a,)) for a in arguments]
    for thread in threads:
        thread.start()
    return threads, results


def queue_behind_a_write(disk: Disk, group: GroupCommit[str, Any], others: Sequence[str]) -> dict[str, Any]:
    """ "first" writes alone and is held there; *others* arrive meanwhile; then the write is let through."""
    first, results = call_in_threads(group, ["first"])
    assert disk.entered.wait(TIMEOUT)
    threads, more = call_in_threads(group, others)
    wait_until(lambda: len(group._waiting) == len(others), "the others waiting behind the write")
    disk.gate.set()
    for thread in [*first, *threads]:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    return {**results, **more}


def test_a_caller_alone_writes_at_once_alone() -> None:
    disk = Disk()
    disk.gate.set()
    group = GroupCommit(disk.write_all)
    assert group("a") == "A"
    assert group("b") == "B"
    assert disk.batches == [["a"], ["b"]]


def test_callers_that_arrive_during_a_write_share_the_next_one_and_each_gets_its_own_result() -> None:
    disk = Disk()
    group = GroupCommit(disk.write_all)
    others = [f"c{n}" for n in range(7)]
    results = queue_behind_a_write(disk, group, others)
    assert results == {a: a.upper() for a in ["first", *others]}
    assert disk.batches[0] == ["first"] and sorted(disk.batches[1]) == others and len(disk.batches) == 2
    assert (group.batches, group.calls) == (2, 8)


def test_a_call_its_write_refuses_fails_alone() -> None:
    def outcome(argument: str) -> Any:
        return ValueError(f"refused {argument}") if argument == "bad" else argument.upper()

    disk = Disk(outcome)
    group = GroupCommit(disk.write_all)
    results = queue_behind_a_write(disk, group, ["x", "bad", "y"])
    assert (results["x"], results["y"], results["first"]) == ("X", "Y", "FIRST")
    assert isinstance(results["bad"], ValueError) and str(results["bad"]) == "refused bad"


def test_a_write_that_fails_as_a_whole_fails_each_of_its_calls_with_an_error_of_its_own() -> None:
    disk = Disk()
    disk.fail_with = StoreError("disk full")
    group = GroupCommit(disk.write_all)
    results = queue_behind_a_write(disk, group, ["x", "y"])
    assert results["first"] == "FIRST"
    assert all(isinstance(results[a], StoreError) and str(results[a]) == "disk full" for a in ("x", "y"))
    assert results["x"] is not results["y"], "one exception object is not raised in two threads"


def test_a_writer_interrupted_raises_that_and_its_batch_learns_nothing_was_written() -> None:
    disk = Disk()
    disk.fail_with = KeyboardInterrupt()
    group = GroupCommit(disk.write_all)
    results = queue_behind_a_write(disk, group, ["x", "y"])
    interrupted = [a for a in ("x", "y") if isinstance(results[a], KeyboardInterrupt)]
    told = [a for a in ("x", "y") if isinstance(results[a], StoreError)]
    assert len(interrupted) == 1 and len(told) == 1, results
    assert "interrupted; nothing was written" in str(results[told[0]])
    disk.fail_with = None
    assert group("after") == "AFTER", "the group goes on writing"


def test_a_write_that_gives_the_wrong_number_of_outcomes_fails_every_call_instead_of_hanging() -> None:
    group: GroupCommit[str, str] = GroupCommit(lambda arguments: [])
    with pytest.raises(AssertionError, match="0 outcomes for 1 calls"):
        group("a")
