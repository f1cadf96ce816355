"""Job names read from the database, in real worker processes: hostile names fail alone, unknown ones wait.

A worker without ``--jobs`` imports what a row names; whatever that import does short of
ending the process fails that job alone. A worker that cannot import a job's module
spends its attempts no faster than a raising handler would, so a worker that can runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobkit.model import JobStatus
from tests.chaos.chaos_jobs import Nap, nap
from tests.chaos.harness import Harness, stop_all
from tests.support import raw_job

pytestmark = pytest.mark.slow

HOSTILE = {
    "quits.py": "raise SystemExit(0)\n",
    "interrupts.py": "raise KeyboardInterrupt\n",
    "breaks.py": "1 / 0\n",
}


def modules(h: Harness) -> Path:
    """A folder of hostile modules on the workers' PYTHONPATH; each leaves a marker file when imported."""
    folder = h.folder / "modules"
    folder.mkdir()
    for name, body in HOSTILE.items():
        marker = h.folder / f"imported-{name}"
        (folder / name).write_text(f"open({str(marker)!r}, 'w').close()\n{body}")
    h.env["PYTHONPATH"] = str(folder)
    return folder


def test_hostile_job_names_fail_alone_and_the_worker_goes_on(h: Harness) -> None:
    modules(h)
    names = ["venv.__main__:main", "pip.__main__:main", "quits:job", "interrupts:job", "breaks:job"]
    rows = [raw_job(name, "{}", max_attempts=1) for name in names]
    h.store.add(rows)
    good = nap.later(Nap([0.05]), h.store)

    worker = h.worker("--burst", "--poll-interval", "0.1", jobs=False)
    assert worker.wait_exit(30) == 0, worker.tail(40)

    records = h.records()
    assert records[good].status is JobStatus.COMPLETED, worker.tail(40)
    for row in rows:
        found = records[row.id]
        assert (found.status, found.attempt_count) == (JobStatus.FAILED, 1), found
        assert found.error is not None and f"no job named {row.job_name!r}" in found.error
    assert "__main__" in (records[rows[0].id].error or "")
    assert "SystemExit" in (records[rows[2].id].error or "")
    assert "KeyboardInterrupt" in (records[rows[3].id].error or "")
    assert "ZeroDivisionError" in (records[rows[4].id].error or "")
    assert "Traceback" not in worker.stderr()


def test_import_from_keeps_a_worker_from_importing_other_packages(h: Harness) -> None:
    modules(h)
    row = raw_job("breaks:job", "{}", max_attempts=1)
    h.store.add([row])
    good = nap.later(Nap([0.05]), h.store)

    worker = h.worker("--burst", "--poll-interval", "0.1", "--import-from", "tests", jobs=False)
    assert worker.wait_exit(30) == 0, worker.tail(40)

    records = h.records()
    assert records[good].status is JobStatus.COMPLETED
    assert records[row.id].status is JobStatus.FAILED
    assert "imports only from tests (--import-from)" in (records[row.id].error or "")
    assert not (h.folder / "imported-breaks.py").exists(), "the worker imported a module outside --import-from"


def test_a_worker_that_cannot_import_a_job_leaves_it_for_one_that_can(h: Harness) -> None:
    job = nap.later(Nap([0.05]), h.store, max_attempts=3)
    elsewhere = h.folder / "elsewhere"  # where `tests` does not import: a worker started in the wrong place
    elsewhere.mkdir()
    lost = subprocess.run(
        [sys.executable, "-m", "jobkit.worker", str(h.db), "--burst", "--unresolved-backoff", "0.2"],
        cwd=elsewhere,
        env=h.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert lost.returncode == 0, lost.stderr
    after = h.records()[job]
    assert (after.status, after.attempt_count) == (JobStatus.PENDING, 1), after
    assert "No module named 'tests'" in (after.error or ""), after.error

    right = h.worker("--poll-interval", "0.1")
    h.wait(lambda: h.records()[job].status is JobStatus.COMPLETED, 20, "the worker that can import it to run it")
    stop_all([right])
    done = h.records()[job]
    assert (done.status, done.attempt_count) == (JobStatus.COMPLETED, 2), done
