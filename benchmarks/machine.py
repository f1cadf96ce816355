"""The facts about the machine and software a benchmark result depends on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sqlite3
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apsw


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int | None:
    """The cores this process may run on (fewer than the machine's under a CPU affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def filesystem(path: str) -> str:
    """The type of the filesystem holding *path* (fsync's cost depends on it), from /proc/mounts."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            mount, fstype = fields[1], fields[2]
            inside = real == mount or real.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, fstype
    return kind


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def jobkit_source() -> Path:
    """The folder the measured jobkit is imported from (workers import it from the same place)."""
    import jobkit

    return Path(jobkit.__file__).resolve().parent.parent


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False)


def git_commit(folder: Path) -> str | None:
    """The commit checked out at *folder*, ``+dirty`` with uncommitted changes; None outside git."""
    try:
        commit = _git(folder, "rev-parse", "--short", "HEAD")
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def facts() -> dict[str, Any]:
    """Machine, software and date, for the header of the table and the JSON."""
    temp, source = tempfile.gettempdir(), jobkit_source()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite_apsw": apsw.sqlite_lib_version(),
        "apsw": apsw.apsw_version(),
        "sqlite_python": sqlite3.sqlite_version,
        "huey": version("huey"),
        "jobkit": version("jobkit-queue"),
        "commit": git_commit(source),
        "temp_filesystem": filesystem(temp),
    }
