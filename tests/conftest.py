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


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each test that takes ``store`` runs on MemoryStore, SqliteStore and PostgresStore (a schema of its own)."""
    made: Store
    if request.param == "memory":
        made = jobkit.MemoryStore()
    elif request.param == "sqlite":
        made = jobkit.SqliteStore(tmp_path / "jobs.sqlite")
    else:
        made = request.getfixturevalue("pg_schema_store")
    with made:
        yield made
