"""What `python -m jobkit status` tells a user: what is due apart from what is scheduled, and who holds leases.

The command runs as a subprocess with stdout piped, on a real SQLite file. The lease
hints are shown twice: on leases written with chosen times (every wording, at once), and
on a real worker process killed with SIGKILL while it holds a job (polled, never slept).
"""

from __future__ import annotations

import re
import signal
import sys
from datetime import timedelta
from pathlib import Path

import jobkit
from jobkit.model import JobRecord, utc_now
from tests import admin_jobs
from tests.admin.support import ok, ok_json, store_of, when
from tests.admin_jobs import Pair, Queue
from tests.chaos import control_jobs
from tests.chaos.harness import Harness
from tests.support import TIMEOUT, wait_until

HOLDER = "web-7.example:4242:0a1b2c"  # a worker's id: its claim tokens are "<worker id>:<claim number>"


def _line_with(out: str, text: str) -> str:
    lines = [line for line in out.splitlines() if text in line]
    assert lines, f"no line of the output holds {text!r}:\n{out}"
    return lines[0]


# -- due and scheduled ------------------------------------------------------------------
def test_a_delayed_job_is_scheduled_not_pending_for_a_negative_age(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(db) as store:
        later = admin_jobs.add.later(Pair(1), store, at=utc_now() + timedelta(minutes=59, seconds=30))
    out = ok("status", db)
    assert "oldest pending" not in out and "(in 59m" not in _line_with(out, "due now:")
    assert "due now: none" in out
    assert re.search(
        r"scheduled for later: 1 job; the next is due in 59m \d+s \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\)", out
    )
    assert f"  {later} {admin_jobs.add.name}" in out
    data = ok_json("status", db)
    assert data["due"] == {"count": 0, "oldest": None}
    assert data["scheduled"]["count"] == 1 and data["scheduled"]["next"]["id"] == later
    assert 3500 < data["scheduled"]["next"]["in_seconds"] <= 3570


def test_due_jobs_say_how_long_the_oldest_has_waited(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    now = utc_now()
    with jobkit.SqliteStore(db) as store:
        waited = admin_jobs.add.later(Pair(1), store, at=now - timedelta(minutes=5))
        admin_jobs.add.later(Pair(2), store, at=now - timedelta(minutes=1), priority=9)
        admin_jobs.add.later(Pair(3), store)
        coming = admin_jobs.add.later(Pair(4), store, at=now + timedelta(hours=2))
        admin_jobs.add.later(Pair(5), store, at=now + timedelta(hours=3))
    out = ok("status", db)
    assert re.search(r"due now: 3 jobs; the oldest has waited 5m \d+s \(due ", out), out
    assert f"  {waited} {admin_jobs.add.name}" in out
    assert "scheduled for later: 2 jobs; the next is due in 1h 59m" in out
    assert f"  {coming} {admin_jobs.add.name}" in out
    data = ok_json("status", db)
    assert data["due"]["count"] == 3 and data["due"]["oldest"]["id"] == waited
    assert 300 <= data["due"]["oldest"]["waited_seconds"] < 300 + TIMEOUT
    assert when(data["due"]["oldest"]["due_at"]) == now - timedelta(minutes=5)
    assert data["scheduled"]["count"] == 2 and data["scheduled"]["next"]["id"] == coming
    assert data["counts"]["pending"] == 5, "the counts by status still count both"


# -- leases ---------------------------------------------------------------------------------
def _hold(store: jobkit.SqliteStore, token: str, *, renewed_ago: float, lease: float) -> str:
    """A running job whose holder last renewed its lease *renewed_ago* seconds ago, for *lease* seconds."""
    job_id = admin_jobs.add.later(Pair(1), store)
    renewed = utc_now() - timedelta(seconds=renewed_ago)
    claimed = store.claim_job(job_id, now=renewed, token=token, lock_until=renewed + timedelta(seconds=lease))
    assert claimed is not None
    return job_id


def test_status_names_each_lease_holder_with_its_last_renewal_and_a_hint_when_overdue(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(db) as store:
        fresh = [_hold(store, f"{HOLDER}:{n}", renewed_ago=10, lease=300) for n in (1, 2)]
        quiet = _hold(store, "quiet-host:77:ffffff:3", renewed_ago=200, lease=300)
        gone = _hold(store, "gone-host:88:eeeeee:9", renewed_ago=400, lease=300)
    out = ok("status", db)
    assert "Leases (3 holders)" in out
    row = _line_with(out, HOLDER)
    assert re.search(rf"{HOLDER} +2 +\d+s ago +in 4m \d+s *$", row), row
    quiet_row = _line_with(out, "quiet-host:77:ffffff")
    assert re.search(r"no renewal for 3m 2\ds; presumed lost at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", quiet_row), quiet_row
    gone_row = _line_with(out, "gone-host:88:eeeeee")
    assert re.search(r"no renewal for 6m 4\ds; lock expired 1m 4\ds ago: presumed lost", gone_row), gone_row

    leases = {lease["worker"]: lease for lease in ok_json("status", db)["leases"]}
    assert sorted(leases) == ["gone-host:88:eeeeee", "quiet-host:77:ffffff", HOLDER]
    assert leases[HOLDER]["jobs"] == sorted(fresh)
    assert leases[HOLDER]["overdue"] is False and leases[HOLDER]["hint"] is None
    assert leases[HOLDER]["presumed_lost_at"] is None and leases[HOLDER]["lease_seconds"] == 300
    assert 10 <= leases[HOLDER]["silent_seconds"] < 10 + TIMEOUT
    with store_of(db) as store:
        record = store.get(quiet)
        assert isinstance(record, JobRecord) and record.worker_expires_at is not None
        assert when(leases["quiet-host:77:ffffff"]["renewed_at"]) == record.updated_at
        assert when(leases["quiet-host:77:ffffff"]["presumed_lost_at"]) == record.worker_expires_at
    assert leases["quiet-host:77:ffffff"]["overdue"] is True
    assert leases["quiet-host:77:ffffff"]["hint"].startswith("no renewal for 3m")
    assert leases["gone-host:88:eeeeee"]["jobs"] == [gone] and leases["gone-host:88:eeeeee"]["overdue"] is True


def test_a_progress_report_counts_as_a_renewal(queue: tuple[Path, Queue]) -> None:
    """The queue's running job reported progress as it was claimed, an hour's lease: not overdue."""
    db, q = queue
    (lease,) = ok_json("status", db)["leases"]
    assert lease["jobs"] == [q.running] and lease["overdue"] is False and lease["hint"] is None


def test_a_killed_worker_shows_as_overdue_with_its_pid_while_its_job_still_runs(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        job_id = control_jobs.spin.later(control_jobs.Spin(), h.store)
        argv = [sys.executable, "-m", "jobkit.worker", str(h.db), "--jobs", control_jobs.__name__]
        worker = h.spawn([*argv, "--lock-timeout", "6"], "worker")
        h.wait(lambda: h.started(job_id), TIMEOUT, "the worker to start the job")

        (alive,) = ok_json("status", h.db)["leases"]
        assert f":{worker.pid}:" in alive["worker"] and alive["jobs"] == [job_id]
        assert alive["overdue"] is False and alive["hint"] is None and 0 < alive["lease_seconds"] < 7

        worker.signal(signal.SIGKILL)
        assert worker.wait_exit(TIMEOUT) == -signal.SIGKILL

        def overdue() -> dict[str, object] | None:
            (lease,) = ok_json("status", h.db)["leases"]
            return lease if lease["overdue"] else None

        lease = wait_until(overdue, "the dead worker's lease to be overdue for renewal", 2 * TIMEOUT)
        assert lease["worker"] == alive["worker"] and lease["presumed_lost_at"] is not None
        row = _line_with(ok("status", h.db), alive["worker"])
        assert re.search(r"no renewal for \d+s; (presumed lost at|lock expired)", row), row
        assert h.store.get(job_id) is not None and ok_json("status", h.db)["counts"]["running"] == 1
    finally:
        h.close()
