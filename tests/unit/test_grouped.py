"""GroupCommit: concurrent calls share a write; each caller gets its own outcome; no call is written twice.

The writes are gated with events, so which calls wait together is known, not hoped for.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from jobkit.errors import StoreError
from jobkit.stores.grouped import GroupCommit, _Call
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


def test_a_caller_alone_goes_straight_to_the_lone_write() -> None:
    alone: list[str] = []

    def write_one(argument: str) -> str:
        alone.append(argument)
        if argument == "bad":
            raise ValueError("refused bad")
        return argument.upper()

    group: GroupCommit[str, str] = GroupCommit(lambda arguments: pytest.fail("no call waited"), write_one)
    assert group("a") == "A"
    with pytest.raises(ValueError, match="refused bad"):
        group("bad")
    assert group("b") == "B", "a lone call that raised handed the turn on"
    assert alone == ["a", "bad", "b"]


def test_callers_behind_a_lone_write_share_the_next_one() -> None:
    disk = Disk()
    alone: list[str] = []

    def write_one(argument: str) -> Any:
        alone.append(argument)
        return disk.write_all([argument])[0]

    group = GroupCommit(disk.write_all, write_one)
    others = [f"c{n}" for n in range(3)]
    results = queue_behind_a_write(disk, group, others)
    assert results == {a: a.upper() for a in ["first", *others]}
    assert alone == ["first"] and sorted(disk.batches[1]) == others and len(disk.batches) == 2


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


def test_a_writer_interrupted_raises_that_and_its_batch_learns_its_jobs_may_not_be_written() -> None:
    disk = Disk()
    disk.fail_with = KeyboardInterrupt()
    group = GroupCommit(disk.write_all)
    results = queue_behind_a_write(disk, group, ["x", "y"])
    interrupted = [a for a in ("x", "y") if isinstance(results[a], KeyboardInterrupt)]
    told = [a for a in ("x", "y") if isinstance(results[a], StoreError)]
    assert len(interrupted) == 1 and len(told) == 1, results
    assert "interrupted; they may or may not have been written" in str(results[told[0]])
    disk.fail_with = None
    assert group("after") == "AFTER", "the group goes on writing"


def test_a_write_that_gives_the_wrong_number_of_outcomes_fails_every_call_instead_of_hanging() -> None:
    group: GroupCommit[str, str] = GroupCommit(lambda arguments: [])
    with pytest.raises(AssertionError, match="0 outcomes for 1 calls"):
        group("a")


# -- interrupted callers, forks ------------------------------------------------------------
class Interrupting:
    """A lock stand-in whose acquire() is interrupted, as Ctrl-C interrupts the main thread's wait."""

    def acquire(self) -> bool:
        raise KeyboardInterrupt

    def release(self) -> None:
        pass


def test_a_waiter_interrupted_in_the_queue_leaves_it() -> None:
    group: GroupCommit[str, str] = GroupCommit(lambda arguments: [a.upper() for a in arguments])
    group._writing = True  # another caller is writing
    call: Any = _Call("x")
    call.wake = Interrupting()
    group._waiting.append(call)
    with pytest.raises(KeyboardInterrupt):
        group._wait(call)
    assert group._waiting == [] and group._writing, "gone from the queue; the writer still writes"


def test_a_waiter_interrupted_once_handed_the_turn_passes_it_on() -> None:
    group: GroupCommit[str, str] = GroupCommit(lambda arguments: [a.upper() for a in arguments])
    group._writing = True
    interrupted: Any = _Call("x")
    interrupted.wake, interrupted.turn = Interrupting(), True  # the writer before it popped it and let it go
    behind: Any = _Call("y")
    behind.wake = threading.Lock()
    behind.wake.acquire()
    group._waiting.append(behind)
    with pytest.raises(KeyboardInterrupt):
        group._wait(interrupted)
    assert behind.turn and behind.wake.acquire(blocking=False), "the next caller was handed the turn and woken"
    assert group._writing and group._waiting == []


def test_ctrl_c_in_a_waiting_main_thread_leaves_the_group_working() -> None:
    disk = Disk()
    group = GroupCommit(disk.write_all)
    first, results = call_in_threads(group, ["first"])
    assert disk.entered.wait(TIMEOUT)

    def interrupt_main_once_it_waits() -> None:
        wait_until(lambda: len(group._waiting) == 1, "the main thread waiting")
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_main_once_it_waits)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        group("main")
    interrupter.join(TIMEOUT)
    disk.gate.set()
    first[0].join(TIMEOUT)
    assert results == {"first": "FIRST"}
    later, more = call_in_threads(group, ["after"])
    later[0].join(TIMEOUT)
    assert more == {"after": "AFTER"}, "a call after the interrupted one is written, not left waiting forever"


def test_a_forked_child_writes_though_its_parent_was_writing_when_it_forked() -> None:
    disk = Disk()
    group = GroupCommit(disk.write_all)
    first, _ = call_in_threads(group, ["first"])
    assert disk.entered.wait(TIMEOUT)  # a write is under way, and stays so while we fork
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's exit code is the test
        disk.batches.clear()
        disk.entered.set()  # the child's first write must not wait for the parent's gate
        disk.batches.append(["the parent's"])
        os._exit(0 if group("in the child") == "IN THE CHILD" else 1)
    reaped: dict[str, int] = {}
    waiter = threading.Thread(target=lambda: reaped.setdefault("status", os.waitpid(child, 0)[1]))
    waiter.start()
    try:
        waiter.join(TIMEOUT)
        if waiter.is_alive():
            os.kill(child, signal.SIGKILL)
            waiter.join(TIMEOUT)
            pytest.fail("the child hung: it waited for a writer that is not in its process")
        assert os.waitstatus_to_exitcode(reaped["status"]) == 0
    finally:
        disk.gate.set()
        first[0].join(TIMEOUT)


# -- PostgreSQL's batch: whose error is whose -----------------------------------------------
def pg_together(refuse: set[str], down: set[str], checked_ids: set[str]) -> tuple[list[Any], list[list[str]]]:
    """postgres.adding.together over stand-ins: *refuse* ids the table refuses, *down* ids whose own write loses
    the connection, *checked_ids* calls that need reads first. Returns the outcomes and what was committed."""
    from jobkit.errors import JobkitError
    from jobkit.stores.postgres import adding
    from tests.support import make_job

    committed: list[list[str]] = []

    def insert(jobs: Sequence[Any]) -> None:
        ids = [job.id for job in jobs]
        if refuse & set(ids):
            raise JobkitError("cannot add jobs: duplicate key")
        if down & set(ids):
            raise StoreError("server closed the connection unexpectedly")
        committed.append(ids)

    def alone(jobs: Sequence[Any]) -> list[str]:
        insert(jobs)
        return [job.id for job in jobs]

    def job(job_id: str) -> Any:
        return make_job(job_id, unique_key="k" if job_id in checked_ids else None)

    calls = [[job("a")], [job("taken")], [job("c")]]
    return adding.together(calls, alone, insert), committed


def test_pg_a_lost_connection_after_a_commit_of_the_batch_is_only_its_own_calls_error() -> None:
    outcomes, committed = pg_together(refuse={"taken"}, down={"c"}, checked_ids=set())
    assert committed == [["a"]]
    assert outcomes[0] == ["a"], "a committed: it is not told it failed"
    assert "duplicate key" in str(outcomes[1])
    assert isinstance(outcomes[2], StoreError)


def test_pg_a_checked_call_that_loses_its_connection_fails_alone_after_the_shared_insert() -> None:
    outcomes, committed = pg_together(refuse=set(), down={"c"}, checked_ids={"c"})
    assert committed == [["a", "taken"]]
    assert outcomes[:2] == [["a"], ["taken"]]
    assert isinstance(outcomes[2], StoreError)


def test_pg_a_lost_connection_in_the_shared_insert_is_every_calls() -> None:
    with pytest.raises(StoreError):
        pg_together(refuse=set(), down={"a"}, checked_ids=set())
