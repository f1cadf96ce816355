"""A job module that only a worker imports (on demand), never the tests themselves."""

from __future__ import annotations

import jobkit

jobs = jobkit.Registry()


@jobs.job()
def triple(params: int, ctx: jobkit.Context) -> int:
    return 3 * params
