"""Shared fixtures: one ``store`` fixture runs each contract test on every store; helpers live in tests/support.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import jobkit
from jobkit.store import Store
from tests.support import FakeClock

# PostgreSQL: the session's server and throwaway database (pg_dsn, pg_admin_dsn), private clusters, the marker.
pytest_plugins = ["tests.pg"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each test that takes ``store`` runs once on MemoryStore and once on SqliteStore."""
    made: Store = jobkit.MemoryStore() if request.param == "memory" else jobkit.SqliteStore(tmp_path / "jobs.sqlite")
    with made:
        yield made
