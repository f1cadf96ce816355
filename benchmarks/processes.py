"""Child processes for the benchmarks: start them, wait for them with deadlines, read /proc.

Every side runs in fresh processes. A child that must start together with others prints
``ready`` and waits for ``go`` on its standard input (:func:`await_ready`, :func:`release`);
a child reports its measurements as one JSON object on the last line of its output.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
READY = "ready"
GO = "go"
STOP_GRACE = 10.0  # seconds a stopped process gets before it is killed


class BenchError(Exception):
    """A measurement could not be made (a child failed, or a deadline passed)."""


def python(module: str, *args: str) -> list[str]:
    """The command running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, with the repository importable (for ``benchmarks.*``).

    Every side starts from its bytecode cache, as an installed package does: with
    PYTHONDONTWRITEBYTECODE set (some CI and sandbox images set it), each fresh process
    compiled every module it imports again, which cost a jobkit worker about 80 ms a start
    (a drain of 20,000 jobs 5%), a cost no user pays. :func:`compile_sources` fills the cache first.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def compile_sources() -> None:
    """Write the bytecode cache of the repository's packages (as ``pip install`` does for the peers'), so
    that no round, the first included, pays for compiling."""
    for package in ("jobkit", "benchmarks"):
        compileall.compile_dir(REPO / package, quiet=1)


def last_json(output: str, command: Sequence[str]) -> dict[str, Any]:
    """The JSON object on the last non-empty line of *output*."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise BenchError(f"{' '.join(command)}: printed no result")
    try:
        value = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise BenchError(f"{' '.join(command)}: the last line is not JSON: {lines[-1]!r}") from exc
    if not isinstance(value, dict):
        raise BenchError(f"{' '.join(command)}: expected a JSON object, got {lines[-1]!r}")
    return value


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_json(command: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run *command* to its end (killed after *timeout* seconds); return the JSON it printed."""
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(command)}: still running after {timeout:.0f}s; killed") from exc
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)}: exit code {done.returncode}\n{_tail(done.stderr)}")
    return last_json(done.stdout, command)


@contextlib.contextmanager
def started(
    command: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path, barrier: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """Start *command* in a session of its own; on exit, stop it and anything it started.

    Its standard error goes to *log*. With *barrier*, its standard input and output are
    pipes for :func:`await_ready`, :func:`release` and :func:`result`; otherwise its
    output goes to *log* too.
    """
    with log.open("a") as sink:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if barrier else subprocess.DEVNULL,
            stdout=subprocess.PIPE if barrier else sink,
            stderr=sink,
            text=True,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """If *process* still runs, SIGTERM its process group, then SIGKILL the group if it lingers.

    The group is the session it was started in: whatever it forked (huey's worker
    processes) is signalled with it.
    """
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(STOP_GRACE)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def _signal_group(process: subprocess.Popen[str], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def wait_exit(process: subprocess.Popen[str], timeout: float, log: Path) -> float:
    """Wait for *process* to exit with status 0, killing it past *timeout* seconds; the CPU seconds it used.

    A blocking wait (``wait4``, which also reports the CPU time of every thread), so it
    returns as the process exits: ``Popen.wait(timeout)`` polls, sleeping up to 50 ms
    between looks, a grain of 3% on a drain that takes 1.5 s.
    """
    overdue = threading.Event()

    def expire() -> None:
        overdue.set()
        process.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = code = os.waitstatus_to_exitcode(status)
    if overdue.is_set():
        raise BenchError(f"{describe(process)}: still running after {timeout:.0f}s\n{log_tail(log)}")
    if code != 0:
        raise BenchError(f"{describe(process)}: exit code {code}\n{log_tail(log)}")
    return float(usage.ru_utime + usage.ru_stime)


def describe(process: subprocess.Popen[str]) -> str:
    args = process.args
    return " ".join(map(str, args)) if isinstance(args, list) else str(args)


def log_tail(log: Path) -> str:
    return _tail(log.read_text(errors="replace")) if log.exists() else ""


def read_line(stream: IO[str], timeout: float) -> str:
    """One line from a child's pipe, or "" if none came within *timeout* seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return stream.readline().strip()


def await_ready(processes: Sequence[subprocess.Popen[str]], timeout: float, log: Path) -> None:
    """Wait until every child of a barrier has printed ``ready``."""
    deadline = time.monotonic() + timeout
    for process in processes:
        assert process.stdout is not None
        line = read_line(process.stdout, max(0.0, deadline - time.monotonic()))
        if line != READY:
            raise BenchError(f"{describe(process)}: not ready within {timeout:.0f}s (said {line!r})\n{log_tail(log)}")


def release(processes: Sequence[subprocess.Popen[str]]) -> None:
    """Tell every child of a barrier to go."""
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(GO + "\n")
        process.stdin.flush()


def result(process: subprocess.Popen[str], timeout: float, log: Path) -> dict[str, Any]:
    """The JSON a barrier child printed when it finished."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{describe(process)}: no result within {timeout:.0f}s\n{log_tail(log)}") from exc
    if process.returncode != 0:
        raise BenchError(f"{describe(process)}: exit code {process.returncode}\n{log_tail(log)}")
    return last_json(output, [describe(process)])


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll *condition* until it holds; BenchError after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise BenchError(f"{what}: not done within {timeout:.0f}s")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time *pid* has used (``/proc/PID/stat`` utime + stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The peak resident set size of *pid* (``VmHWM`` in ``/proc/PID/status``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"/proc/{pid}/status has no VmHWM line")
