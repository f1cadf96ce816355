"""A new user's first hour: the name to install, the version, completion, `make run`'s demo, one summary."""

from __future__ import annotations

import importlib.metadata
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jobkit
from tests.support import TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DISTRIBUTION = "jobkit-queue"
DEMO_JOBS = 6


# -- the name on PyPI, the version, completion -----------------------------------------------------
def test_the_distribution_has_a_name_of_its_own_and_installs_jobkit() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; these two lines are plain)
    project = dict(re.findall(r'^(name|version) = "(.+)"$', pyproject, re.MULTILINE))
    # PyPI's "jobkit" is an unrelated job-hunting toolkit with the same top-level package.
    assert project["name"] == DISTRIBUTION
    installed = importlib.metadata.distribution(DISTRIBUTION)
    assert installed.version == project["version"] == jobkit.__version__
    assert "jobkit" in (installed.read_text("top_level.txt") or "jobkit").split()


def test_every_install_line_of_the_readme_names_the_distribution() -> None:
    lines = [line for line in README.splitlines() if re.search(r"\bpip install\b", line)]
    assert lines, "the README says how to install"
    for line in lines:
        for word in re.findall(r"pip install ((?:-\S+ )*)(\S+)", line):
            target = word[1].strip("'\"`:")
            assert target == "." or target.startswith((DISTRIBUTION, ".[")), line
        assert not re.search(r"pip install (-U )?[\"']?jobkit([\[\"' ]|$)", line), line


def test_the_version_comes_from_the_distribution_or_says_it_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    assert jobkit.__version__ == importlib.metadata.version(DISTRIBUTION)
    from jobkit import __version__

    assert __version__ == jobkit.__version__

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert jobkit._version() == "0+unknown"


def test_completion_lists_the_lazy_names_without_importing_the_worker() -> None:
    script = (
        "import sys, jobkit\n"
        "names = dir(jobkit)\n"
        "print(all(n in names for n in ('run_worker', 'tick', 'tick_handler', '__version__')))\n"
        "print('jobkit.worker' in sys.modules)\n"
        "print(jobkit.tick is __import__('jobkit.worker').worker.tick)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["True", "False", "True"], done.stderr
    assert {"run_worker", "tick", "tick_handler"} <= set(jobkit.__all__)


# -- the worker's summary --------------------------------------------------------------------------
@pytest.mark.parametrize("verbosity", [[], ["--quiet"], ["--verbose"]])
def test_the_worker_prints_its_summary_once(tmp_path: Path, verbosity: list[str]) -> None:
    jobkit.SqliteStore(tmp_path / "jobs.sqlite").close()
    done = subprocess.run(
        [sys.executable, "-m", "jobkit.worker", "jobs.sqlite", "--burst", *verbosity],
        cwd=tmp_path,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summaries = [line for line in (done.stdout + done.stderr).splitlines() if "0 claimed, 0 completed" in line]
    assert len(summaries) == 1, done.stdout + done.stderr


# -- `make run`'s demo -----------------------------------------------------------------------------
def demo_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def demo(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.demo", *args],
        cwd=folder,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_the_demo_leaves_an_existing_jobs_sqlite_alone_and_prints_one_summary(tmp_path: Path) -> None:
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as store:  # the user's own queue
        mine = store.counts()
    before = snapshot(tmp_path)
    done = demo(tmp_path, "demo.sqlite", "--count", str(DEMO_JOBS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert {name: data for name, data in snapshot(tmp_path).items() if name in before} == before
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as store:
        assert store.counts() == mine
    summaries = [line for line in done.stdout.splitlines() if line.startswith("jobkit.worker:")]
    assert summaries == [f"jobkit.worker: {DEMO_JOBS} claimed, {DEMO_JOBS} completed, 0 failed, 0 retried"]
    assert f"{DEMO_JOBS} jobs: {DEMO_JOBS} completed, 0 failed" in done.stdout
    assert "Thumbnailed(path='thumbs/64/photo-00.jpg'" in done.stdout  # results come typed

    again = demo(tmp_path, "demo.sqlite", "--count", "1")  # its own file: each run adds its jobs
    assert again.returncode == 0, again.stdout + again.stderr
    with jobkit.SqliteStore(tmp_path / "demo.sqlite") as store:
        assert store.counts()[jobkit.JobStatus.COMPLETED] == DEMO_JOBS + 1


def test_the_demo_refuses_a_file_it_did_not_make_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    jobs = jobkit.Registry()

    @jobs.job(name="billing:charge")
    def charge(params: int, ctx: jobkit.Context) -> None:
        return None

    with jobkit.SqliteStore(tmp_path / "queue.sqlite") as store:
        charge.later(1, store)
    (tmp_path / "notes.sqlite").write_text("not a database\n")
    before = snapshot(tmp_path)
    for name, says in [("queue.sqlite", "jobs the demo did not make (billing:charge)"), ("notes.sqlite", "")]:
        done = demo(tmp_path, name, "--count", "1")
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.startswith("demo: ") and says in done.stderr and done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr
        assert snapshot(tmp_path) == before


def run_in_terminal(args: list[str], cwd: Path, *, interrupt_at: str | None = None) -> str:
    """What *args* writes to a terminal (a real pseudo-terminal), stdout and stderr alike.

    With *interrupt_at*, the process gets one SIGINT (a Ctrl-C) once its output shows that text.
    """
    master, slave = pty.openpty()
    process = subprocess.Popen(args, cwd=cwd, env=demo_env(), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"{args} still writing after 120s"
            if not select.select([master], [], [], left)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process that had the terminal has closed it
                break
            if not data:
                break
            chunks.append(data)
            if interrupt_at is not None and interrupt_at in b"".join(chunks).decode(errors="replace"):
                os.kill(process.pid, signal.SIGINT)
                interrupt_at = None
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=TIMEOUT)
    assert process.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode()


def screen(output: str) -> list[str]:
    """The lines left on a terminal by *output*, which uses only newlines and "up N lines, clear below"."""
    lines = [""]
    for token in re.split(r"(\x1b\[\d+F\x1b\[J|\n)", output.replace("\r\n", "\n")):
        if token == "\n":
            lines.append("")
        elif moved := re.fullmatch(r"\x1b\[(\d+)F\x1b\[J", token):
            lines = [*lines[: len(lines) - 1 - int(moved[1])], ""]
        else:
            assert "\x1b" not in token, f"an escape the test terminal does not know: {token!r}"
            lines[-1] += token
    return lines


def test_the_demo_in_a_terminal_ends_with_one_clean_frame_and_the_summary_visible(tmp_path: Path) -> None:
    output = run_in_terminal(
        [sys.executable, "-m", "examples.demo", "demo.sqlite", "--count", str(DEMO_JOBS)], tmp_path
    )
    shown = screen(output)
    frames = [line for line in shown if re.search(r"\] +\d+/\d+ done", line)]
    assert frames == [line for line in frames if f"{DEMO_JOBS}/{DEMO_JOBS} done, 0 running" in line], shown
    assert len(frames) == 1, "a stale frame was left on screen:\n" + "\n".join(shown)
    summaries = [line for line in shown if line.startswith("jobkit.worker:")]
    assert summaries == [f"jobkit.worker: {DEMO_JOBS} claimed, {DEMO_JOBS} completed, 0 failed, 0 retried"], shown
    assert not any(re.search(r"\[[#.]{20}\] +\d+%", line) for line in shown), "a job's progress line was left"


def test_ctrl_c_stops_the_demo_cleanly_and_gives_back_what_did_not_run(tmp_path: Path) -> None:
    count = 12  # twice what the demo's worker runs at once, so that some are still pending
    output = run_in_terminal(
        [sys.executable, "-m", "examples.demo", "demo.sqlite", "--count", str(count)],
        tmp_path,
        interrupt_at=" 6 running",
    )
    shown = screen(output)
    assert "Traceback" not in output, output
    frames = [line for line in shown if re.search(r"\] +\d+/\d+ done", line)]
    assert len(frames) == 1 and "0 running" in frames[0], shown
    summaries = [line for line in shown if line.startswith("jobkit.worker:")]
    assert len(summaries) == 1, shown
    with jobkit.SqliteStore(tmp_path / "demo.sqlite") as store:
        counts = store.counts()
    # The worker heard the Ctrl-C: its running jobs finished and it claimed no more (the
    # second six wait for the first), so the rest are pending, their attempts unspent.
    assert counts[jobkit.JobStatus.COMPLETED] >= 6 and counts[jobkit.JobStatus.PENDING] > 0, counts
    assert counts[jobkit.JobStatus.COMPLETED] + counts[jobkit.JobStatus.PENDING] == count, counts
    with jobkit.SqliteStore(tmp_path / "demo.sqlite") as store:
        pending = store.list_jobs(status=jobkit.JobStatus.PENDING)
    assert {job.attempt_count for job in pending} == {0}
