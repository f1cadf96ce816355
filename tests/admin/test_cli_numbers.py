"""Numbers past what the database or a timer can take are usage errors (exit 2, one line), not crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobkit
from tests.admin.support import refused_here, snapshot

HUGE = "9" * 30


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["list", "{db}", "--limit", HUGE], "--limit"),
        (["list", "{db}", "--limit", "9" * 5000], "--limit"),
        (["watch", "{db}", "--once", "--interval", "1e300"], "--interval"),
        (["watch", "{db}", "--iterations", HUGE, "--interval", "0"], "--iterations"),
        (["purge", "{db}", "--status", "completed", "--older-than", "999999999d"], "--older-than"),
    ],
    ids=["limit", "limit-digits", "interval", "iterations", "older-than"],
)
def test_huge_numbers_are_usage_errors_that_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], names: str
) -> None:
    db = tmp_path / "jobs.sqlite"
    jobkit.SqliteStore(db).close()
    before = snapshot(db)
    err = refused_here(capsys, 2, *[a.replace("{db}", str(db)) for a in args])
    assert names in err and "Error" not in err, err
    assert snapshot(db) == before
