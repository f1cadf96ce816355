"""What a worker, or one tick, did: counts for the summary line and for tests."""

from __future__ import annotations

import attrs

from jobkit.model import Cancel, Complete, Fail, Postpone, Retry, Transition


@attrs.define
class Report:
    """What a worker (or one tick) did."""

    reset: int = 0
    lost_failed: int = 0
    cron_enqueued: int = 0
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    snoozed: int = 0
    lost: int = 0
    released: int = 0
    purged: int = 0
    unwritten: int = 0  # outcomes a one-pass tick gave up writing (a store down past the grace period)

    def count(self, transition: Transition) -> None:
        match transition:
            case Complete():
                self.completed += 1
            case Retry():
                self.retried += 1
            case Fail():
                self.failed += 1
            case Cancel():
                self.cancelled += 1
            case Postpone():
                self.snoozed += 1

    def __str__(self) -> str:
        parts = [
            f"{self.claimed} claimed",
            f"{self.completed} completed",
            f"{self.failed} failed",
            f"{self.retried} retried",
        ]
        for label, n in (
            ("cancelled", self.cancelled),
            ("snoozed", self.snoozed),
            ("expired locks reset", self.reset),
            ("failed after their worker was lost", self.lost_failed),
            ("cron runs enqueued", self.cron_enqueued),
            ("leases lost", self.lost),
            ("given back", self.released),
            ("old jobs purged", self.purged),
            ("outcomes not written (left running until their locks expire)", self.unwritten),
        ):
            if n:
                parts.append(f"{n} {label}")
        return ", ".join(parts)
