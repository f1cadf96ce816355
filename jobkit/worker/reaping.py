"""Reaping: jobs whose holders are gone go back to pending (or end), all in one write, or one by one.

A reset is one write for every job it names. One of them may be a write the store can
never take as it is (a ValidationError: the job's end would cancel a chain of dependents
longer than the database settles in one write): then every other job of that reset is
reset on its own, so that one job's chain does not keep the others of crashed workers
from running again. The one refused is left running, and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from jobkit import lifecycle
from jobkit.errors import ValidationError
from jobkit.model import LeaseMark, ResetReport
from jobkit.store import Store

logger = logging.getLogger("jobkit.worker")


def reset_unrenewed(store: Store, due: Sequence[LeaseMark], now: datetime, told: set[str] | None = None) -> ResetReport:
    """:meth:`Store.reset_unrenewed` of *due*; when the store refuses it, each mark alone (:func:`_each`)."""
    try:
        return store.reset_unrenewed(due, now=now)
    except ValidationError:
        return _each(store, due, now, told)


def reset_expired(store: Store, now: datetime) -> ResetReport:
    """:meth:`Store.reset_expired` at *now*; when the store refuses it, each running job whose stored lock
    ran out (:func:`lifecycle.ran_out`) alone."""
    try:
        return store.reset_expired(now=now)
    except ValidationError:
        return _each(store, [mark for mark in store.leases() if lifecycle.ran_out(mark, now)], now, None)


def _each(store: Store, due: Sequence[LeaseMark], now: datetime, told: set[str] | None) -> ResetReport:
    """Reset each of *due* on its own. A job that cannot be reset is logged as an error the first time, and
    at debug level after that when its id is in *told* (a running worker's, kept across reapings: it looks
    again every second)."""
    done = ResetReport()
    for mark in due:
        try:
            one = store.reset_unrenewed([mark], now=now)
        except ValidationError as exc:
            level = logging.DEBUG if told is not None and mark.job_id in told else logging.ERROR
            logger.log(
                level,
                "job %s: its holder is gone, but it cannot be reset (%s); it stays running until it or the jobs "
                "after it are deleted",
                mark.job_id,
                exc,
            )
            if told is not None:
                told.add(mark.job_id)
            continue
        done.retried.extend(one.retried)
        done.failed.extend(one.failed)
        done.cancelled.extend(one.cancelled)
    return done
