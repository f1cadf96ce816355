"""Retention: the worker deletes finished jobs older than their keep, a short transaction at a time."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from jobkit.model import JobStatus
from jobkit.store import Store

PRUNE_BATCHES = 20  # short transactions one retention pass may run for one kind of job while they come back full

Retention = Sequence[tuple[Collection[JobStatus], timedelta | None]]
"""The kinds of finished jobs and how long each is kept (None: for ever)."""


def prune(store: Store, retention: Retention, now: datetime, batch: int) -> tuple[int, bool]:
    """Delete what *retention* no longer keeps at *now*: how many were deleted, and whether more is due at once.

    Batch after batch while they come back full, up to a bound: one batch a round cannot
    keep up with a queue that finishes more than a batch a round.
    """
    deleted, full = 0, False
    for statuses, keep in retention:
        if keep is None:
            continue
        try:
            before = now - keep
        except OverflowError:  # kept longer than the calendar reaches: nothing is that old
            continue
        for _ in range(PRUNE_BATCHES):
            gone = store.purge(statuses=statuses, before=before, limit=batch)
            deleted += gone
            if gone < batch:
                break
        else:
            full = True
    return deleted, full
