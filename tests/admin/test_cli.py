"""The command line of `python -m jobkit`: opening TARGET, usage and input errors, exit codes, --help.

Bad input gives one line on stderr, a non-zero exit code (2 for usage and input, 1 for a
command that cannot do what was asked), and changes nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from jobkit.admin.cli import parse_finished
from tests.admin.support import (
    ADD,
    COMPLETED,
    FAILED,
    ROOT,
    SUBCOMMANDS,
    TIMEOUT,
    ok,
    ok_json,
    refused,
    refused_here,
    snapshot,
)
from tests.admin_jobs import Queue


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["status"], ["list"], ["show", "x"], ["cancel", "x"], ["purge", "--status", "failed", "--older-than", "1d"]],
)
def test_a_missing_database_is_refused_and_not_created(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "nothing.sqlite"
    error = refused(2, args[0], db, *args[1:], cwd=tmp_path)
    assert f"{db}: no such database file" in error
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_url_opens_the_same_database(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    url = f"sqlite:///{db.resolve()}"
    assert [row["id"] for row in ok_json("list", url, "--status", "failed")] == [q.failed]
    assert ok_json("cancel", url, q.pending) == {"cancelled": [q.pending], "stopping": []}


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("redis://localhost/0", "unknown store scheme 'redis'"),
        ("sqlite://relative/jobs.sqlite", "absolute path"),
    ],
)
def test_a_target_that_names_no_store_is_one_line_and_exit_2(tmp_path: Path, target: str, words: str) -> None:
    assert words in refused(2, "status", target, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    refused(2, "status", tmp_path / "no" / "such" / "jobs.sqlite")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"just some notes\n", b""])
def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path, content: bytes) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    for args in (["status"], ["retry", "--failed"], ["purge", "--status", "failed", "--older-than", "0s"]):
        error = refused(2, args[0], notes, *args[1:])
        assert str(notes) in error and "left untouched" in error
    assert notes.read_bytes() == content
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE jobs (id TEXT); INSERT INTO jobs VALUES ('mine')")
    conn.close()
    content = db.read_bytes()
    assert "did not create" in refused(2, "list", db)
    assert "did not create" in refused(2, "cancel", db, "mine")
    assert db.read_bytes() == content


def test_unknown_ids_are_refused_and_nothing_changes(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    before = snapshot(db)
    assert "no job with id 'nope'" in refused(1, "show", db, "nope")
    assert "no job with id 'nope'" in refused(1, "cancel", db, q.pending, "nope")
    assert "no jobs with ids 'nope', 'nada'" in refused(1, "retry", db, q.failed, "nope", "nada")
    assert snapshot(db) == before


def test_bad_durations_and_statuses_are_refused_and_nothing_changes(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    before = snapshot(db)
    error = refused(2, "purge", db, "--status", "completed", "--older-than", "soon")
    assert "purge: argument --older-than: bad duration 'soon'" in error
    assert "bad status 'done'" in refused(2, "purge", db, "--status", "done", "--older-than", "1d")
    assert "cannot purge pending jobs" in refused(2, "purge", db, "--status", "completed,pending", "--older-than", "1d")
    assert "bad status 'done'" in refused(2, "list", db, "--status", "done")
    assert snapshot(db) == before


# The rest of the usage errors run in this process (main() is what __main__ calls): same checks, faster.
def test_more_bad_values_are_one_line(queue: tuple[Path, Queue], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = queue
    before = snapshot(db)
    for duration in ("-1d", "7x", "", "inf", "nan"):
        error = refused_here(capsys, 2, "purge", db, "--status", "completed", f"--older-than={duration}")
        assert "bad duration" in error, error
    assert "required: --older-than" in refused_here(capsys, 2, "purge", db, "--status", "completed")
    assert "required: --status" in refused_here(capsys, 2, "purge", db, "--older-than", "1d")
    assert "at least 1" in refused_here(capsys, 2, "list", db, "--limit", "0")
    assert "at least 1" in refused_here(capsys, 2, "watch", db, "--iterations", "none")
    assert "seconds" in refused_here(capsys, 2, "watch", db, "--interval", "-1")
    assert "not allowed with" in refused_here(capsys, 2, "watch", db, "--once", "--iterations", "2")
    assert snapshot(db) == before


def test_usage_errors_are_one_line(queue: tuple[Path, Queue], capsys: pytest.CaptureFixture[str]) -> None:
    db, q = queue
    before = snapshot(db)
    assert "retry: give the ids" in refused_here(capsys, 2, "retry", db)
    assert "not both" in refused_here(capsys, 2, "retry", db, q.failed, "--failed")
    assert "--name goes with --failed" in refused_here(capsys, 2, "retry", db, q.failed, "--name", ADD)
    assert "invalid choice: 'frobnicate'" in refused_here(capsys, 2, "frobnicate", db)
    assert "required" in refused_here(capsys, 2)
    assert "required" in refused_here(capsys, 2, "cancel", db)
    assert "unrecognized arguments" in refused_here(capsys, 2, "status", db, "--colour")
    assert snapshot(db) == before


def test_usage_errors_are_found_before_the_database_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "nothing.sqlite"
    assert "retry: give the ids" in refused_here(capsys, 2, "retry", db)
    assert "bad duration" in refused_here(capsys, 2, "purge", db, "--status", "failed", "--older-than", "x")
    assert list(tmp_path.iterdir()) == []


def test_help_lists_every_subcommand() -> None:
    out = ok("--help")
    assert tuple(re.findall(r"^    (\w+)\b", out, re.MULTILINE)) == SUBCOMMANDS


def test_each_subcommands_help_names_the_target() -> None:
    for name in SUBCOMMANDS:
        out = ok(name, "--help")
        usage = " ".join(out.split("\n\n")[0].split())
        assert usage.startswith(f"usage: python -m jobkit {name} [-h] [--json]") and " TARGET" in usage, usage
        assert "a path or sqlite:///path" in out, out


def test_the_readme_shows_every_subcommand_with_an_example() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The admin command") :]
    section = section[: section.index("\n## ")]
    for name in SUBCOMMANDS:
        assert f"| `{name} TARGET" in section, f"{name} missing from the table"
        assert f"$ python -m jobkit {name} jobs.sqlite" in section, f"{name} has no example"


def test_the_admin_command_does_not_import_the_worker() -> None:
    code = "import sys, jobkit.admin, jobkit.__main__; assert 'jobkit.worker' not in sys.modules, 'imported'"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr


def test_parse_finished() -> None:
    assert parse_finished("completed,Failed") == [COMPLETED, FAILED]
    with pytest.raises(ValueError, match="cannot purge running"):
        parse_finished("running")
