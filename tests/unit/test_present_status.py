"""jobkit.present's reading of a queue for ``status``: who holds leases, when one is overdue, what is due.

Pure: records and ``now`` in, values out; every time is fixed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs
import pytest

from jobkit.model import Backlog, JobRecord, JobStatus
from jobkit.present import Holder, backlog_json, holder_json, holder_of, holders, is_overdue, lease_hint
from tests.support import make_job

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
LEASE = timedelta(seconds=300)


def running(job_id: str, token: str, renewed: datetime, lease: timedelta = LEASE) -> JobRecord:
    """A job held by *token*, last renewed at *renewed* (a claim or heartbeat) for *lease*."""
    return make_job(
        job_id,
        status=JobStatus.RUNNING,
        worker_id=token,
        worker_started_at=T0 - timedelta(hours=1),
        worker_expires_at=renewed + lease,
        updated_at=renewed,
        attempt_count=1,
    )


@pytest.mark.parametrize(
    ("token", "holder"),
    [
        ("web-1:4242:0a1b2c:17", "web-1:4242:0a1b2c"),
        ("web-1:4242:0a1b2c:1", "web-1:4242:0a1b2c"),
        ("01a237b4-b373-713b-8492-90aeccfe3344", "01a237b4-b373-713b-8492-90aeccfe3344"),  # a now() call's
        ("tok:abc", "tok:abc"),
        (":5", ":5"),
        ("", ""),
    ],
)
def test_holder_of_drops_a_workers_claim_number(token: str, holder: str) -> None:
    assert holder_of(token) == holder


def test_holders_group_a_workers_jobs_from_all_its_claims() -> None:
    jobs = [
        running("b", "w:1:aa:3", T0 - timedelta(seconds=20)),
        running("a", "w:1:aa:1", T0 - timedelta(seconds=40)),
        running("c", "other:2:bb:1", T0 - timedelta(seconds=5), lease=timedelta(seconds=60)),
    ]
    assert holders(jobs) == [
        Holder(
            worker="other:2:bb",
            jobs=("c",),
            renewed_at=T0 - timedelta(seconds=5),
            expires_at=T0 + timedelta(seconds=55),
            length=timedelta(seconds=60),
        ),
        Holder(
            worker="w:1:aa",
            jobs=("a", "b"),
            renewed_at=T0 - timedelta(seconds=20),  # the latest renewal: evidence it was alive then
            expires_at=T0 + timedelta(seconds=260),  # the first lock to run out
            length=LEASE,
        ),
    ]


@pytest.mark.parametrize(
    ("silent", "overdue"),
    [(0, False), (100, False), (150, False), (151, True), (299, True), (300, True), (1000, True)],
)
def test_a_lease_is_overdue_after_half_its_length_without_a_renewal(silent: int, overdue: bool) -> None:
    (holder,) = holders([running("a", "w:1:aa:1", T0)])
    assert is_overdue(holder, T0 + timedelta(seconds=silent)) is overdue
    assert (lease_hint(holder, T0 + timedelta(seconds=silent)) is not None) is overdue


def test_a_later_write_that_is_no_renewal_never_makes_a_live_lease_look_overdue() -> None:
    """A progress report (or a cancel request) after the heartbeat: the holder's next beat is still on time."""
    beat = running("a", "w:1:aa:1", T0)
    later = attrs.evolve(beat, updated_at=T0 + timedelta(seconds=90))  # same expiry, a later write
    (holder,) = holders([later])
    assert not is_overdue(holder, T0 + timedelta(seconds=100)), "the heartbeat due at 100 s may still come"
    assert is_overdue(holder, T0 + timedelta(seconds=299)), "yet before the lock runs out, it is overdue"


def test_the_hints_wording() -> None:
    (holder,) = holders([running("a", "w:1:aa:1", T0)])
    assert lease_hint(holder, T0 + timedelta(seconds=95)) is None
    assert (
        lease_hint(holder, T0 + timedelta(seconds=200))
        == "no renewal for 3m 20s; presumed lost at 2026-01-01 12:05:00Z"
    )
    assert lease_hint(holder, T0 + timedelta(seconds=400)) == (
        "no renewal for 6m 40s; lock expired 1m 40s ago: presumed lost, the next reap gives its jobs back"
    )


def test_holder_json() -> None:
    (holder,) = holders([running("a", "w:1:aa:1", T0)])
    assert holder_json(holder, T0 + timedelta(seconds=10)) == {
        "worker": "w:1:aa",
        "jobs": ["a"],
        "renewed_at": "2026-01-01T12:00:00+00:00",
        "silent_seconds": 10.0,
        "expires_at": "2026-01-01T12:05:00+00:00",
        "lease_seconds": 300.0,
        "overdue": False,
        "presumed_lost_at": None,
        "hint": None,
    }
    late = holder_json(holder, T0 + timedelta(seconds=200))
    assert late["overdue"] is True and late["presumed_lost_at"] == "2026-01-01T12:05:00+00:00"
    assert late["hint"] == "no renewal for 3m 20s; presumed lost at 2026-01-01 12:05:00Z"


def test_backlog_json() -> None:
    oldest = make_job("o", scheduled_for=T0 - timedelta(seconds=90))
    following = make_job("n", scheduled_for=T0 + timedelta(minutes=59))
    assert backlog_json(Backlog(due=4, scheduled=2, oldest_due=oldest, next_scheduled=following), T0) == {
        "due": {
            "count": 4,
            "oldest": {
                "id": "o",
                "job_name": oldest.job_name,
                "due_at": "2026-01-01T11:58:30+00:00",
                "waited_seconds": 90.0,
            },
        },
        "scheduled": {
            "count": 2,
            "next": {
                "id": "n",
                "job_name": following.job_name,
                "due_at": "2026-01-01T12:59:00+00:00",
                "in_seconds": 3540.0,
            },
        },
    }
