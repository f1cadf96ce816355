"""A file jobkit refuses is left byte for byte as it was, side files included; a jobkit file still recovers.

SQLite recovers a file as it opens it: a -wal is replayed into the main file and
deleted, a hot rollback journal is rolled back. These scenes are real files left as a
crash leaves them (copied while their writer still holds them open), opened through the
library, ``python -m jobkit.worker`` and ``python -m jobkit status``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import jobkit
from jobkit.stores.sqlite import SCHEMA_VERSION
from tests.support import COMMAND_TIMEOUT, ROOT, command, make_job

Scene = Callable[[Path, Path], None]  # (a folder to build in, the path the scene leaves its file at)


def files(folder: Path) -> dict[str, bytes]:
    """Every file in *folder*, by name, with its bytes."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def copy_as_crashed(source: Path, target: Path) -> None:
    """Copy *source* and its side files to *target* while their writer holds them: what a crash leaves."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


def wal_writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # every commit stays in the -wal
    return conn


# -- scenes a refused file is left in ---------------------------------------------------
def foreign_wal(build: Path, path: Path) -> None:
    """Another program's WAL database, its tables and rows only in the -wal."""
    conn = wal_writer(build / "notes.db")
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    copy_as_crashed(build / "notes.db", path)
    conn.close()


def foreign_wal_without_shm(build: Path, path: Path) -> None:
    """As :func:`foreign_wal`, without the -shm: SQLite would make one to recover the -wal."""
    foreign_wal(build, path)
    Path(f"{path}-shm").unlink()


def newer_in_wal(build: Path, path: Path) -> None:
    """A jobkit file that a newer jobkit marked with its version, the mark only in the -wal."""
    jobkit.SqliteStore(build / "jobs.sqlite").close()
    conn = wal_writer(build / "jobs.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    copy_as_crashed(build / "jobs.sqlite", path)
    conn.close()


def foreign_hot_journal(build: Path, path: Path) -> None:
    """Another program's rollback-journal database, left in the middle of a transaction."""
    source = build / "notes.db"
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.executemany("INSERT INTO notes VALUES (?)", [("keep me " * 50,)] * 400)
    conn.execute("PRAGMA cache_size = 1")  # the change spills to the main file before COMMIT
    conn.execute("BEGIN")
    conn.execute("UPDATE notes SET body = 'half done'")
    copy_as_crashed(source, path)
    conn.execute("ROLLBACK")
    conn.close()
    assert Path(f"{path}-journal").stat().st_size > 0


REFUSED: list[tuple[Scene, type[jobkit.StoreError], str]] = [
    (foreign_wal, jobkit.NotAJobkitDatabase, "a SQLite database that jobkit did not create"),
    (foreign_wal_without_shm, jobkit.NotAJobkitDatabase, "a SQLite database that jobkit did not create"),
    (newer_in_wal, jobkit.SchemaTooNew, f"schema version {SCHEMA_VERSION + 1} is newer"),
    (foreign_hot_journal, jobkit.NotAJobkitDatabase, "a SQLite database that jobkit did not create"),
]
IDS = [scene.__name__ for scene, *_ in REFUSED]


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    build, here = tmp_path / "build", tmp_path / "here"
    build.mkdir()
    here.mkdir()
    return build, here


@pytest.mark.parametrize(("scene", "error", "words"), REFUSED, ids=IDS)
@pytest.mark.parametrize("opener", [jobkit.SqliteStore, jobkit.open_store], ids=["SqliteStore", "open_store"])
def test_the_library_refuses_it_and_leaves_every_file_as_it_was(
    folders: tuple[Path, Path], scene: Scene, error: type[jobkit.StoreError], words: str, opener: Callable[..., object]
) -> None:
    build, here = folders
    path = here / "jobs.sqlite"
    scene(build, path)
    before = files(here)
    assert len(before) >= 2, before.keys()  # the scene left side files to recover

    with pytest.raises(error, match=words) as caught:
        opener(path)
    assert "untouched" in str(caught.value)
    assert files(here) == before  # the same files, byte for byte, while the error is held
    del caught
    assert files(here) == before


@pytest.mark.parametrize(("scene", "error", "words"), REFUSED, ids=IDS)
@pytest.mark.parametrize(
    "args",
    [("jobkit.worker", "--once"), ("jobkit.worker", "--burst"), ("jobkit", "status"), ("jobkit", "list")],
    ids=["worker-once", "worker-burst", "status", "list"],
)
def test_the_commands_refuse_it_in_one_line_and_leave_every_file_as_it_was(
    folders: tuple[Path, Path], scene: Scene, error: type[jobkit.StoreError], words: str, args: tuple[str, str]
) -> None:
    build, here = folders
    path = here / "jobs.sqlite"
    scene(build, path)
    before = files(here)
    module, verb = args
    done = command(module, *((verb, path) if module == "jobkit" else (path, verb)))
    assert done.returncode == 2, done
    assert words in done.stderr and "untouched" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert files(here) == before


# -- jobkit files still open, and recover -------------------------------------------------
def test_a_jobkit_file_left_by_a_crash_recovers_its_wal(folders: tuple[Path, Path]) -> None:
    build, here = folders
    path = here / "jobs.sqlite"
    source = jobkit.SqliteStore(build / "jobs.sqlite")
    job = make_job("j-only-in-the-wal")
    source.add([job])
    copy_as_crashed(build / "jobs.sqlite", path)
    source.close()
    assert Path(f"{path}-wal").stat().st_size > 0

    done = command("jobkit", "show", path, job.id)
    assert done.returncode == 0, done
    assert job.id in done.stdout
    with jobkit.SqliteStore(path, create=False) as store:
        assert store.get(job.id) == job


def test_a_torn_frame_in_the_wal_counts_for_nothing_as_sqlite_recovers_it(folders: tuple[Path, Path]) -> None:
    """A newer version's mark in a frame whose checksum fails: SQLite drops it, so the file is jobkit's."""
    build, here = folders
    path = here / "jobs.sqlite"
    newer_in_wal(build, path)
    wal = Path(f"{path}-wal")
    data = bytearray(wal.read_bytes())
    data[32 + 24 + 3000] ^= 0xFF  # in page 1's unused space, within the frame's checksum
    wal.write_bytes(bytes(data))

    with jobkit.SqliteStore(path, create=False, upgrade=False) as store:
        assert store.list_jobs() == []
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_a_blank_wal_file_is_refused_untouched_where_creating_is_not_allowed(folders: tuple[Path, Path]) -> None:
    build, here = folders
    path = here / "jobs.sqlite"
    conn = wal_writer(build / "blank.db")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("DROP TABLE t")  # blank again, as the last commit in the -wal says
    copy_as_crashed(build / "blank.db", path)
    conn.close()
    before = files(here)
    with pytest.raises(jobkit.NotAJobkitDatabase, match="an empty SQLite database without jobkit's tables"):
        jobkit.SqliteStore(path, create=False)
    assert files(here) == before
    with jobkit.SqliteStore(path) as store:  # creating is allowed: it becomes a jobkit file
        assert store.list_jobs() == []


# -- what is not a regular file ----------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [("jobkit", "status"), ("jobkit.worker", "--once"), ("jobkit.worker", "--burst")],
    ids=["status", "worker-once", "worker-burst"],
)
@pytest.mark.parametrize("which", ["", "-wal", "-shm"], ids=["fifo", "fifo-wal", "fifo-shm"])
def test_a_named_pipe_is_refused_at_once_in_one_line(tmp_path: Path, args: tuple[str, str], which: str) -> None:
    path = tmp_path / "jobs.sqlite"
    if which:
        jobkit.SqliteStore(path).close()
    os.mkfifo(f"{path}{which}")
    module, verb = args
    done = command(module, *((verb, path) if module == "jobkit" else (path, verb)))
    assert done.returncode == 2, done
    assert f"{path}{which}: is a named pipe (FIFO), not a database file" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


def test_the_library_refuses_a_named_pipe_and_a_device(tmp_path: Path) -> None:
    fifo = tmp_path / "jobs.sqlite"
    os.mkfifo(fifo)
    script = (
        "import sys, jobkit\n"
        "for target in sys.argv[1:]:\n"
        "    try:\n"
        "        jobkit.open_store(target)\n"
        "    except jobkit.NotAJobkitDatabase as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(fifo), os.devnull],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        f"{fifo}: is a named pipe (FIFO), not a database file; left untouched",
        f"{os.devnull}: is a character device, not a database file; left untouched",
    ]
