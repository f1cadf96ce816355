"""Job events for metrics and alerts: subscribe a function, no monkey-patching.

    @jobs.on("failed", "retried")
    def alert(event: jobkit.Event) -> None:
        print(event.kind, event.job_name, event.error)

Events of the jobs a registry defines go to that registry's listeners, in whichever
process the event happens: ``enqueued`` where ``later`` is called (``deduplicated``
instead, naming the job that holds the key, when a unique job was not made), the others in the
worker (or the process running ``now``/``batch``/``execute``). Listeners run in the
worker's threads, so keep them quick; one that raises is logged and changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import attrs

from jobkit.errors import ValidationError

logger = logging.getLogger("jobkit.events")

EventKind = Literal[
    "enqueued", "deduplicated", "started", "completed", "failed", "retried", "snoozed", "cancelled", "lease_lost"
]
KINDS: frozenset[str] = frozenset(EventKind.__args__)  # type: ignore[attr-defined]


@attrs.frozen
class Event:
    """Something that happened to a job."""

    kind: EventKind
    job_id: str
    job_name: str
    at: datetime
    attempt: int = 0
    error: str | None = None
    duration: float | None = None
    run_at: datetime | None = None  # for "retried" and "snoozed": when the next attempt is due


Listener = Callable[[Event], None]


class Hooks:
    """The listeners of one registry."""

    def __init__(self) -> None:
        self._listeners: list[tuple[frozenset[str], Listener]] = []
        self._guard = threading.Lock()

    def subscribe(self, listener: Listener, *kinds: EventKind) -> Callable[[], None]:
        """Call *listener* for events of *kinds* (every kind when none given); return an unsubscribe."""
        unknown = set(kinds) - KINDS
        if unknown:
            raise ValidationError(f"unknown event kinds {sorted(unknown)}; choose from {sorted(KINDS)}", value=kinds)
        entry = (frozenset(kinds or KINDS), listener)
        with self._guard:
            self._listeners = [*self._listeners, entry]

        def unsubscribe() -> None:
            with self._guard:
                self._listeners = [e for e in self._listeners if e is not entry]

        return unsubscribe

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def emit(self, event: Event) -> None:
        """Tell every listener of this kind; a listener that raises is logged and skipped."""
        for kinds, listener in self._listeners:
            if event.kind in kinds:
                try:
                    listener(event)
                except Exception:
                    logger.exception("listener %r failed on %s of job %s", listener, event.kind, event.job_id)
