"""The worker command: main() and python -m jobkit.worker.

Multi-process scenarios (signals, kill -9, several workers on one file) live in tests/chaos/.
Nothing here sleeps to wait: handlers and tests meet on Events, and conditions are polled
with a deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import jobkit
from jobkit.worker import main
from tests import worker_jobs
from tests.support import (
    COMPLETED,
    PENDING,
    TIMEOUT,
)


# -- the command ----------------------------------------------------------------------------------------------
@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A jobkit SQLite file with three jobs of tests.worker_jobs:add."""
    path = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(path) as store:
        worker_jobs.add.later_many([{"a": n} for n in range(3)], store)
    return path


@pytest.fixture
def keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() puts the working directory on sys.path, as `python -m` would."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_main_refuses_a_missing_database_in_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.sqlite"
    assert main([str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and str(missing) in err and "no such database file" in err
    assert list(tmp_path.iterdir()) == []


def test_main_refuses_a_file_that_is_not_a_jobkit_database_and_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_sys_path: None
) -> None:
    foreign = tmp_path / "notes.sqlite"
    foreign.write_bytes(b"these are my notes, not a database\n" * 10)
    assert main([str(foreign), "--burst"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("jobkit.worker: error:")
    assert foreign.read_bytes() == b"these are my notes, not a database\n" * 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]


def test_main_help_explains_each_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--jobs",
        "--concurrency",
        "--processes",
        "--lock-timeout",
        "--poll-interval",
        "--grace",
        "--once",
        "--burst",
        "--quiet",
        "--verbose",
    ):
        assert option in text, option
    assert "MODULE[:REGISTRY]" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--concurrency", "0"],
        ["--processes", "0"],
        ["--lock-timeout", "0"],
        ["--poll-interval", "-1"],
        ["--jobs", "no_such_module_for_jobkit_tests"],
        ["--jobs", "tests.worker_jobs:not_a_spec"],
    ],
    ids=lambda argv: argv[0],
)
def test_main_refuses_invalid_options_with_exit_code_2(
    database: Path, argv: list[str], capsys: pytest.CaptureFixture[str], keep_sys_path: None
) -> None:
    assert main([str(database), "--once", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and argv[0] in err
    with jobkit.SqliteStore(database) as store:
        assert store.counts()[PENDING] == 3, "a refused command ran jobs"


def test_main_once_runs_one_pass_and_prints_a_summary(
    database: Path, capsys: pytest.CaptureFixture[str], keep_sys_path: None
) -> None:
    assert main([str(database), "--once", "--jobs", "tests.worker_jobs", "--quiet"]) == 0
    out, _ = capsys.readouterr()
    assert out == "jobkit.worker --once: 3 claimed, 3 completed, 0 failed, 0 retried\n"
    with jobkit.SqliteStore(database) as store:
        assert store.counts()[COMPLETED] == 3


def test_main_burst_runs_every_due_job_and_exits_0(
    database: Path, capsys: pytest.CaptureFixture[str], keep_sys_path: None
) -> None:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main([str(database), "--burst", "--quiet"])), daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "--burst did not exit"
    assert codes == [0]
    assert "3 claimed, 3 completed" in capsys.readouterr().err
    with jobkit.SqliteStore(database) as store:
        assert store.counts()[COMPLETED] == 3


def test_python_m_jobkit_worker_reports_a_missing_database_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobkit.worker", "missing.sqlite"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "jobkit.worker: error: missing.sqlite: no such database file "
        "(give --create to create it, or enqueue a job into it first)\n"
    )
    assert list(tmp_path.iterdir()) == []
