"""Running ``python -m jobkit`` as a user would, and what the admin tests check its runs with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import jobkit
from jobkit.admin import main
from jobkit.model import JobStatus
from jobkit.present import job_json
from tests import admin_jobs

ROOT = Path(__file__).resolve().parent.parent.parent
TIMEOUT = 60  # seconds any one command may take
SUBCOMMANDS = ("status", "list", "show", "retry", "cancel", "purge", "schedules", "queues", "watch", "web", "migrate")
ADD, EXPLODE, REFUSE = admin_jobs.add.name, admin_jobs.explode.name, admin_jobs.refuse.name
PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


def jobkit_cmd(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m jobkit ARGS` as a user would, in a plain 80-column non-terminal."""
    skip = {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    env = {key: value for key, value in os.environ.items() if key not in skip}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "jobkit", *map(str, args)],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def ok(*args: str | Path) -> str:
    done = jobkit_cmd(*args)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert done.stderr == ""
    return done.stdout


def ok_json(*args: str | Path) -> Any:
    return json.loads(ok(*args, "--json"))


def refused(code: int, *args: str | Path, cwd: Path | None = None) -> str:
    """Run a command that must fail: exit *code*, one line on stderr, no traceback, nothing on stdout."""
    done = jobkit_cmd(*args, cwd=cwd)
    assert done.returncode == code, f"{args} exited {done.returncode}, not {code}:\n{done.stdout}\n{done.stderr}"
    assert done.stderr.startswith("jobkit: error: "), done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    return done.stderr


def refused_here(capsys: pytest.CaptureFixture[str], code: int, *args: str | Path) -> str:
    """:func:`refused`, but in this process (main() is what __main__ calls): same checks, faster."""
    assert main([str(arg) for arg in args]) == code
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("jobkit: error: ") and err.count("\n") == 1, (out, err)
    return err


def snapshot(db: Path) -> list[dict[str, Any]]:
    """Every job and schedule, as data: to show that a refused command changed nothing."""
    with jobkit.SqliteStore(db, create=False) as store:
        jobs = [job_json(job) for job in store.list_jobs(limit=10_000)]
        return jobs + [schedule_state(entry) for entry in jobkit.schedules(store)]


def schedule_state(entry: jobkit.Schedule) -> dict[str, Any]:
    return {"schedule": entry.name, "enabled": entry.enabled, "next_run_at": entry.next_run_at}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def store_of(db: Path) -> jobkit.SqliteStore:
    return jobkit.SqliteStore(db, create=False)
