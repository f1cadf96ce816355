"""isolation="process" as a setting, and the words an attempt gets when its child process ends under it."""

from __future__ import annotations

import signal

import pytest

from jobkit.options import WorkerOptions
from jobkit.worker.isolated import died, find_spec
from tests.chaos import isolated_jobs


def test_isolation_is_thread_or_process_and_nothing_else() -> None:
    assert WorkerOptions().isolation == "thread"
    assert WorkerOptions(isolation="process").isolation == "process"
    with pytest.raises(ValueError, match="isolation"):
        WorkerOptions(isolation="fork")  # type: ignore[arg-type]


def test_a_dead_child_is_described_by_its_signal_or_exit_code() -> None:
    assert "was killed by SIGKILL" in died(-signal.SIGKILL).error
    assert "was killed by SIGSEGV" in died(-signal.SIGSEGV).error
    assert "exited with code 3" in died(3).error
    assert died(-signal.SIGKILL).retryable  # it spends an attempt, as a raising handler does


def test_a_child_finds_a_spec_from_its_function_and_says_why_when_it_cannot() -> None:
    spec = isolated_jobs.quick
    assert find_spec(spec.fn.__module__, spec.fn.__qualname__, spec.name) is spec
    with pytest.raises(LookupError, match="script run as __main__"):
        find_spec("__main__", "nowhere", "x:nowhere")
