from __future__ import annotations

from pathlib import Path

import pytest

import jobkit
from tests import admin_jobs
from tests.admin_jobs import Queue


@pytest.fixture
def queue(tmp_path: Path) -> tuple[Path, Queue]:
    """A database holding one job in every status and one schedule."""
    db = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(db) as store:
        return db, admin_jobs.populate(store)
