"""Where handlers run: a fixed set of daemon threads for sync ones, one event loop for async ones."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where an async job first runs: a worker of sync jobs starts without it
    import asyncio


class HandlerPool:
    """A fixed set of daemon threads: a stuck handler never blocks the process from exiting."""

    def __init__(self, size: int) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._size = size
        for n in range(size):
            threading.Thread(target=self._serve, name=f"jobkit-handler-{n}", daemon=True).start()

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            task()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def close(self) -> None:
        """Let each thread end once the tasks before this call are done."""
        for _ in range(self._size):
            self._tasks.put(None)


def event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop running forever in a daemon thread; stop it with ``call_soon_threadsafe(loop.stop)``."""
    import asyncio  # only a worker with async jobs needs it

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="jobkit-async", daemon=True).start()
    return loop


def on_loop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, None]) -> None:
    """Run *coroutine* as a task of *loop* (from another thread); the loop keeps the task until it ends."""
    import asyncio

    asyncio.run_coroutine_threadsafe(coroutine, loop)


def semaphore(slots: int) -> asyncio.Semaphore:
    """An asyncio semaphore of *slots*, made on the loop that is to use it (3.10 binds it to the loop at hand)."""
    import asyncio

    return asyncio.Semaphore(slots)
