"""The worker's numeric options out of range are usage errors (exit 2, one line), before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobkit
from jobkit.model import JobStatus
from jobkit.worker import main
from tests import worker_jobs

HUGE = "9" * 30


@pytest.mark.parametrize(
    "argv",
    [
        ["--concurrency", HUGE],
        ["--processes", HUGE],
        ["--lock-timeout", "1e300"],
        ["--poll-interval", "1e300"],
        ["--grace", "1e300"],
        ["--grace", "nan"],
        ["--lock-timeout", "inf"],
        ["--unresolved-backoff", "inf"],
    ],
    ids=lambda argv: f"{argv[0]}={argv[1][:6]}",
)
def test_numbers_out_of_range_are_refused_with_exit_code_2(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(db) as store:
        worker_jobs.add.later_many([{"a": n} for n in range(3)], store)
    assert main([str(db), "--burst", "--jobs", "tests.worker_jobs", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"jobkit.worker: error: {argv[0]} must be"), err
    with jobkit.SqliteStore(db) as store:
        assert store.counts()[JobStatus.PENDING] == 3, "a refused command ran jobs"
