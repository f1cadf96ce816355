"""The async forms of sync calls: the very call, run in a worker thread."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

S = TypeVar("S")
T = TypeVar("T")
A = ParamSpec("A")


def in_thread(method: Callable[Concatenate[S, A], T]) -> Callable[Concatenate[S, A], Coroutine[Any, Any, T]]:
    """*method* for asyncio code: the very sync call (parameters, result, errors), run in a worker thread.

    All of it runs there (``asyncio.to_thread``, which carries the contextvars): checking
    params is CPU work as large as they are, and the options' checks, the store's clock
    (PostgreSQL's) and the write may all wait. Being the sync call, it refuses a bad call
    before it writes anything, with the same error. The signature is derived, not copied,
    so it takes every parameter the sync form takes, now and as the sync form grows.
    """

    @functools.wraps(method)
    async def call(self: S, /, *args: A.args, **kwargs: A.kwargs) -> T:
        import asyncio  # imported by whoever awaits this already

        return await asyncio.to_thread(method, self, *args, **kwargs)

    call.__name__, call.__qualname__ = f"{method.__name__}_async", f"{method.__qualname__}_async"
    call.__doc__ = f":meth:`{method.__name__}` for asyncio code, run in a worker thread: it never blocks the loop."
    return call
