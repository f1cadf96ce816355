"""Pure helpers of the pages: which actions a job offers, the charts' geometry.

What an action may do to a job is the library's rule (:data:`jobkit.lifecycle.RETRYABLE`,
a finished status for purge, an unfinished one for cancel); the pages only ask.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from jobkit import lifecycle
from jobkit.model import JobRecord
from jobkit.web.tally import Bar

CHART_WIDTH, CHART_HEIGHT = 600, 120  # the SVG's view box


def actions_for(job: JobRecord) -> list[str]:
    """What can change *job*: ``retry`` (failed, cancelled), ``cancel`` (unfinished), ``purge`` (finished)."""
    found = []
    if job.status in lifecycle.RETRYABLE:
        found.append("retry")
    if not job.status.finished:
        found.append("cancel")
    if job.status.finished:
        found.append("purge")
    return found


@attrs.frozen
class ChartBar:
    """One minute drawn: x and width, the completed part's height and the failed part's (stacked on it)."""

    x: float
    width: float
    completed: float
    failed: float
    label: str


@attrs.frozen
class Chart:
    bars: list[ChartBar]
    peak: int
    completed: int
    failed: int
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT


def chart(bars: Sequence[Bar]) -> Chart:
    """A stacked bar chart of completed (below) and failed (above) jobs a minute, scaled to its peak."""
    peak = max((bar.completed + bar.failed for bar in bars), default=0)
    step = CHART_WIDTH / max(len(bars), 1)
    scale = CHART_HEIGHT / peak if peak else 0.0
    drawn = [
        ChartBar(
            x=index * step,
            width=max(step - 1, 1),
            completed=bar.completed * scale,
            failed=bar.failed * scale,
            label=f"{bar.at:%H:%M}Z: {bar.completed} completed, {bar.failed} failed",
        )
        for index, bar in enumerate(bars)
    ]
    return Chart(
        bars=drawn,
        peak=peak,
        completed=sum(bar.completed for bar in bars),
        failed=sum(bar.failed for bar in bars),
    )
