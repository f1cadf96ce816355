"""Example jobs for the demo: a module, so that a worker process can import them by name."""

from __future__ import annotations

import hashlib
import time

import attrs

import jobkit

jobs = jobkit.Registry()


@attrs.frozen
class Thumbnail:
    image: str
    width: int = 128


@attrs.frozen
class Thumbnailed:
    path: str
    checksum: str


@jobs.job(max_attempts=3, retry_backoff=0.1)
def thumbnail(params: Thumbnail, ctx: jobkit.Context) -> Thumbnailed:
    """Pretend to resize an image in ten steps, reporting progress after each."""
    digest = hashlib.sha256(params.image.encode())
    for step in range(1, 11):
        digest.update(digest.digest())
        time.sleep(0.06)  # stands in for real work
        ctx.progress(step * 10, f"pass {step} of 10")
    return Thumbnailed(path=f"thumbs/{params.width}/{params.image}", checksum=digest.hexdigest()[:12])
