"""A write of outcomes that commits but whose answer is lost (the network drops it): nothing is misreported.

The worker sends the outcomes again; its fenced write finds the jobs no longer held (the
first write ended them), and without a second look it would call each a lost lease and
its outcome dropped, though the store holds exactly that outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

import jobkit
from jobkit.errors import StoreError
from jobkit.model import Complete, JobRecord, Transition
from jobkit.store import Store
from jobkit.worker import Report
from tests.support import COMPLETED, FAILED, PENDING, burst, record

flaky = jobkit.Registry()


@flaky.job(name="t:answer", max_attempts=1)
def answer(params: str, ctx: jobkit.Context) -> str:
    if params == "fail":
        raise ValueError(params)
    if params == "snooze":
        raise jobkit.Snooze(3600)
    return params


@flaky.job(name="t:again", max_attempts=2, retry_backoff=3600)
def again(params: str, ctx: jobkit.Context) -> str:
    if params == "retry":
        raise ValueError("not yet")
    return params


class LosesAnswers:
    """A store whose next *lose* writes of outcomes commit (when *commits*) and then raise as a dropped link would."""

    def __init__(self, store: Store, *, lose: int, commits: bool) -> None:
        self.store = store
        self.lose = lose
        self.commits = commits

    def finish_and_claim(self, transitions: Sequence[Transition], **claim: Any) -> tuple[list[bool], list[JobRecord]]:
        if transitions and self.lose > 0:
            self.lose -= 1
            if self.commits:
                self.store.finish(transitions)
            raise StoreError("server closed the connection unexpectedly")
        return self.store.finish_and_claim(transitions, **claim)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize(
    ("params", "status", "counted"),
    [
        ("done", COMPLETED, Report(claimed=1, completed=1)),
        ("fail", FAILED, Report(claimed=1, failed=1)),
        ("snooze", PENDING, Report(claimed=1, snoozed=1)),
    ],
    ids=["completed", "failed", "snoozed"],
)
def test_an_outcome_whose_commit_answer_was_lost_is_reported_as_written(
    store: Store, caplog: pytest.LogCaptureFixture, params: str, status: jobkit.JobStatus, counted: Report
) -> None:
    job_id = answer.later(params, store)
    events: list[str] = []
    unsubscribe = flaky.hooks.subscribe(lambda event: events.append(event.kind))
    try:
        with caplog.at_level(logging.WARNING, logger="jobkit"):
            report = burst(LosesAnswers(store, lose=1, commits=True), flaky)  # type: ignore[arg-type]
    finally:
        unsubscribe()
    assert report == counted
    assert record(store, job_id).status is status
    assert "lease lost" not in caplog.text, caplog.text
    assert (
        "lease_lost" not in events
        and {"completed": "done", "failed": "fail", "snoozed": "snooze"}.get(events[-1]) == params
    ), events
    outcomes = [a.outcome for a in jobkit.attempts(store, job_id)]
    assert outcomes == {"done": ["completed"], "fail": ["failed"], "snooze": ["snoozed"]}[params], "written once"


def test_a_retry_whose_commit_answer_was_lost_is_not_run_twice_by_this_worker(store: Store) -> None:
    job_id = again.later("retry", store)
    report = burst(LosesAnswers(store, lose=1, commits=True), flaky)  # type: ignore[arg-type]
    assert report == Report(claimed=1, retried=1)
    job = record(store, job_id)
    assert (job.status, job.attempt_count) == (PENDING, 1), "due in an hour, as the one write said"
    assert [a.outcome for a in jobkit.attempts(store, job_id)] == ["retried"]


def test_a_write_that_failed_without_committing_is_written_when_it_is_sent_again(store: Store) -> None:
    job_id = answer.later("done", store)
    report = burst(LosesAnswers(store, lose=2, commits=False), flaky)  # type: ignore[arg-type]
    assert report == Report(claimed=1, completed=1)
    assert record(store, job_id).status is COMPLETED


def test_an_outcome_another_attempt_overtook_is_still_reported_dropped(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The second look matches this attempt's token only: a job reset and completed by another stays dropped."""
    job_id = again.later("done", store)

    class Overtaken(LosesAnswers):
        def finish_and_claim(
            self, transitions: Sequence[Transition], **claim: Any
        ) -> tuple[list[bool], list[JobRecord]]:
            if transitions and self.lose > 0:
                self.lose -= 1
                [mine] = transitions
                now = self.store.now() + timedelta(days=1)
                # the lease lapses; a reaper gives the job back and another worker completes it
                assert self.store.reset_expired(now=now).retried == [mine.job_id]
                [taken] = self.store.claim(limit=1, now=now, token="other", lock_until=now + timedelta(days=1))
                self.store.finish([Complete(taken.id, "other", '"theirs"', now)])
                raise StoreError("server closed the connection unexpectedly")
            return super().finish_and_claim(transitions, **claim)

    with caplog.at_level(logging.WARNING, logger="jobkit"):
        report = burst(Overtaken(store, lose=1, commits=False), flaky)  # type: ignore[arg-type]
    assert report.lost == 1 and report.completed == 0, report
    assert "lease lost" in caplog.text
    assert record(store, job_id).result == '"theirs"'
