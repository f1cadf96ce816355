"""The README's examples run as written, and pass ``mypy --strict`` against jobkit installed from its wheel.

Every Python block of the README is type-checked, and each is run by one of the tests
here (``test_every_python_block_is_run_by_a_test`` holds that): a block added to the
README needs a test that runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jobkit
from tests.pg import throwaway_database

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
ORDERS = ("orders.py", "orders_sqlalchemy.py", "orders_django.py")  # enqueue in your transaction, three ways
DISTRIBUTION = "jobkit_queue"  # jobkit-queue, as a wheel's file name spells it


def named(name: str) -> str:
    """The python block whose first line is ``# <name>``."""
    for block in BLOCKS:
        if block.startswith(f"# {name}\n"):
            return block
    raise AssertionError(f"README has no python block starting with '# {name}'")


def holding(marker: str) -> str:
    """The one python block that holds *marker*."""
    found = [block for block in BLOCKS if marker in block]
    assert len(found) == 1, f"{len(found)} python blocks of the README hold {marker!r}, not one"
    return found[0]


def reader() -> str:
    return holding("store.list_jobs")


def notebook() -> str:
    return holding("MemoryStore()")


def results() -> str:
    return holding("resize.wait(")


def manage() -> str:
    return holding("jobkit.schedule(store")


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
    (tmp_path / "read.py").write_text(reader())
    rows = run(tmp_path, "read.py").splitlines()
    assert len(rows) == 3
    assert all(" completed " in row for row in rows), rows
    assert any("thumbs/100/b.png" in row for row in rows), rows


def test_notebook_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    (tmp_path / "notebook.py").write_text(notebook())
    assert run(tmp_path, "notebook.py").splitlines() == expected(notebook())


def test_recurring_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "nightly.py").write_text(named("nightly.py"))
    (tmp_path / "manage.py").write_text(manage())
    run(tmp_path, "-c", "import jobkit; jobkit.SqliteStore('jobs.sqlite').close()")
    out = run(tmp_path, "-m", "jobkit.worker", "jobs.sqlite", "--jobs", "nightly", "--once")
    assert "0 claimed" in out
    rows = run(tmp_path, "manage.py").splitlines()
    assert [row.split()[0] for row in rows] == ["five-minute-report", "morning", "nightly-report"]
    assert rows[1].split()[1:6] == ["0", "7", "*", "*", "1-5"]


def test_results_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    (tmp_path / "results.py").write_text(results())
    run(tmp_path, "-c", "import jobkit; jobkit.SqliteStore('jobs.sqlite').close()")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    worker = subprocess.Popen([sys.executable, "-m", "jobkit.worker", "jobs.sqlite", "--quiet"], cwd=tmp_path, env=env)
    try:
        assert run(tmp_path, "results.py").splitlines() == expected(results()) == ["thumbs/100/g.png True completed"]
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0


def test_transactional_enqueue_example_runs_as_written(
    tmp_path: Path, pg_admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    for script in ORDERS:
        (tmp_path / script).write_text(named(script))
    with throwaway_database(pg_admin_dsn) as url:
        monkeypatch.setenv("DATABASE_URL", url)
        printed = {script: run(tmp_path, script).splitlines() for script in ORDERS}  # orders.py makes the table
        with jobkit.PostgresStore(url) as store:
            images = sorted(json.loads(row.params)["url"] for row in store.list_jobs(limit=10))
    assert printed["orders.py"] == expected(named("orders.py")) == ["None", "pending", "None"]
    assert printed["orders_sqlalchemy.py"] == expected(named("orders_sqlalchemy.py")) == ["pending"]
    assert printed["orders_django.py"] == expected(named("orders_django.py")) == ["pending"]
    assert images == ["f.png", "h.png", "i.png"], "and g.png, rolled back, is not there"


# Drives the README's app.py through Starlette's TestClient: one job made, one bad request refused.
APP_CLIENT = """
import jobkit
from starlette.testclient import TestClient

from app import app

with TestClient(app) as client:
    made = client.post("/resize", json={"url": "a.png", "width": 3})
    refused = client.post("/resize", json={"url": "b.png", "width": "wide"})
print(made.status_code, refused.status_code, refused.json()["error"])
with jobkit.SqliteStore("jobs.sqlite") as store:
    record = store.get(made.json()["job_id"])
    assert record is not None
    print(record.status, record.params, record.correlation_id, sum(store.counts().values()))
"""


def test_async_producer_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    (tmp_path / "app.py").write_text(named("app.py"))
    (tmp_path / "client.py").write_text(APP_CLIENT)
    assert run(tmp_path, "client.py").splitlines() == [
        "202 422 invalid params: invalid value for type, expected int @ params.width",
        'pending {"url":"a.png","width":3} web 1',
    ]


# Drives the README's dashboard.py: the mounted dashboard answers under its prefix, read-only.
DASHBOARD_CLIENT = """
from starlette.testclient import TestClient

from dashboard import app, store

with TestClient(app) as client:
    page = client.get("/admin/jobs/")
    health = client.get("/admin/jobs/healthz").json()
    refused = client.post("/admin/jobs/queues/default/pause")
print(page.status_code, 'href="/admin/jobs/jobs"' in page.text, health["ok"], health["read_only"], refused.status_code)
store.close()
"""


def test_dashboard_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "dashboard.py").write_text(named("dashboard.py"))
    (tmp_path / "client.py").write_text(DASHBOARD_CLIENT)
    assert run(tmp_path, "client.py").splitlines() == ["200 True True True 403"]


def test_queues_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    (tmp_path / "queues.py").write_text(named("queues.py"))
    assert run(tmp_path, "queues.py").splitlines() == expected(named("queues.py")) == ["thumbnails True 1"]
    run(tmp_path, "-m", "jobkit.worker", "jobs.sqlite", "--queues", "thumbnails", "--burst", "--quiet")
    assert "completed" in run(tmp_path, "-m", "jobkit", "list", "jobs.sqlite", "--queue", "thumbnails")


def test_unique_jobs_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(named("tasks.py"))
    (tmp_path / "unique.py").write_text(named("unique.py"))
    assert run(tmp_path, "unique.py").splitlines() == expected(named("unique.py")) == ["True 1"]
    run(tmp_path, "-m", "jobkit.worker", "jobs.sqlite", "--burst", "--quiet")
    # Its job has ended: the same key makes a new job now.
    assert run(tmp_path, "unique.py").splitlines() == ["True 1"]
    listed = json.loads(run(tmp_path, "-m", "jobkit", "list", "jobs.sqlite", "--json"))
    assert sorted(job["status"] for job in listed) == ["completed", "pending"]
    assert {job["unique_key"] for job in listed} == {"thumb:a.png"}
    shown = json.loads(run(tmp_path, "-m", "jobkit", "show", "jobs.sqlite", listed[-1]["id"], "--json"))
    assert [a["outcome"] for a in shown["attempts"]] == ["completed"]


def test_snooze_and_attempts_examples_run_as_written(tmp_path: Path) -> None:
    (tmp_path / "waiting.py").write_text(named("waiting.py"))
    (tmp_path / "snoozed.py").write_text(named("snoozed.py"))
    assert run(tmp_path, "snoozed.py").splitlines() == expected(named("snoozed.py")) == ["['snoozed'] 1"]
    [job] = json.loads(run(tmp_path, "-m", "jobkit", "list", "jobs.sqlite", "--json"))
    assert (job["status"], job["attempt_count"]) == ("pending", 0)  # the snoozed attempt was not counted
    shown = run(tmp_path, "-m", "jobkit", "show", "jobs.sqlite", job["id"])
    assert "attempts" in shown and "snoozed" in shown


def test_pipeline_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(named("pipeline.py"))
    (tmp_path / "run_pipeline.py").write_text(named("run_pipeline.py"))
    said = run(tmp_path, "run_pipeline.py").splitlines()
    assert said == expected(named("run_pipeline.py")) == ["pages: 44 characters"]
    listed = json.loads(run(tmp_path, "-m", "jobkit", "list", "jobs.sqlite", "--json"))
    assert sorted(job["status"] for job in listed) == ["completed"] * 5
    [final] = [job for job in listed if job["job_name"] == "pipeline.report"]
    assert len(final["depends_on"]) == 2 and final["waiting_for"] == 0


def test_every_python_block_is_run_by_a_test() -> None:
    run_here = [named("tasks.py"), named("enqueue.py"), reader(), notebook(), results(), named("nightly.py"), manage()]
    run_here += [named(script) for script in ORDERS]
    run_here += [named("app.py"), named("queues.py"), named("unique.py"), named("waiting.py"), named("snoozed.py")]
    run_here += [named("pipeline.py"), named("run_pipeline.py"), named("dashboard.py")]
    assert sorted(BLOCKS) == sorted(run_here), "a python block of the README that no test here runs"


# -- installed as the README says: from the wheel, where type checkers find jobkit by its py.typed ------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip install jobkit-queue`` would install, built from a copy of this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "jobkit", source / "jobkit", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(work), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [built] = work.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path) -> Path:
    """A folder holding what installing the wheel puts in site-packages."""
    folder = wheel.parent / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    return folder


def test_the_wheel_is_jobkit_queue_and_ships_py_typed_and_every_module(wheel: Path) -> None:
    assert wheel.name.startswith(f"{DISTRIBUTION}-"), wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "jobkit/py.typed" in names
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "jobkit").rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_every_python_block_passes_mypy_strict_as_written(site: Path, tmp_path: Path) -> None:
    files = []
    for number, block in enumerate(BLOCKS):
        first = block.splitlines()[0]
        name = first[2:] if re.fullmatch(r"# \w+\.py", first) else f"readme_block_{number}.py"
        (tmp_path / name).write_text(block)
        files.append(name)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".mypy_cache"), *files],
        cwd=tmp_path,
        # jobkit comes from the wheel's files alone, found as an installed package is: by py.typed.
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"no issues found in {len(files)} source files" in done.stdout
