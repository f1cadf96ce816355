"""The PostgreSQL test infrastructure (tests/pg.py): the session's throwaway database, private clusters, no-server."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.pg import (
    ENV_PROBE,
    ENV_URL,
    NO_SERVER,
    Cluster,
    database_exists,
    did_not_run,
    fresh_schema_name,
    throwaway_database,
    unreachable,
    with_dbname,
)
from tests.support import COMMAND_TIMEOUT, ROOT, wait_until

# A session of its own: a plain test, one on the session database, one marked, and a store fixture's two cases.
SCENE = """
import os
import psycopg
import pytest

KEPT = []


def test_plain():
    pass


def test_database(pg_dsn, pg_admin_dsn):
    conn = psycopg.connect(pg_dsn)
    KEPT.append(conn)  # left open: the drop at the end must still succeed
    name, data = conn.execute("SELECT current_database(), current_setting('data_directory')").fetchone()
    with open(os.environ["SCENE_OUT"], "w") as out:
        out.write(f"{name}\\n{pg_admin_dsn}\\n{data}\\n")


@pytest.mark.postgres
def test_marked():
    pass


@pytest.fixture(params=["memory", "postgres"])
def store(request):
    return request.param


def test_store(store):
    pass
"""


def session(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run SCENE in a pytest of its own with tests/pg.py as its plugin and *env* as its only PostgreSQL settings."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_scene.py").write_text(SCENE)
    out = tmp_path / "scene.out"
    clean = {key: value for key, value in os.environ.items() if not key.startswith("JOBKIT_") and key != "CI"}
    clean.update(PYTHONPATH=str(ROOT), SCENE_OUT=str(out), **env)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.pg", "-p", "no:cacheprovider", *args, "test_scene.py"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return done, out


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound and not listening, so a connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


# -- the session's throwaway database ---------------------------------------------------
def test_the_session_database_is_a_throwaway_one(pg_dsn: str, pg_admin_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    with psycopg.connect(pg_admin_dsn) as conn:
        admin = conn.execute("SELECT current_database()").fetchone()
    assert row is not None and admin is not None
    assert re.fullmatch(r"jobkit_test_[0-9a-f]{12}", row[0])
    assert row[0] != admin[0]
    assert database_exists(pg_admin_dsn, row[0])


@pytest.mark.slow  # a pytest session of its own
def test_the_session_database_is_dropped_when_the_session_ends(tmp_path: Path, pg_admin_dsn: str) -> None:
    done, out = session(tmp_path, "-q", **{ENV_URL: pg_admin_dsn})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
    name = out.read_text().splitlines()[0]
    assert name.startswith("jobkit_test_")
    assert not database_exists(pg_admin_dsn, name)


def test_a_throwaway_database_is_dropped_after_even_with_a_session_open(pg_admin_dsn: str) -> None:
    with throwaway_database(pg_admin_dsn) as dsn:
        name = dsn.rsplit("/", 1)[1]
        kept = psycopg.connect(dsn, autocommit=True)
        assert re.fullmatch(r"jobkit_[0-9a-f]{12}", name)
        assert database_exists(pg_admin_dsn, name)
    assert not database_exists(pg_admin_dsn, name)
    with pytest.raises(psycopg.OperationalError):
        kept.execute("SELECT 1")
    kept.close()


def test_fresh_schema_names_are_plain_identifiers_of_their_own() -> None:
    names = {fresh_schema_name() for _ in range(100)}
    assert len(names) == 100
    assert all(re.fullmatch(r"t_[0-9a-f]{12}", name) for name in names)


def test_a_database_name_replaces_the_one_in_a_url_or_a_conninfo() -> None:
    assert with_dbname("postgresql://u@h:5/postgres?sslmode=disable", "x") == "postgresql://u@h:5/x?sslmode=disable"
    assert with_dbname("postgresql://u@h", "x") == "postgresql://u@h/x"
    assert psycopg.conninfo.conninfo_to_dict(with_dbname("host=h dbname=postgres", "x")) == {"host": "h", "dbname": "x"}


# -- private clusters --------------------------------------------------------------------
def accepts(dsn: str) -> bool:
    return unreachable(dsn) is None


def test_a_throwaway_cluster_stops_starts_and_keeps_its_data(throwaway_cluster: Cluster) -> None:
    cluster = throwaway_cluster
    assert cluster.port != 5432
    conn = psycopg.connect(cluster.dsn, autocommit=True)
    conn.execute("CREATE TABLE kept (n int)")
    conn.execute("INSERT INTO kept VALUES (7)")

    cluster.stop()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    assert not accepts(cluster.dsn)
    cluster.start()
    wait_until(lambda: accepts(cluster.dsn), "the cluster to accept connections after start()")

    cluster.restart("immediate")  # a crash: what was committed is still there
    wait_until(lambda: accepts(cluster.dsn), "the cluster to accept connections after restart()")
    with psycopg.connect(cluster.dsn) as again:
        assert again.execute("SELECT n FROM kept").fetchall() == [(7,)]
    conn.close()


def test_a_cluster_is_stopped_and_deleted_when_done(pg_binaries: Path) -> None:
    with Cluster.create(pg_binaries) as cluster:
        assert accepts(cluster.dsn)
        assert (cluster.data / "PG_VERSION").exists()
    assert not cluster.root.exists()
    assert not accepts(cluster.dsn)


@pytest.mark.slow  # a pytest session of its own
def test_without_a_local_server_the_session_runs_on_a_throwaway_cluster(tmp_path: Path, pg_binaries: Path) -> None:
    done, out = session(tmp_path, "-v", **{ENV_PROBE: "initdb"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
    assert "PostgreSQL tests ran on a throwaway cluster" in done.stdout
    _name, admin, data = out.read_text().splitlines()
    assert not admin.endswith(":5432/postgres")
    assert not accepts(admin)
    assert not Path(data).exists()


# -- no server ----------------------------------------------------------------------------
@pytest.mark.slow  # a pytest session of its own
def test_without_a_server_the_postgres_tests_are_deselected_with_one_line(tmp_path: Path) -> None:
    done, _ = session(tmp_path, "-q", **{ENV_PROBE: "0"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert did_not_run(NO_SERVER, 3) in done.stdout
    assert done.stdout.count("PostgreSQL tests did not run") == 1
    assert "2 passed, 3 deselected" in done.stdout
    assert "skipped" not in done.stdout


@pytest.mark.slow  # a pytest session of its own
def test_an_unreachable_setting_is_named_not_replaced_by_another_server(tmp_path: Path, closed_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port}/postgres"
    done, _ = session(tmp_path, "-q", **{ENV_URL: url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"PostgreSQL tests did not run: {ENV_URL}={url} did not answer (Connection refused); 3 tests deselected"
        in done.stdout
    )
    assert "2 passed, 3 deselected" in done.stdout


@pytest.mark.slow  # a pytest session of its own
def test_under_ci_no_server_fails_the_session(tmp_path: Path) -> None:
    done, _ = session(tmp_path, "-q", CI="true", **{ENV_PROBE: "0"})
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "PostgreSQL tests did not run: no server" in output
    assert "under CI=true they must run" in output
    assert "passed" not in output
