"""Group commit: concurrent calls of one write, from the threads of one process, share a transaction.

Each ``later()`` used to pay a commit of its own, and at ``durability="full"`` a commit is
an fsync: eight threads enqueuing at once got no more jobs a second between them than
one. Here the first caller writes at once, alone (no timer, no added latency); callers
that arrive while a write is under way wait, and the next of them to go writes every call
waiting then, in one transaction. So the batch grows exactly as the callers outpace the
disk. Every caller returns only after the commit that holds its jobs, so what a return
promises is unchanged; a call the store refuses (a taken id, an unknown dependency) fails
alone, its neighbours written (SQLite writes each call in a savepoint of its own;
PostgreSQL adds each call alone when the shared INSERT is refused).

Pure threading: the store says how to write a batch (:data:`WriteAll`); this module only
decides who writes which calls, and hands each caller its own outcome.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from jobkit.errors import StoreError

A = TypeVar("A")
R = TypeVar("R")

WriteAll = Callable[[Sequence[A]], Sequence["R | BaseException"]]
"""Write the calls' arguments in one transaction; for each, in order, its result or the exception it alone met.
An exception it raises is every call's (the transaction as a whole failed: none of them is written)."""


class _Call(Generic[A, R]):
    """One caller's call: its argument, then its outcome; *wake* is released when it is done or is to write."""

    __slots__ = ("argument", "done", "outcome", "turn", "wake")

    def __init__(self, argument: A) -> None:
        self.argument = argument
        self.done = False
        self.turn = False  # handed the turn to write by the writer before it
        self.outcome: R | BaseException | None = None
        self.wake: threading.Lock | None = None


_LIVE: weakref.WeakSet[GroupCommit[Any, Any]] = weakref.WeakSet()


def _after_fork() -> None:
    """In a forked child: the threads that were writing or waiting are not there; start every group afresh."""
    for group in list(_LIVE):
        group._start()


os.register_at_fork(after_in_child=_after_fork)


class GroupCommit(Generic[A, R]):
    """Concurrent calls of *write_all*, made together: ``group(argument)`` returns that call's result or raises.

    Each waiting caller sleeps on a lock of its own and is woken once: when its call is
    written, or when it is its turn to write (the writer hands the turn to the oldest
    waiting call, which writes every call waiting then). No caller polls, and a write
    wakes only the callers it concerns. A caller interrupted while it waits (Ctrl-C in
    the main thread) leaves the queue, or passes on the turn it was handed.
    """

    def __init__(self, write_all: WriteAll[A, R], write_one: Callable[[A], R] | None = None) -> None:
        self._write_all = write_all
        self._write_one = write_one or functools.partial(_one_of, write_all)  # a lone call: its result, or raises
        self.batches = 0  # writes made, and calls they held: how much was shared (for tests and benchmarks)
        self.calls = 0
        self._start()
        _LIVE.add(self)

    def _start(self) -> None:
        self._guard = threading.Lock()
        self._waiting: list[_Call[A, R]] = []
        self._writing = False

    def __call__(self, argument: A) -> R:
        with self._guard:
            alone = not self._writing
            if alone:
                self._writing = True
            else:
                call: _Call[A, R] = _Call(argument)
                call.wake = threading.Lock()
                call.wake.acquire()
                self._waiting.append(call)
        if alone:  # no write under way, so no call waits either: this one is written by itself, at once
            self.batches += 1
            self.calls += 1
            try:
                return self._write_one(argument)
            finally:
                self._finish([], [])  # the turn goes to the oldest call that came meanwhile
        self._wait(call)
        if call.done:
            return self._outcome(call)
        batch = [call]
        try:
            with self._guard:
                batch, self._waiting = [call, *self._waiting], []
            outcomes = self._write(batch)
        except BaseException:  # this thread was interrupted (KeyboardInterrupt): it raises that, the others learn why
            self._finish(batch, [_interrupted() for _ in batch])
            raise
        self._finish(batch, outcomes)
        return self._outcome(call)

    def _wait(self, call: _Call[A, R]) -> None:
        """Sleep until *call* is written or handed the turn; if interrupted, leave no one waiting on it."""
        assert call.wake is not None
        try:
            call.wake.acquire()
        except BaseException:
            with self._guard:
                queued = call in self._waiting
                if queued:
                    self._waiting.remove(call)
            if not queued and call.turn and not call.done:  # it was to write next: the turn goes on
                self._finish([], [])
            raise  # (a call a writer has taken is written or not as that write goes)

    def _write(self, batch: list[_Call[A, R]]) -> list[R | BaseException]:
        self.batches += 1
        self.calls += len(batch)
        try:
            found = _counted(self._write_all([c.argument for c in batch]), len(batch))
        except Exception as exc:  # the transaction failed: no call of it is written
            return [exc if i == 0 else _copy(exc) for i in range(len(batch))]
        return found

    def _finish(self, batch: list[_Call[A, R]], outcomes: Sequence[R | BaseException]) -> None:
        """Hand each call of *batch* its outcome, then the turn to write to the oldest waiting call, if any."""
        for other, outcome in zip(batch, outcomes, strict=True):
            other.outcome, other.done = outcome, True
        with self._guard:
            following = self._waiting.pop(0) if self._waiting else None
            if following is None:
                self._writing = False
            else:
                following.turn = True
        for other in batch:
            if other.wake is not None:
                other.wake.release()
        if following is not None and following.wake is not None:
            following.wake.release()

    @staticmethod
    def _outcome(call: _Call[A, R]) -> R:
        if isinstance(call.outcome, BaseException):
            raise call.outcome
        return call.outcome  # type: ignore[return-value]


def _one_of(write_all: WriteAll[A, R], argument: A) -> R:
    """*argument*'s result as a batch of one gives it (or its exception, raised)."""
    (outcome,) = _counted(write_all([argument]), 1)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _counted(found: Sequence[R | BaseException], calls: int) -> list[R | BaseException]:
    """*found*, the outcomes of a write of *calls* calls; a write that lost count fails them all, not hangs."""
    if len(found) != calls:
        raise AssertionError(f"a grouped write gave {len(found)} outcomes for {calls} calls")
    return list(found)


def _interrupted() -> StoreError:
    """What the calls of a write its thread abandoned learn (each its own error)."""
    return StoreError(
        "the thread writing these jobs together with others was interrupted; they may or may not have been "
        "written: look them up (by correlation_id or unique key) before enqueuing them again"
    )


def _copy(exc: Exception) -> Exception:
    """A copy of *exc* for another caller to raise: one exception raised in two threads tangles its traceback."""
    try:
        twin = copy.copy(exc)
    except Exception:  # pragma: no cover - an exception that cannot be copied is shared
        return exc
    twin.__cause__, twin.__traceback__ = exc.__cause__, None
    return twin
