"""`python -m jobkit queues TARGET [pause NAME | resume NAME]`, `list --queue` and the queues in `status`.

Subprocesses on a real SQLite file; the jobs are made through the library first.
"""

from __future__ import annotations

from pathlib import Path

import jobkit
from tests import admin_jobs
from tests.admin.support import ok, ok_json, refused
from tests.admin_jobs import Pair


def make(tmp_path: Path) -> tuple[Path, list[str]]:
    db = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(db) as store:
        ids = [admin_jobs.add.later(Pair(1), store), admin_jobs.add.later(Pair(2), store, queue="emails")]
        ids += admin_jobs.add.later_many([Pair(3), Pair(4)], store, queue="emails")
    return db, ids


def test_queues_lists_each_queue_with_its_state_and_counts(tmp_path: Path) -> None:
    db, _ = make(tmp_path)
    table = ok("queues", db)
    assert [line.split()[:3] for line in table.splitlines() if line.strip().startswith(("default", "emails"))] == [
        ["default", "active", "1"],
        ["emails", "active", "3"],
    ]
    data = ok_json("queues", db)
    assert [(q["name"], q["paused"], q["counts"]["pending"]) for q in data] == [
        ("default", False, 1),
        ("emails", False, 3),
    ]


def test_pause_and_resume_say_what_they_did_and_the_store_holds_it(tmp_path: Path) -> None:
    db, _ = make(tmp_path)
    assert ok("queues", db, "pause", "emails") == "queue emails paused: no worker claims its jobs (3 pending)\n"
    with jobkit.SqliteStore(db) as store:
        assert {q.name: q.paused for q in jobkit.queues(store)} == {"default": False, "emails": True}
    assert ok_json("queues", db, "resume", "emails") == {
        "name": "emails",
        "paused": False,
        "counts": {"pending": 3, "running": 0, "completed": 0, "failed": 0, "cancelled": 0},
    }
    assert ok("queues", db, "pause", "not-yet").startswith("queue not-yet paused")  # a queue with no jobs yet


def test_status_shows_the_queues_and_list_filters_by_one(tmp_path: Path) -> None:
    db, ids = make(tmp_path)
    ok("queues", db, "pause", "emails")
    status = ok("status", db)
    assert "Queues" in status and any(line.split()[:2] == ["emails", "paused"] for line in status.splitlines())
    assert [q["name"] for q in ok_json("status", db)["queues"]] == ["default", "emails"]
    listed = [job["id"] for job in ok_json("list", db, "--queue", "emails")]
    assert listed == sorted(ids[1:], reverse=True)
    assert ok_json("show", db, ids[1])["queue"] == "emails"


def test_a_single_default_queue_adds_no_table_to_status(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(db) as store:
        admin_jobs.add.later(Pair(1), store)
    assert "Queues" not in ok("status", db)


def test_bad_queue_commands_are_usage_errors_that_change_nothing(tmp_path: Path) -> None:
    db, _ = make(tmp_path)
    assert "needs the NAME of a queue" in refused(2, "queues", db, "pause")
    assert "invalid choice: 'emails'" in refused(2, "queues", db, "emails")
    assert "unexpected 'emails'" in refused(2, "queues", db, "list", "emails")
    assert "a queue must be a queue name" in refused(2, "queues", db, "pause", "has space")
    assert "a queue must be a queue name" in refused(2, "list", db, "--queue", "")
    with jobkit.SqliteStore(db) as store:
        assert not any(q.paused for q in jobkit.queues(store))
