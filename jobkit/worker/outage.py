"""How a worker rides out a store it cannot write to (a full disk, an I/O error, a long lock).

The worker keeps what it could not write and tries again, further apart each time, up
to :data:`LONGEST_PAUSE`: a full disk must not turn the loop into a busy one, nor fill
the log that may share the disk. One line when an outage starts, one when it ends.
"""

from __future__ import annotations

import logging
import random
import time

logger = logging.getLogger("jobkit.worker")

FIRST_PAUSE = 0.05  # seconds before the first try again
LONGEST_PAUSE = 5.0  # the pause doubles up to this


class Outage:
    """The worker's view of its store: writable, or out since some time (with the pause before the next try)."""

    def __init__(self) -> None:
        self.since: float | None = None  # time.monotonic() of the first failure of this outage
        self.tries = 0
        self.resume_at = 0.0  # time.monotonic() before which the loop does not try again
        self._pause = FIRST_PAUSE

    def failed(self, exc: BaseException, what: str = "writing to the store") -> None:
        """A write failed: log it if it starts an outage, and push the next try further off."""
        now = time.monotonic()
        self.tries += 1
        if self.since is None:
            self.since = now
            self._pause = FIRST_PAUSE
            logger.warning(
                "%s failed: %s; keeping what is not written and trying again, less often, until it works",
                what,
                exc,
            )
        else:
            logger.debug("%s failed again (try %d): %s", what, self.tries, exc)
        self.resume_at = now + self._pause * (0.5 + random.random())
        self._pause = min(self._pause * 2, LONGEST_PAUSE)

    def worked(self) -> None:
        """A write went through: end the outage, if there was one, with a line saying so."""
        if self.since is None:
            return
        logger.warning(
            "the store takes writes again after %.1fs (%d failed tries); carrying on",
            time.monotonic() - self.since,
            self.tries,
        )
        self.since = None
        self.tries = 0
        self.resume_at = 0.0

    def pausing(self) -> bool:
        """Whether the loop should wait before its next try."""
        return time.monotonic() < self.resume_at
