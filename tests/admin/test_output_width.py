"""How wide the admin command draws: whole lines when piped, the terminal's width on one.

Each test runs the real command in a subprocess: piped (as `... | grep` or a log file
sees it), under an explicit COLUMNS, or on a pseudo-terminal of a known size.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import timedelta
from pathlib import Path

import jobkit
from jobkit.model import Lease, new_id, utc_now
from tests import admin_jobs
from tests.admin.support import ROOT, TIMEOUT, ok, store_of
from tests.admin_jobs import Queue
from tests.support import raw_job

LONG_SCHEDULE = "nightly-report-of-every-region-and-every-shop-" * 3  # 138 characters
LONG_NAME = "shop.reports.regional_and_international:" + "build_the_quarterly_summary_" * 4
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def line_with(out: str, text: str) -> str:
    """The one line of *out* that holds *text* whole; fail when it is split over lines or missing."""
    lines = [line for line in out.splitlines() if text in line]
    assert lines, f"{text!r} is not on any one line of:\n{out}"
    return lines[0]


def test_piped_schedules_keep_a_long_name_on_its_row(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    with store_of(db) as store:
        jobkit.schedule(store, admin_jobs.add, "*/5 * * * *", {"a": 1}, name=LONG_SCHEDULE)
    row = line_with(ok("schedules", db), LONG_SCHEDULE)
    assert "*/5 * * * *" in row and "yes" in row


def test_piped_cancel_says_each_jobs_fate_on_one_line(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    out = ok("cancel", db, q.pending, q.running)
    line_with(out, f"{q.running} running: asked to stop; it ends cancelled when its handler stops")
    line_with(out, f"{q.pending} cancelled")
    assert len(out.splitlines()) == 2


def test_piped_status_and_list_keep_long_job_names_whole(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    with store_of(db) as store:
        store.add([raw_job(LONG_NAME)])
    counts = line_with(ok("status", db), LONG_NAME)
    assert counts.split()[1:] == ["1", "0", "0", "0", "0"], "the counts stay on the name's row"
    line_with(ok("list", db), LONG_NAME)


def test_piped_show_keeps_long_values_whole_and_its_rules_short(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    holder = "worker-" + "x" * 120
    with store_of(db) as store:
        job_id = admin_jobs.add.later(admin_jobs.Pair(1), store, correlation_id="order-" + "7" * 100)
        now = utc_now()
        assert store.claim_job(job_id, now=now, token=holder, lock_until=now + timedelta(hours=1))
        assert store.progress(Lease(job_id, holder), 10, "step " + "y" * 150, now=now)
    out = ok("show", db, job_id)
    line_with(out, "order-" + "7" * 100)
    line_with(out, holder)
    line_with(out, "step " + "y" * 150)
    rules = [line for line in out.splitlines() if line.startswith(("params ", "result ", "error ", "traceback "))]
    assert len(rules) == 4 and all(len(rule) <= 80 for rule in rules), rules


def _run(args: list[str], env: dict[str, str], **streams: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobkit", *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        text=True,
        timeout=TIMEOUT,
        check=False,
        **streams,  # type: ignore[call-overload]
    )


def _plain_env() -> dict[str, str]:
    skip = {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    return {key: value for key, value in os.environ.items() if key not in skip}


def test_piped_output_wraps_where_columns_says(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    with store_of(db) as store:
        jobkit.schedule(store, admin_jobs.add, "*/5 * * * *", {"a": 1}, name=LONG_SCHEDULE)
    done = _run(["schedules", str(db)], {**_plain_env(), "COLUMNS": "70"}, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert LONG_SCHEDULE not in done.stdout, "an explicit COLUMNS is a width to keep to"
    assert max(len(line) for line in done.stdout.splitlines()) <= 70


def test_on_a_terminal_output_fits_its_width(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    with store_of(db) as store:
        jobkit.schedule(store, admin_jobs.add, "*/5 * * * *", {"a": 1}, name=LONG_SCHEDULE)
    leader, follower = pty.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        done = _run(
            ["schedules", str(db)],
            {**_plain_env(), "TERM": "xterm"},
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed: all was read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0, done.stderr
    lines = [ANSI.sub("", line) for line in drawn.decode().replace("\r\n", "\n").splitlines()]
    assert any(line.strip() for line in lines), drawn
    assert max(len(line) for line in lines) <= 100
    assert not any(LONG_SCHEDULE in line for line in lines), "folded to the terminal's width"
    assert any(LONG_SCHEDULE[:20] in line for line in lines)


def test_a_made_up_id_is_never_wrapped_into_an_error(tmp_path: Path) -> None:
    """Errors are one line on stderr at any width (they never went through rich)."""
    db = tmp_path / "jobs.sqlite"
    jobkit.SqliteStore(db).close()
    missing = new_id() + "-" + "z" * 100
    done = _run(["show", str(db), missing], _plain_env(), capture_output=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and missing in done.stderr
