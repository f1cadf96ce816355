"""Jobs whose outcomes are hard to store: text UTF-8 cannot hold, and results large enough to fill a disk."""

from __future__ import annotations

import errno
import os

import jobkit

jobs = jobkit.Registry()

NAME = os.fsdecode(b"caf\xe9.txt")  # "caf\udce9.txt": a lone surrogate, as a non-UTF-8 file name gives
BIG = 64 * 1024  # bytes of a `big` result: a few fill the small disk of the disk-full tests


@jobs.job(name="hostile:returns_name", max_attempts=2)
def returns_name(n: int, ctx: jobkit.Context) -> str:
    ctx.progress(50, f"reading {NAME}")
    ctx.log.warning("found %s", NAME)
    return NAME


@jobs.job(name="hostile:raises_name", max_attempts=1)
def raises_name(n: int, ctx: jobkit.Context) -> None:
    ctx.progress(10, f"opening {NAME}")
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", NAME)


@jobs.job(name="hostile:plain")
def plain(n: int, ctx: jobkit.Context) -> int:
    return n * 2


@jobs.job(name="hostile:big")
def big(n: int, ctx: jobkit.Context) -> str:
    return f"{n}:" + "x" * BIG
