"""The worker's --jobs errors and --create, as a user meets them: python -m jobkit.worker in a folder.

Each mistake is one line on stderr naming the module and what to do, exit 2, no traceback,
and no database file is created by a refused command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import jobkit


def worker(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """python -m jobkit.worker ARGS in *folder*, with only that folder to import from."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "jobkit.worker", *args],
        check=False,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A project folder with a jobs database, a good module, a broken one and a package."""
    (tmp_path / "tasks.py").write_text("import jobkit\njobs = jobkit.Registry()\n")
    (tmp_path / "broken.py").write_text("def oops(:\n")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "tasks.py").write_text("import jobkit\njobs = jobkit.Registry()\n")
    (tmp_path / "exits.py").write_text("raise SystemExit(3)\n")
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite"):
        pass
    return tmp_path


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("./tasks", "use a module name: tasks"),
        ("tasks.py", "use a module name: tasks"),
        ("shop/tasks.py", "use a module name: shop.tasks"),
        ("missing", "no module named 'missing'"),
        ("broken", "importing 'broken' failed: SyntaxError"),
        ("exits", "importing 'exits' failed: SystemExit"),
    ],
)
def test_a_bad_jobs_option_is_one_line_naming_the_module(folder: Path, given: str, says: str) -> None:
    done = worker(folder, "jobs.sqlite", "--jobs", given, "--burst")
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("jobkit.worker: error:")
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_a_good_jobs_option_runs(folder: Path) -> None:
    done = worker(folder, "jobs.sqlite", "--jobs", "shop.tasks", "--burst", "--quiet")
    assert done.returncode == 0, done.stderr


def test_create_makes_a_missing_database_and_runs(folder: Path) -> None:
    refused = worker(folder, "new.sqlite", "--burst")
    assert refused.returncode == 2 and "give --create" in refused.stderr
    assert not (folder / "new.sqlite").exists()
    made = worker(folder, "new.sqlite", "--create", "--burst", "--quiet")
    assert made.returncode == 0, made.stderr
    with jobkit.SqliteStore(folder / "new.sqlite", create=False) as store:
        assert store.list_jobs() == []
