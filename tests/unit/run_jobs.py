"""The jobs the tests of jobkit.run and jobkit.stages run."""

from __future__ import annotations

import uuid
from typing import Any

import attrs

import jobkit
from jobkit.store import Store

jobs = jobkit.Registry()


@attrs.frozen
class Resize:
    url: str
    width: int = 100


@attrs.frozen
class Resized:
    path: str


@jobs.job(max_attempts=5, retry_backoff=10.0)
def resize(params: Resize, ctx: jobkit.Context) -> Resized:
    if params.url == "boom":
        raise RuntimeError(f"cannot fetch {params.url}")
    return Resized(path=f"thumbs/{params.width}.png")


@jobs.job(name="double")
def double(params: int, ctx: jobkit.Context) -> int:
    if params < 0:
        raise ValueError(f"negative: {params}")
    return params * 2


def _count(store: Store) -> int:
    return sum(store.counts().values())


def _is_uuid7(text: str) -> bool:
    return uuid.UUID(text).version == 7 and str(uuid.UUID(text)) == text


def _spec(fn: Any, name: str = "job", **options: Any) -> jobkit.JobSpec[Any, Any]:
    return jobkit.Registry().job(name=name, **options)(fn)
