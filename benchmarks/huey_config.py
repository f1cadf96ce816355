"""How the huey processes of one benchmark run agree on their SqliteHuey: two environment variables.

Kept apart from :mod:`benchmarks.huey_jobs` so that the parent process can set them
without importing huey or opening a queue.
"""

from __future__ import annotations

import os
from typing import Literal

PATH_VARIABLE = "BENCH_HUEY_PATH"
SYNC_VARIABLE = "BENCH_HUEY_SYNC"

HueySync = Literal["default", "normal", "off"]
SYNC_MODES: tuple[HueySync, ...] = ("default", "normal", "off")


def environment(path: str, sync: HueySync) -> dict[str, str]:
    """The variables that make :mod:`benchmarks.huey_jobs` open *path* with *sync*."""
    return {PATH_VARIABLE: path, SYNC_VARIABLE: sync}


def from_environment() -> tuple[str, HueySync]:
    """The file and synchronous mode set in this process's environment."""
    path = os.environ.get(PATH_VARIABLE)
    if not path:
        raise RuntimeError(f"benchmarks.huey_jobs: set {PATH_VARIABLE} to the SqliteHuey file (and {SYNC_VARIABLE})")
    sync = os.environ.get(SYNC_VARIABLE, "default")
    for mode in SYNC_MODES:
        if sync == mode:
            return path, mode
    raise RuntimeError(f"benchmarks.huey_jobs: {SYNC_VARIABLE} must be one of {SYNC_MODES}, not {sync!r}")
