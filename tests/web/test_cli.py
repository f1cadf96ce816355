"""``python -m jobkit web TARGET``: refusals before anything starts, and a real server answering, then stopping.

The refusals are one line on stderr and exit 2, with no store opened (a TARGET that does
not exist is not created). The servers are real processes on a free loopback port, polled
with a deadline until they answer, and ended by their pid with SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

import jobkit
from jobkit.model import JobStatus
from tests.support import COMMAND_TIMEOUT, ROOT, poll
from tests.web.conftest import at, put

STARTUP = 30.0  # seconds a server may take to answer its first request (a busy machine included)
SHUTDOWN = 15.0  # seconds it may take to exit after SIGTERM


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBKIT_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobkit", *map(str, args)],
        cwd=ROOT,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command writes on stderr (exit 2, nothing on stdout)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jobkit: error: web: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.com"])
def test_another_address_without_auth_is_refused(tmp_path: Path, host: str) -> None:
    target = tmp_path / "never.sqlite"
    line = refused(run("web", target, "--host", host))
    assert "--auth" in line and host in line
    assert not target.exists(), "the store was opened"


def test_the_refusal_comes_before_the_store_is_opened(tmp_path: Path) -> None:
    target = tmp_path / "jobs.sqlite"
    jobkit.SqliteStore(target).close()
    line = refused(run("web", target, "--host", "0.0.0.0", "--port", str(free_port())))
    assert "--auth" in line


@pytest.mark.parametrize("auth", ["nocolon", ":secret", "user:"])
def test_bad_credentials_are_refused_without_being_echoed(tmp_path: Path, auth: str) -> None:
    target = tmp_path / "never.sqlite"
    line = refused(run("web", target, "--auth", auth))
    assert "USER:PASSWORD" in line
    assert (auth.strip(":") or "<none>") not in line.replace("USER:PASSWORD", "")
    assert not target.exists()
    line = refused(run("web", target, "--host", "0.0.0.0", "--auth", auth))
    assert "USER:PASSWORD" in line


def test_bad_credentials_from_the_environment_are_refused(tmp_path: Path) -> None:
    line = refused(run("web", tmp_path / "never.sqlite", JOBKIT_WEB_AUTH="nocolon"))
    assert "USER:PASSWORD" in line and "nocolon" not in line


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--port", "0"], "--port"), (["--port", "70000"], "--port"), (["--base-path", "jobs"], "--base-path")],
)
def test_bad_options_are_refused(tmp_path: Path, args: list[str], named: str) -> None:
    line = refused(run("web", tmp_path / "never.sqlite", *args))
    assert named in line


# -- a real server --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def answers(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return fetch(url, headers)[0] == 200
    except OSError:  # not listening yet
        return False


@contextmanager
def server(args: Sequence[str | Path]) -> Iterator[subprocess.Popen[str]]:
    """``python -m jobkit web ARGS`` as a process of its own; killed at the end whatever happened."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobkit", "web", *map(str, args)],
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=SHUTDOWN)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM to the server's pid; its exit code and output once it has exited (bounded)."""
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=SHUTDOWN)
    return proc.returncode, out, err


def test_a_real_server_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    target = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(target) as store:
        failed = put(store, JobStatus.FAILED, at(1), queue="emails")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with server([target, "--port", str(port)]) as proc:
        assert poll(lambda: proc.poll() is not None or answers(f"{base}/healthz"), STARTUP)
        assert proc.poll() is None, proc.communicate(timeout=SHUTDOWN)
        status, body = fetch(f"{base}/healthz")
        assert status == 200
        health = json.loads(body)
        assert health["ok"] is True and health["read_only"] is False
        status, page = fetch(f"{base}/jobs/{failed}")
        assert status == 200 and 'id="job-status">failed<' in page
        assert 'name="csrf_token"' in page
        assert fetch(f"{base}/metrics")[0] == 200

        code, out, err = stop(proc)  # within SHUTDOWN seconds, or communicate raises
    assert code in (0, -signal.SIGTERM), (code, out, err)
    assert f"jobkit dashboard on http://127.0.0.1:{port}/;" in out
    assert "Traceback" not in err


def test_sigterm_closes_the_store_and_exits_0(tmp_path: Path) -> None:
    # as Ctrl-C does, and as the worker command does on SIGTERM
    target = tmp_path / "jobs.sqlite"
    jobkit.SqliteStore(target).close()
    port = free_port()
    with server([target, "--port", str(port)]) as proc:
        assert poll(lambda: proc.poll() is not None or answers(f"http://127.0.0.1:{port}/jobs"), STARTUP)
        assert proc.poll() is None, proc.communicate(timeout=SHUTDOWN)
        assert fetch(f"http://127.0.0.1:{port}/jobs")[0] == 200  # the store is open and read
        code, _, _ = stop(proc)
    left = sorted(path.name for path in tmp_path.iterdir())
    assert code == 0, f"exit {code} after SIGTERM; {left} left in the directory"
    assert left == ["jobs.sqlite"], "the store was not closed"


def test_a_real_server_with_a_base_path_auth_and_read_only(tmp_path: Path) -> None:
    target = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(target) as store:
        put(store, JobStatus.FAILED, at(1))
    port = free_port()
    base = f"http://127.0.0.1:{port}/ops"
    right = {"Authorization": "Basic " + base64.b64encode(b"ops:pa55").decode()}
    with server([target, "--port", str(port), "--base-path", "/ops", "--auth", "ops:pa55", "--read-only"]) as proc:
        assert poll(lambda: proc.poll() is not None or answers(f"{base}/healthz", right), STARTUP)
        assert proc.poll() is None, proc.communicate(timeout=SHUTDOWN)
        assert json.loads(fetch(f"{base}/healthz", right)[1])["read_only"] is True
        assert fetch(f"{base}/jobs")[0] == 401
        status, page = fetch(f"{base}/jobs", right)
        assert status == 200 and "csrf_token" not in page and 'href="/ops/jobs' in page
        probe = fetch(f"{base}/healthz")[0]

        code, out, err = stop(proc)
    assert code in (0, -signal.SIGTERM), (code, out, err)
    assert f"http://127.0.0.1:{port}/ops/ (read-only)" in out
    assert probe == 200, "the probe of /ops/healthz was asked for credentials"
