"""Opening a file made by an older jobkit brings its layout up to date in place.

The first jobkit files (schema version 1 as first released) had IN lists in the jobs
table's CHECKs and a name index over every job. Opening one gives it today's name index
and CHECKs without copying the table, then the steps of later versions (2: queues; 3:
unique keys, attempt history, dependencies; 4: the index of jobs by creation time):
every row, and the user's own views, triggers and indexes, are kept. Without
``upgrade`` an older file is refused, untouched, naming the migrate command.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import apsw
import pytest

import jobkit
from jobkit.model import Complete, Fail
from jobkit.stores.sqlite import migrations, schema
from tests.support import T0

V1_SCHEMA = (Path(__file__).parent / "schemas" / "v1_first_layout.sql").read_text()
T = "2026-01-01T00:00:00.000000Z"
LATER = "2026-01-01T00:05:00.000000Z"
NAME = "shop.tasks:resize"


def job(n: int, status: str, **fields: object) -> dict[str, object]:
    """A v1 row: job number *n* in *status*, with *fields* over the defaults."""
    return {
        "id": f"0193c0de-0000-7000-8000-{n:012d}",
        "job_name": NAME,
        "params": str(n),
        "status": status,
        "scheduled_for": T,
        "created_at": T,
        "updated_at": T,
        **fields,
    }


# One job in each status, with the columns that status uses filled in.
RUNNING = {"worker_id": "host:1:ab:1", "worker_started_at": T, "worker_expires_at": LATER, "attempt_count": 1}
V1_JOBS = [
    job(1, "pending", correlation_id="order-1", params='{"w":1}'),
    job(2, "running", progress=40, progress_message="halfway", cancel_requested=1, priority=5, **RUNNING),
    job(3, "completed", result='{"path":"a.png"}', progress=100, completed_at=LATER, correlation_id="order-1"),
    job(4, "failed", job_name="other:job", error="ValueError: no", traceback="Traceback ...", completed_at=LATER),
    job(5, "cancelled", error="cancelled", priority=-1, completed_at=LATER),
]

COLUMNS = ", ".join(c for c in schema.COLUMNS if c not in ("queue", "unique_key", "depends_on", "waiting_for"))  # v1
SCHEDULE = ("s1", "nightly", NAME, "0 3 * * *", '{"w":9}', "UTC", 1, None, LATER, "0193c0de", 1, T, T)


def make_v1(path: Path) -> None:
    """A database exactly as the first jobkit wrote it, holding V1_JOBS and one schedule."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(V1_SCHEMA)
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    for row in V1_JOBS:
        conn.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    conn.execute(
        "INSERT INTO cron_jobs (id, name, job_name, cron_expression, params, timezone, enabled, last_run_at, "
        "next_run_at, last_job_id, declared, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        SCHEDULE,
    )
    conn.commit()
    conn.close()


def contents(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with closing(sqlite3.connect(path)) as conn:
        jobs = conn.execute(f"SELECT {COLUMNS} FROM jobs ORDER BY id").fetchall()
        schedules = conn.execute("SELECT * FROM cron_jobs ORDER BY name").fetchall()
        return jobs, schedules


NAME_INDEX_TODAY = next(
    line.rstrip(";") for line in schema.V5.splitlines() if line.startswith("CREATE INDEX jobs_name_idx")
)


def schema_of(path: Path) -> dict[str, str]:
    """Each table and index by name, its SQL with the quoting of the name made uniform."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL").fetchall()
    return {name: " ".join(sql.split()) for name, sql in rows}


def pragma(path: Path, name: str) -> object:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_an_older_file_gets_todays_layout_with_every_row_kept(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite"
    make_v1(old)
    before = contents(old)
    assert schema_of(old)["jobs_name_idx"] == "CREATE INDEX jobs_name_idx ON jobs (job_name)"

    with jobkit.SqliteStore(old) as store:
        assert store.get(V1_JOBS[1]["id"]) is not None

    assert pragma(old, "user_version") == schema.SCHEMA_VERSION == 6
    assert pragma(old, "application_id") == schema.APPLICATION_ID
    assert pragma(old, "integrity_check") == "ok"
    assert contents(old) == before
    with closing(sqlite3.connect(old)) as conn:
        assert conn.execute("SELECT DISTINCT queue FROM jobs").fetchall() == [("default",)]
        assert conn.execute("SELECT name, paused FROM queues").fetchall() == []  # it holds pauses only
    fresh = tmp_path / "fresh.sqlite"
    jobkit.SqliteStore(fresh).close()
    assert schema_of(old) == schema_of(fresh)


def test_an_upgraded_file_works_like_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    with jobkit.SqliteStore(path) as store:
        by_name = store.list_jobs(name=NAME)
        assert [j.id for j in by_name] == sorted((j["id"] for j in V1_JOBS if j["job_name"] == NAME), reverse=True)
        assert [j.status for j in store.list_jobs(name=NAME, status=jobkit.JobStatus.COMPLETED)] == ["completed"]
        claimed = store.claim(limit=5, now=T0.replace(hour=1), token="t", lock_until=T0.replace(hour=2))
        assert [j.id for j in claimed] == [V1_JOBS[0]["id"]]
        assert store.counts()[jobkit.JobStatus.RUNNING] == 2
        schedule = store.get_schedule("nightly")
        assert schedule is not None and schedule.cron_expression == "0 3 * * *"


def test_the_new_checks_refuse_what_the_old_ones_did(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    jobkit.SqliteStore(path).close()
    assert "IN (" not in schema_of(path)["jobs"]
    with closing(sqlite3.connect(path)) as conn:
        for sql in (
            "UPDATE jobs SET status = 'lost' WHERE id = ?",
            "UPDATE jobs SET cancel_requested = 2 WHERE id = ?",
            "UPDATE jobs SET completed_at = NULL WHERE id = ?",
            "UPDATE jobs SET status = 'pending' WHERE id = ?",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                conn.execute(sql, (V1_JOBS[2]["id"],))


def test_the_users_own_views_triggers_and_indexes_survive(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE VIEW failed_jobs AS SELECT id, error FROM jobs WHERE status = 'failed';
        CREATE INDEX my_priority_idx ON jobs (priority);
        CREATE TABLE audit (job_id TEXT);
        CREATE TRIGGER jobs_audit AFTER UPDATE OF status ON jobs BEGIN INSERT INTO audit VALUES (new.id); END;
        """
    )
    conn.close()
    mine = {
        name: sql for name, sql in schema_of(path).items() if name in ("failed_jobs", "my_priority_idx", "jobs_audit")
    }

    with jobkit.SqliteStore(path) as store:
        store.claim(limit=1, now=T0.replace(hour=1), token="t", lock_until=T0.replace(hour=2))

    after = schema_of(path)
    assert {name: after[name] for name in mine} == mine
    assert "IN (" not in after["jobs"]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT id FROM failed_jobs").fetchall() == [(V1_JOBS[3]["id"],)]
        assert conn.execute("SELECT job_id FROM audit").fetchall() == [(V1_JOBS[0]["id"],)]


def test_a_jobs_table_changed_by_hand_keeps_its_definition(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE jobs ADD COLUMN note TEXT")
    conn.close()
    table = schema_of(path)["jobs"]

    with jobkit.SqliteStore(path) as store:
        assert len(store.list_jobs(name=NAME)) == 4

    after = schema_of(path)
    queue = (
        " queue TEXT NOT NULL DEFAULT 'default' CHECK (length(queue) > 0), unique_key TEXT, depends_on TEXT,"
        " waiting_for INTEGER NOT NULL DEFAULT 0 CHECK (waiting_for >= 0),"
        " has_dependents INTEGER NOT NULL DEFAULT 0 CHECK (has_dependents = 0 OR has_dependents = 1),"
    )
    assert after["jobs"] == table.replace(" note TEXT,", f" note TEXT,{queue}")  # its CHECKs are left alone
    assert after["jobs_name_idx"] == NAME_INDEX_TODAY
    assert pragma(path, "integrity_check") == "ok"


def test_the_first_layout_is_known_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    with closing(sqlite3.connect(path)) as conn:
        (table,) = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'jobs'").fetchone()
    assert table == migrations._FIRST_TABLE_SQL


def write_lock_held(path: Path) -> apsw.Connection:
    """Another connection holding *path*'s write lock until it is closed.

    Through APSW, the SQLite jobkit uses: two copies of SQLite in one process do not see
    each other's locks (POSIX locks belong to the process).
    """
    holder = apsw.Connection(str(path))
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_file_with_nothing_left_to_upgrade_opens_without_writing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("ALTER TABLE jobs ADD COLUMN note TEXT")  # not jobkit's text: its CHECKs stay
    jobkit.SqliteStore(path).close()  # rebuilds the name index
    # With another writer holding the lock, an open that wrote would wait, then warn.
    with closing(write_lock_held(path)), jobkit.SqliteStore(path, busy_timeout=0.2) as store:
        assert len(store.list_jobs(name=NAME)) == 4
    assert "older indexes" not in caplog.text


@pytest.fixture
def defensive() -> Iterator[None]:
    """Every APSW connection opened meanwhile runs in SQLite's defensive mode."""

    def hook(conn: apsw.Connection) -> None:
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)

    apsw.connection_hooks.append(hook)
    try:
        yield
    finally:
        apsw.connection_hooks.remove(hook)


@pytest.mark.usefixtures("defensive")
def test_in_defensive_mode_only_the_name_index_is_upgraded_and_only_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    jobkit.SqliteStore(path).close()
    after = schema_of(path)
    assert after["jobs_name_idx"] == NAME_INDEX_TODAY
    assert "status IN (" in after["jobs"]  # writable_schema is refused here: the CHECKs stay as they were
    with closing(write_lock_held(path)):
        jobkit.SqliteStore(path, busy_timeout=0.2).close()
    assert "older indexes" not in caplog.text
    assert pragma(path, "integrity_check") == "ok"


def test_without_upgrade_an_older_file_is_refused_untouched_naming_migrate(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    before = schema_of(path), contents(path)
    with pytest.raises(
        jobkit.StoreError,
        match=rf"schema version 1, this jobkit needs {schema.SCHEMA_VERSION}; run python -m jobkit migrate",
    ):
        jobkit.SqliteStore(path, create=False, upgrade=False)
    assert (schema_of(path), contents(path)) == before
    with jobkit.SqliteStore(path, create=False) as store:  # upgrade=True, the default
        assert [j.id for j in store.list_jobs(status=jobkit.JobStatus.PENDING)] == [V1_JOBS[0]["id"]]


def test_the_admin_command_does_not_change_an_older_file_and_says_to_migrate(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    before = schema_of(path)
    for args in (["status", str(path)], ["cancel", str(path), "no-such-job"]):
        done = subprocess.run(
            [sys.executable, "-m", "jobkit", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, done.stderr
        assert "run python -m jobkit migrate TARGET to upgrade it" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert schema_of(path) == before
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", "migrate", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and f"upgraded from version 1 to {schema.SCHEMA_VERSION}" in done.stdout, (
        done.stdout + done.stderr
    )


OPEN = """
import sys
import jobkit
jobkit.SqliteStore(sys.argv[1]).close()
"""


def test_processes_starting_together_all_open_it_and_agree(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    make_v1(path)
    before = contents(path)
    starters = [
        subprocess.Popen([sys.executable, "-c", OPEN, str(path)], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    for starter in starters:
        _, err = starter.communicate(timeout=60)
        assert starter.returncode == 0, err
    assert contents(path) == before
    fresh = tmp_path / "fresh.sqlite"
    jobkit.SqliteStore(fresh).close()
    assert schema_of(path) == schema_of(fresh)


def test_the_steps_run_in_order_up_to_this_version() -> None:
    versions = [step.version for step in migrations.STEPS]
    assert versions == sorted(versions)
    assert migrations.STEPS[0].apply is migrations.build_schema
    assert [s.version for s in migrations.STEPS if s.needed is None][-1] == schema.SCHEMA_VERSION


def make_version(path: Path, version: int) -> None:
    """A file as jobkit's schema *version* left it (the steps up to it), holding V1_JOBS."""
    make_v1(path)
    conn = apsw.Connection(str(path))
    conn.execute("BEGIN IMMEDIATE")
    for step in migrations.STEPS:
        if step.needed is None and 1 < step.version <= version:
            step.apply(conn)
        elif step.needed is not None:
            step.apply(conn)  # the first layout's CHECKs and name index, as version 1 has them today
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("COMMIT")
    conn.close()


def test_a_version_3_file_gets_the_creation_index_with_every_row_kept(tmp_path: Path) -> None:
    old = tmp_path / "v3.sqlite"
    make_version(old, 3)
    before = contents(old)
    assert "jobs_created_idx" not in schema_of(old)
    with pytest.raises(jobkit.StoreError, match=r"schema version 3, this jobkit needs 6; run python -m jobkit migrate"):
        jobkit.SqliteStore(old, upgrade=False)
    assert "jobs_created_idx" not in schema_of(old)

    with jobkit.SqliteStore(old) as store:
        listed = store.list_jobs(created_from=T0.replace(year=2025))
        assert [j.id for j in listed] == sorted((str(j["id"]) for j in V1_JOBS), reverse=True)

    assert pragma(old, "user_version") == schema.SCHEMA_VERSION
    assert pragma(old, "integrity_check") == "ok"
    assert contents(old) == before
    assert schema_of(old)["jobs_created_idx"] == "CREATE INDEX jobs_created_idx ON jobs (created_at, id)"
    fresh = tmp_path / "fresh.sqlite"
    jobkit.SqliteStore(fresh).close()
    assert schema_of(old) == schema_of(fresh)


def test_a_version_4_file_lists_by_name_and_failed_jobs_in_creation_order_with_every_row_kept(tmp_path: Path) -> None:
    old = tmp_path / "v4.sqlite"
    make_version(old, 4)
    before = contents(old)
    assert schema_of(old)["jobs_name_idx"] == " ".join(migrations._NAME_INDEX_SQL.split())
    assert "jobs_unhappy_idx" not in schema_of(old)
    with jobkit.SqliteStore(old) as store:
        by_name = store.list_jobs(name=NAME)
        assert [j.id for j in by_name] == sorted((j["id"] for j in V1_JOBS if j["job_name"] == NAME), reverse=True)
        failed = store.list_jobs(status=jobkit.JobStatus.FAILED)
        assert [j.id for j in failed] == sorted(
            (str(j["id"]) for j in V1_JOBS if j["status"] == "failed"), reverse=True
        )
    assert pragma(old, "user_version") == schema.SCHEMA_VERSION
    assert pragma(old, "integrity_check") == "ok"
    assert contents(old) == before
    assert schema_of(old)["jobs_name_idx"] == NAME_INDEX_TODAY
    fresh = tmp_path / "fresh.sqlite"
    jobkit.SqliteStore(fresh).close()
    assert schema_of(old) == schema_of(fresh)


def test_a_version_5_file_marks_the_jobs_others_run_after_and_their_ends_still_settle_them(tmp_path: Path) -> None:
    """Version 6 fires the dependents' triggers on a mark (has_dependents): the parents already in
    a file get it as it upgrades, so that their completion frees, and their failure cancels, the
    jobs waiting on them, as before."""
    old = tmp_path / "v5.sqlite"
    make_version(old, 5)
    parents = {"ok": job(10, "pending", job_name="p:ok"), "bad": job(11, "pending", job_name="p:bad", max_attempts=1)}
    children = {
        key: job(20 + n, "pending", depends_on=f'["{parent["id"]}"]', waiting_for=1)
        for n, (key, parent) in enumerate(parents.items())
    }
    with closing(sqlite3.connect(old)) as conn:
        for row in [*parents.values(), *children.values()]:
            conn.execute(
                f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
        for key, parent in parents.items():
            conn.execute("INSERT INTO job_deps VALUES (?, ?)", (parent["id"], children[key]["id"]))
        conn.commit()

    with jobkit.SqliteStore(old) as store:
        with closing(sqlite3.connect(old)) as conn:
            marked = conn.execute("SELECT id FROM jobs WHERE has_dependents = 1 ORDER BY id").fetchall()
        assert marked == [(parents["ok"]["id"],), (parents["bad"]["id"],)]
        now = T0.replace(year=2027)
        for key, parent in parents.items():
            claimed = store.claim_job(str(parent["id"]), now=now, token=key, lock_until=now.replace(hour=1))
            assert claimed is not None
        store.finish(
            [
                Complete(str(parents["ok"]["id"]), "ok", "1", at=now),
                Fail(str(parents["bad"]["id"]), "bad", "E", None, at=now),
            ]
        )
        freed, cancelled = (store.get(str(children[key]["id"])) for key in ("ok", "bad"))
    assert freed is not None and freed.status is jobkit.JobStatus.PENDING and freed.waiting_for == 0
    assert cancelled is not None and cancelled.status is jobkit.JobStatus.CANCELLED
    assert pragma(old, "integrity_check") == "ok"
    fresh = tmp_path / "fresh.sqlite"
    jobkit.SqliteStore(fresh).close()
    assert schema_of(old) == schema_of(fresh)


def test_a_dependency_written_as_an_older_jobkit_writes_it_marks_its_parent(tmp_path: Path) -> None:
    """A process of the last version, still running as a newer one upgrades the file, adds dependents
    with a plain INSERT into job_deps: the schema marks the parent itself, so its end frees them."""
    path = tmp_path / "jobs.sqlite"
    jobkit.SqliteStore(path).close()
    parent, child = job(30, "pending", job_name="p:old"), job(31, "pending", waiting_for=1)
    with closing(sqlite3.connect(path)) as conn:  # what a version 5 jobkit's add writes
        for row in (parent, child):
            conn.execute(
                f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
        conn.execute("INSERT INTO job_deps VALUES (?, ?)", (parent["id"], child["id"]))
        conn.commit()
        assert conn.execute("SELECT has_dependents FROM jobs WHERE id = ?", (parent["id"],)).fetchall() == [(1,)]
    with jobkit.SqliteStore(path) as store:
        now = T0.replace(year=2027)
        assert store.claim_job(str(parent["id"]), now=now, token="t", lock_until=now.replace(hour=1)) is not None
        store.finish([Complete(str(parent["id"]), "t", "1", at=now)])
        freed = store.get(str(child["id"]))
    assert freed is not None and freed.status is jobkit.JobStatus.PENDING and freed.waiting_for == 0
