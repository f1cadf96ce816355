"""A handler declared ``-> None``: its result structures as None (cattrs 26 stopped doing so by itself)."""

from __future__ import annotations

from typing import Optional

import pytest

import jobkit
from jobkit import codec

jobs = jobkit.Registry()


@jobs.job(name="none.returns")
def returns_none(params: int, ctx: jobkit.Context) -> None:
    return None


def test_none_structures_as_none_and_nothing_else_does() -> None:
    assert codec.structure(None, type(None), what="result") is None
    with pytest.raises(jobkit.ValidationError, match="result"):
        codec.structure(0, type(None), what="result")
    assert codec.structure(None, Optional[int], what="params") is None  # noqa: UP045 - the typing spelling too
    assert codec.structure(3, int | None, what="params") == 3


def test_a_handler_declared_to_return_none_completes_here_and_in_a_store() -> None:
    assert returns_none.now(1).ok
    store = jobkit.MemoryStore()
    result = returns_none.now(1, store)
    assert result.ok and result.value is None
    assert returns_none.result_of(result.job_id, store).value is None
