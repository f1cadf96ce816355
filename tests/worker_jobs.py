"""Jobs that the tests in tests/worker/ enqueue by name: a worker without --jobs imports them on demand."""

from __future__ import annotations

import attrs

import jobkit

jobs = jobkit.Registry()


@attrs.frozen
class Pair:
    a: int
    b: int = 0


@jobs.job(retry_backoff=0)
def add(params: Pair, ctx: jobkit.Context) -> int:
    return params.a + params.b


@jobs.job(max_attempts=1)
def explode(params: Pair, ctx: jobkit.Context) -> int:
    raise RuntimeError(f"exploded on {params.a}")


def _alias(params: int, ctx: jobkit.Context) -> int:
    return params


# Reachable as "tests.worker_jobs:alias", but registered under another name: a worker must refuse it.
alias = jobs.job(name="elsewhere:alias")(_alias)

not_a_spec = 42
