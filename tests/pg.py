"""PostgreSQL for the tests: a server found or started, a throwaway database per session, private clusters.

Registered by conftest.py as a plugin (its hooks and fixtures). The server, in this order:

1. ``JOBKIT_TEST_POSTGRES``, a libpq URL of a server where the tests may create databases (``.ci/run`` sets it).
   When it is set it is the only candidate: a wrong setting is reported, not papered over by another server.
2. ``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers within two seconds.
3. A throwaway cluster initdb'd from local PostgreSQL binaries, stopped and deleted when the session ends.

``JOBKIT_TEST_POSTGRES_PROBE=0`` turns off 2 and 3, ``=initdb`` turns off 2 only (this module's own tests use both).

A test needs PostgreSQL when it takes ``pg_dsn``, ``pg_admin_dsn``, ``pg_schema_store``, ``pg_binaries`` or
``throwaway_cluster`` (directly or through other fixtures), is marked ``postgres``, or is the ``postgres`` case of a
fixture named in :data:`PARAMETRIZED`. Without a server such tests are deselected, never skipped, and the session
ends with one line saying so; under ``CI=true`` the session fails instead. The server is looked for only when the
collected tests include one that needs it, so ``pytest tests/unit`` never touches PostgreSQL.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

import jobkit

ENV_URL = "JOBKIT_TEST_POSTGRES"
ENV_PROBE = "JOBKIT_TEST_POSTGRES_PROBE"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT = 2  # seconds a probe waits for a server to answer
PG_CTL_TIMEOUT = 60  # seconds pg_ctl may wait for a start or a stop
NO_DRIVER = "psycopg is not installed (pip install -e '.[postgres]')"
NO_SERVER = f"no server (set {ENV_URL}=postgresql://... or install PostgreSQL)"
SERVER_FIXTURES = frozenset({"pg_dsn", "pg_admin_dsn", "pg_schema_store"})
CLUSTER_FIXTURES = frozenset({"pg_binaries", "throwaway_cluster"})
PARAMETRIZED = frozenset({"store"})  # fixtures whose "postgres" case needs a server
# A private cluster trades durability against an operating-system crash for speed; a crash of PostgreSQL itself
# (immediate stop, SIGKILL) still loses no committed transaction. Pass settings={} for the defaults.
FAST_SETTINGS: Mapping[str, str] = {"fsync": "off", "full_page_writes": "off", "max_connections": "200"}


# -- names and URLs --------------------------------------------------------------------
def fresh_schema_name() -> str:
    """A schema name no other test uses: ``t_`` and 12 hex digits, a plain identifier."""
    return f"t_{uuid.uuid4().hex[:12]}"


def with_dbname(dsn: str, dbname: str) -> str:
    """*dsn* (a URL or key=value conninfo) with its database replaced by *dbname*."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(path=f"/{dbname}"))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, dbname=dbname)


def unreachable(dsn: str) -> str | None:
    """Why *dsn* cannot be connected to within :data:`CONNECT_TIMEOUT`, or None when it can."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        # libpq: 'connection failed: connection to server at "h", port 1 failed: Connection refused' + a hint line
        first = str(exc).strip().split("\n", 1)[0]
        return " ".join(first.rsplit("failed: ", 1)[-1].split()) or type(exc).__name__
    return None


def database_exists(admin_dsn: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop *name* on the server of *admin_dsn*, ending its sessions first (a test may leave one open)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        # FORCE (PostgreSQL 13+) also covers a session that connects between the terminate and the drop.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def throwaway_database(admin_dsn: str, prefix: str = "jobkit_") -> Iterator[str]:
    """A new database on the server of *admin_dsn* (named *prefix* + 12 hex digits): its URL, dropped after."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_dbname(admin_dsn, name)
    finally:
        drop_database(admin_dsn, name)


# -- private clusters ------------------------------------------------------------------
class ClusterError(RuntimeError):
    """A private cluster could not be made, started or stopped; the message holds pg_ctl's words and the log."""


def find_bindir() -> Path | None:
    """A directory holding initdb, pg_ctl and postgres: pg_config's, PATH's, or the newest /usr/lib/postgresql/*."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)  # a symlink in PATH points into the real bindir
    installed = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates += sorted(
        installed, key=lambda p: [int(s) for s in p.parent.name.split(".") if s.isdigit()], reverse=True
    )
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def run_as() -> list[str] | None:
    """The prefix that runs a server command: none as a user, ``runuser -u postgres --`` as root; None if impossible.

    initdb and postgres refuse to run as root.
    """
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--"] if runuser else None


NO_BINARIES = "no PostgreSQL binaries (initdb, pg_ctl) in pg_config --bindir, PATH or /usr/lib/postgresql/*/bin"
NO_USER = "running as root, and no postgres user (or no runuser) to run initdb as"


def cluster_problem() -> str | None:
    """Why no private cluster can be made here, or None."""
    if find_bindir() is None:
        return NO_BINARIES
    if run_as() is None:
        return NO_USER
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Cluster:
    """A private PostgreSQL server: its own data directory and socket in a temp dir, a free port, trust auth.

    ``Cluster.create()`` initdb's and starts it; use it as a context manager (or call :meth:`destroy`) so the
    server stops and the directory goes. :meth:`stop`, :meth:`start` and :meth:`restart` wait until done.
    """

    def __init__(
        self, bindir: Path, prefix: list[str], settings: Mapping[str, str], template: Path | None = None
    ) -> None:
        self.bindir = bindir
        self._prefix = prefix
        self.root = Path(tempfile.mkdtemp(prefix="jobkit_pg_"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.running = False
        try:
            if prefix:  # the server's user must own its directory
                owner = pwd.getpwnam("postgres")
                os.chown(self.root, owner.pw_uid, owner.pw_gid)
            if template is None:
                self._run(
                    self._tool("initdb"),
                    *("-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"),
                )
            else:  # a copy of an initdb'd directory: a tenth of initdb's time
                self._run("cp", "-a", str(template), str(self.data))
            self._configure(settings)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _configure(self, settings: Mapping[str, str]) -> None:
        # Appended lines win over earlier ones, so a copy of a template is configured the same way.
        lines = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            **{key: f"'{value}'" for key, value in settings.items()},
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in lines.items())

    @classmethod
    def create(
        cls, bindir: Path | None = None, *, settings: Mapping[str, str] = FAST_SETTINGS, template: Path | None = None
    ) -> Cluster:
        """A new cluster, started; from a copy of *template* (a data directory) instead of initdb if given.

        Raises :class:`ClusterError` when none can be made here.
        """
        found = bindir or find_bindir()
        prefix = run_as()
        if found is None or prefix is None:
            raise ClusterError(NO_BINARIES if found is None else NO_USER)
        cluster = cls(found, prefix, settings, template)
        try:
            cluster.start()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    @property
    def dsn(self) -> str:
        """The URL of its maintenance database, by TCP on 127.0.0.1."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run(
            self._tool("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(PG_CTL_TIMEOUT), "start"
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: *mode* is pg_ctl's (``fast``, ``immediate`` for a crash, ``smart``)."""
        self._run(self._tool("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", str(PG_CTL_TIMEOUT), "stop")
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        """Stop the server if it runs (immediately: nothing in it is kept) and delete its directory."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.destroy()

    def _tool(self, name: str) -> str:
        return str(self.bindir / name)

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._prefix, tool, *args]
        try:
            subprocess.run(
                command, cwd=self.root, capture_output=True, text=True, timeout=PG_CTL_TIMEOUT + 10, check=True
            )
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ClusterError(
                f"{Path(tool).name} {' '.join(args)} failed: {exc.stderr.strip()}\n{log}".strip()
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{Path(tool).name} {' '.join(args)} took more than {exc.timeout:g}s") from exc


# -- the session's server ---------------------------------------------------------------
@dataclass
class Server:
    """What this session found: the maintenance URL of a server, or why there is none."""

    admin_dsn: str | None = None
    where: str = ""  # for the summary: which of the three candidates it is
    problem: str = NO_SERVER
    cluster: Cluster | None = None
    setup_seconds: dict[str, float] = field(default_factory=dict)


def find_server(env: Mapping[str, str]) -> Server:
    """The server the tests use (see the module docstring); a private cluster it starts is in ``cluster``."""
    if importlib.util.find_spec("psycopg") is None:  # imported only where used, so this can be said
        return Server(problem=NO_DRIVER)
    if url := env.get(ENV_URL):
        why = unreachable(url)
        if why is None:
            return Server(url, where=ENV_URL)
        return Server(problem=f"{ENV_URL}={url} did not answer ({why})")
    probe = env.get(ENV_PROBE, "1")
    if probe == "0":
        return Server()
    if probe != "initdb" and unreachable(LOCAL_URL) is None:
        return Server(LOCAL_URL, where="the local server")
    if cluster_problem() is not None:
        return Server()
    started = time.monotonic()
    try:
        cluster = Cluster.create()
    except ClusterError as exc:
        first = str(exc).splitlines()[0]
        return Server(problem=f"no server (set {ENV_URL}=postgresql://...; a throwaway cluster failed: {first})")
    found = Server(cluster.dsn, where=f"a throwaway cluster from {cluster.bindir}", cluster=cluster)
    found.setup_seconds["cluster"] = time.monotonic() - started
    return found


@dataclass
class Session:
    server: Server | None = None
    deselected: int = 0
    line: str = ""  # the one line of the summary when some did not run


SESSION = pytest.StashKey[Session]()


def _session(config: pytest.Config) -> Session:
    return config.stash.setdefault(SESSION, Session())


def _server(config: pytest.Config) -> Server:
    state = _session(config)
    if state.server is None:
        state.server = find_server(os.environ)
    return state.server


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def needs_server(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    if names & (SERVER_FIXTURES | CLUSTER_FIXTURES) or item.get_closest_marker("postgres"):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(callspec.params.get(name) == "postgres" for name in PARAMETRIZED)


def needs_cluster(item: pytest.Item) -> bool:
    return bool(set(getattr(item, "fixturenames", ())) & CLUSTER_FIXTURES)


def did_not_run(problem: str, count: int, which: str = "PostgreSQL tests", outcome: str = "deselected") -> str:
    """The one line that says which tests did not run, why, and how many."""
    return f"{which} did not run: {problem}; {count} test{'s' if count != 1 else ''} {outcome}"


# -- hooks ------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs a PostgreSQL server (deselected when there is none, outside CI)"
    )


@pytest.hookimpl(trylast=True)  # after -k and -m, so the count is of tests that would have run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needing = [item for item in items if needs_server(item)]
    if not needing:
        return
    for item in needing:
        item.add_marker("postgres")
    server = _server(config)
    if server.admin_dsn is None:
        missing, problem, which = needing, server.problem, "PostgreSQL tests"
    else:
        problem = cluster_problem() or ""
        missing = [item for item in needing if needs_cluster(item)] if problem else []
        which = "PostgreSQL tests that need a private cluster"
    if not missing:
        return
    if _in_ci():
        raise pytest.UsageError(did_not_run(problem, len(missing), which, "need it, and under CI=true they must run"))
    state = _session(config)
    state.line = did_not_run(problem, len(missing), which)
    state.deselected = len(missing)
    config.hook.pytest_deselected(items=missing)
    gone = {id(item) for item in missing}
    items[:] = [item for item in items if id(item) not in gone]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    state = _session(config)
    if state.deselected:
        terminalreporter.write_line(state.line, yellow=True, bold=True)
    elif state.server and state.server.admin_dsn and config.get_verbosity() > 0:
        timings = ", ".join(f"{what} {seconds:.2f}s" for what, seconds in state.server.setup_seconds.items())
        terminalreporter.write_line(
            f"PostgreSQL tests ran on {state.server.where}" + (f" ({timings})" if timings else "")
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(SESSION, None)
    if state and state.server and state.server.cluster:
        state.server.cluster.destroy()


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_admin_dsn(request: pytest.FixtureRequest) -> str:
    """The URL of the server's maintenance database: for creating more databases (see :func:`throwaway_database`)."""
    server = _server(request.config)
    if server.admin_dsn is None:  # only a test that asks for it at run time gets here: others were deselected
        pytest.fail(f"PostgreSQL is needed and there is none: {server.problem}")
    return server.admin_dsn


@pytest.fixture(scope="session")
def pg_dsn(request: pytest.FixtureRequest, pg_admin_dsn: str) -> Iterator[str]:
    """The URL of this session's throwaway database ``jobkit_test_<hex>``, dropped when the session ends."""
    started = time.monotonic()
    with throwaway_database(pg_admin_dsn, prefix="jobkit_test_") as dsn:
        _server(request.config).setup_seconds["database"] = time.monotonic() - started
        yield dsn


@pytest.fixture(scope="session")
def pg_binaries() -> Path:
    """The directory of the local PostgreSQL binaries (initdb, pg_ctl, postgres)."""
    if problem := cluster_problem():
        pytest.fail(problem)
    found = find_bindir()
    assert found is not None
    return found


@pytest.fixture(scope="session")
def pg_cluster_template(pg_binaries: Path) -> Iterator[Path]:
    """A data directory initdb'd once per session, never started: each throwaway_cluster starts from a copy."""
    prefix = run_as()
    assert prefix is not None
    with Cluster(pg_binaries, prefix, settings={}) as template:
        yield template.data


@pytest.fixture
def throwaway_cluster(pg_binaries: Path, pg_cluster_template: Path) -> Iterator[Cluster]:
    """A private server of this test's own, started: ``stop()``, ``start()``, ``restart()``, ``dsn``; deleted after."""
    with Cluster.create(pg_binaries, template=pg_cluster_template) as cluster:
        yield cluster


# -- PostgresStores for tests -------------------------------------------------------------
def schema_store(dsn: str, **options: Any) -> jobkit.PostgresStore:
    """A PostgresStore in a fresh schema of the database *dsn*: drop it with :func:`drop_store`."""
    return jobkit.PostgresStore(dsn, schema=fresh_schema_name(), **options)


def drop_store(store: jobkit.PostgresStore) -> None:
    """Close *store* and drop its schema."""
    import psycopg
    from psycopg import sql

    store.close()
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(store.schema)))


@pytest.fixture
def pg_schema_store(pg_dsn: str) -> Iterator[jobkit.PostgresStore]:
    """A PostgresStore in a schema of its own in the session's throwaway database, dropped after the test."""
    made = schema_store(pg_dsn)
    try:
        yield made
    finally:
        drop_store(made)
