"""The README's examples run as written: its quick start cannot drift from the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def named(name: str) -> str:
    """The python block whose first line is ``# <name>``."""
    for block in BLOCKS:
        if block.startswith(f"# {name}\n"):
            return block
    raise AssertionError(f"README has no python block starting with '# {name}'")


def expected(block: str) -> list[str]:
    """The outputs a block promises in its comments: ``print(...)  # <output>``."""
    return re.findall(r"^\s*print\(.*\)\s+# (.+)$", block, re.MULTILINE)


def run(folder: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    done = subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    enqueue = named("enqueue.py")
    (tmp_path / "enqueue.py").write_text(enqueue)

    out = run(tmp_path, "enqueue.py").splitlines()
    assert out == expected(enqueue)

    run(tmp_path, "-m", "jobkit.worker", "jobs.sqlite", "--burst", "--quiet")
    reader = next(b for b in BLOCKS if "store.list_jobs" in b)
    (tmp_path / "read.py").write_text(reader)
    rows = run(tmp_path, "read.py").splitlines()
    assert len(rows) == 3
    assert all(" completed " in row for row in rows), rows
    assert any("thumbs/100/b.png" in row for row in rows), rows


def test_notebook_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    notebook = next(b for b in BLOCKS if "MemoryStore()" in b)
    (tmp_path / "notebook.py").write_text(notebook)
    assert run(tmp_path, "notebook.py").splitlines() == expected(notebook)


def test_recurring_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "nightly.py").write_text(named("nightly.py"))
    manage = next(b for b in BLOCKS if "jobkit.schedule(store" in b)
    (tmp_path / "manage.py").write_text(manage)
    run(tmp_path, "-c", "import jobkit; jobkit.SqliteStore('jobs.sqlite').close()")
    out = run(tmp_path, "-m", "jobkit.worker", "jobs.sqlite", "--jobs", "nightly", "--once")
    assert "0 claimed" in out
    rows = run(tmp_path, "manage.py").splitlines()
    assert [row.split()[0] for row in rows] == ["five-minute-report", "morning", "nightly-report"]
    assert rows[1].split()[1:6] == ["0", "7", "*", "*", "1-5"]


def test_results_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    block = next(b for b in BLOCKS if "resize.wait(" in b)
    script = block + "\n    print(value.path, result.ok, result.status)\n"
    (tmp_path / "results.py").write_text(script)
    run(tmp_path, "-c", "import jobkit; jobkit.SqliteStore('jobs.sqlite').close()")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    worker = subprocess.Popen([sys.executable, "-m", "jobkit.worker", "jobs.sqlite", "--quiet"], cwd=tmp_path, env=env)
    try:
        assert run(tmp_path, "results.py").split() == ["thumbs/100/g.png", "True", "completed"]
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
