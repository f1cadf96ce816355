"""worker/reaping.py: a reset the store refuses is made again one job at a time, the refused one logged once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import pytest

from jobkit.errors import ValidationError
from jobkit.model import LeaseMark, ResetReport
from jobkit.worker.reaping import reset_unrenewed
from tests.support import T0


class RefusesOne:
    """A store whose reset of the job *refused* can never be written (its chain of dependents is too deep)."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.calls: list[list[str]] = []

    def reset_unrenewed(self, marks: Sequence[LeaseMark], *, now: datetime) -> ResetReport:
        ids = [mark.job_id for mark in marks]
        self.calls.append(ids)
        if self.refused in ids:
            raise ValidationError(f"the database refused the write for {self.refused}")
        return ResetReport(retried=ids)


def mark(job_id: str) -> LeaseMark:
    return LeaseMark(job_id, "gone", T0, T0)


def test_the_others_of_a_refused_reset_are_reset_one_by_one_and_the_refused_one_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RefusesOne("b")
    told: set[str] = set()
    caplog.set_level(logging.DEBUG, logger="jobkit.worker")

    first = reset_unrenewed(store, [mark("a"), mark("b"), mark("c")], T0, told)  # type: ignore[arg-type]
    again = reset_unrenewed(store, [mark("b")], T0, told)  # type: ignore[arg-type]

    assert first == ResetReport(retried=["a", "c"]) and again == ResetReport()
    assert store.calls == [["a", "b", "c"], ["a"], ["b"], ["c"], ["b"], ["b"]]
    refused = [r for r in caplog.records if "cannot be reset" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.ERROR, logging.DEBUG]
    assert told == {"b"}
