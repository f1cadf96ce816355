"""Workers that die or freeze: jobs come back after their locks expire, and stale workers write nothing."""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from collections import defaultdict

import pytest

from jobkit.model import JobStatus
from tests.chaos.chaos_jobs import Crash, Nap, Trace, crash, nap, stuck
from tests.chaos.harness import Harness, Proc, children_of, result, stop_all

pytestmark = pytest.mark.slow

CI = bool(os.environ.get("CI"))


def test_sigkill_chaos_loses_nothing_and_never_runs_a_job_twice_at_once(h: Harness) -> None:
    n, chaos_seconds = (60, 3.0) if CI else (120, 5.0)
    ids = nap.later_many([Nap([0.1])] * n, h.store)  # up to 10 attempts each
    options = ("--concurrency", "2", "--lock-timeout", "1", "--poll-interval", "0.1")
    workers = [h.worker(*options) for _ in range(3)]
    every_worker: list[Proc] = list(workers)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    killed_at: dict[int, float] = {}  # pid -> wall time by which it was dead
    chaos_ends = time.monotonic() + chaos_seconds
    while time.monotonic() < chaos_ends and not h.all_done(ids):
        time.sleep(rng.uniform(0.1, 0.4))  # the pace of the chaos, not a wait for a condition
        working = {t.pid for t in h.traces()}
        victims = [w for w in workers if w.pid in working]  # only workers that have started a job
        if not victims:
            continue
        victim = rng.choice(victims)
        victim.signal(signal.SIGKILL)
        assert victim.wait_exit(5) == -signal.SIGKILL
        killed_at[victim.pid] = time.time()
        workers[workers.index(victim)] = replacement = h.worker(*options)
        every_worker.append(replacement)
    assert len(killed_at) >= 3, f"only {len(killed_at)} workers were killed (seed {seed})"

    h.wait(lambda: h.all_done(ids), 20, f"every job completed after the chaos (seed {seed})")
    # A replacement still importing has no SIGTERM handler yet: let each come up first.
    h.wait(lambda: all(w.workers_started() for w in workers), 10, "the last replacements to start")
    stop_all(workers)

    records = h.records()
    assert set(records) == set(ids), "a job was lost"
    for record in records.values():
        assert record.attempt_count <= record.max_attempts
        assert result(record)["attempt"] == record.attempt_count, f"an older attempt wrote the result: {record}"
    assert any(r.attempt_count > 1 for r in records.values()), f"no kill hit a running job (seed {seed})"

    lost = {(p.pid, job_id) for p in every_worker for job_id in ids if f"job {job_id}: lease lost" in p.stderr()}
    runs: dict[str, list[tuple[float, float, Trace]]] = defaultdict(list)
    traces = h.traces()
    ends = {(t.job_id, t.pid, t.attempt): t.at for t in traces if t.event == "end"}
    for t in traces:
        if t.event != "start":
            continue
        end = ends.get((t.job_id, t.pid, t.attempt), killed_at.get(t.pid))
        assert end is not None, f"run {t} neither ended nor was killed (seed {seed})"
        runs[t.job_id].append((t.at, end, t))
    for job_id, spans in runs.items():
        spans.sort(key=lambda span: span[0])
        attempts = [t.attempt for _, _, t in spans]
        assert len(attempts) == len(set(attempts)), f"{job_id}: two runs of one attempt: {spans}"
        for (_, end, earlier), (start, _, later) in itertools.pairwise(spans):
            assert start >= end or (earlier.pid, job_id) in lost, (
                f"{job_id} ran in two places at once: {earlier} until {end}, then {later} (seed {seed})"
            )
    h.assert_clean(workers)


def test_a_worker_stopped_past_its_lock_changes_nothing_when_it_wakes(h: Harness) -> None:
    options = ("--concurrency", "1", "--lock-timeout", "1", "--poll-interval", "0.1")
    stale = h.worker(*options, name="stale")
    job = nap.later(Nap([1.0, 0.2]), h.store)  # 1 s on the first attempt, 0.2 s on the second
    h.wait(lambda: h.started(job, stale.pid), 10, "the first worker to start the job")
    stale.freeze(h.db)

    fresh = h.worker(*options, name="fresh")
    h.wait(lambda: h.records()[job].status is JobStatus.COMPLETED, 15, "the second worker to finish the job")
    before = h.records()[job]
    assert result(before) == {"pid": fresh.pid, "attempt": 2}

    stale.signal(signal.SIGCONT)
    h.wait(lambda: "outcome was dropped" in stale.stderr(), 10, "the woken worker to try to record its outcome")
    assert [t.event for t in h.traces() if t.pid == stale.pid] == ["start", "end"], "its handler did not finish"
    assert f"job {job}: lease lost" in stale.stderr()
    assert h.records()[job] == before, "the stale worker changed the record"
    stop_all([stale, fresh])
    assert h.records()[job] == before
    h.assert_clean()


def test_a_job_that_kills_its_worker_fails_after_its_attempts_while_others_complete(h: Harness) -> None:
    killer = crash.later(Crash(code=3), h.store)  # max_attempts=2
    ids = nap.later_many([Nap([0.1])] * 20, h.store)
    supervisor = h.worker(
        "--processes", "2", "--concurrency", "2", "--lock-timeout", "1", "--poll-interval", "0.1", name="supervisor"
    )
    h.wait(lambda: h.records()[killer].status is JobStatus.FAILED, 30, "the killer job to end failed")
    h.wait(lambda: h.all_done(ids), 20, "every other job completed")

    record = h.records()[killer]
    assert "worker lost" in (record.error or ""), record
    assert record.attempt_count == record.max_attempts == 2
    runs = h.started(killer)
    assert [t.attempt for t in runs] == [1, 2]
    assert runs[0].pid != runs[1].pid
    assert supervisor.stderr().count("exited with 3; starting another") == 2, supervisor.tail(40)
    # Stop only once the last replacement runs: see the report on the supervisor's restart race.
    h.wait(lambda: supervisor.workers_started() == 4, 10, "the replacement children to start")
    assert supervisor.alive()
    assert len(children_of(supervisor.pid)) == 2
    assert all(r.attempt_count <= r.max_attempts for r in h.records().values())
    stop_all([supervisor])
    assert not children_of(supervisor.pid)
    h.assert_clean()


def test_the_supervisor_replaces_a_child_killed_with_sigkill(h: Harness) -> None:
    ids = nap.later_many([Nap([0.3])] * 16, h.store)
    supervisor = h.worker(
        "--processes", "2", "--concurrency", "1", "--lock-timeout", "1", "--poll-interval", "0.1", name="supervisor"
    )

    def both_at_work() -> set[int]:
        children = children_of(supervisor.pid)
        return children if len(children) == 2 and children <= {t.pid for t in h.traces()} else set()

    first = h.wait(both_at_work, 15, "both children to start jobs")
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    new = h.wait(lambda: children_of(supervisor.pid) - first, 10, "the supervisor to start another child")
    h.wait(lambda: new & {t.pid for t in h.traces()}, 10, "the new child to run a job")
    h.wait(lambda: h.all_done(ids), 20, "every job completed")
    assert f"worker {victim} exited with -9; starting another" in supervisor.stderr()
    assert all(r.attempt_count <= r.max_attempts for r in h.records().values())
    stop_all([supervisor])
    h.assert_clean()


def test_a_supervised_child_whose_handler_overruns_its_timeout_is_replaced(h: Harness) -> None:
    hung = stuck.later(Nap([30.0]), h.store)  # timeout 0.5 s, one attempt, ignores cancellation
    ids = nap.later_many([Nap([0.3])] * 8, h.store)
    supervisor = h.worker(
        "--processes", "2", "--concurrency", "2", "--lock-timeout", "1", "--poll-interval", "0.1", name="supervisor"
    )
    h.wait(lambda: h.records()[hung].status is JobStatus.FAILED, 15, "the overrunning job to be failed")
    h.wait(lambda: h.all_done(ids), 15, "every other job completed")
    record = h.records()[hung]
    assert "timeout" in (record.error or "").lower(), record.error
    assert record.attempt_count == 1
    (run,) = h.started(hung)
    h.wait(lambda: "exited with 75; starting another" in supervisor.stderr(), 10, "the stuck child to be replaced")
    h.wait(lambda: supervisor.workers_started() == 3, 10, "the replacement child to start")
    assert run.pid not in children_of(supervisor.pid), "the child stuck in a handler is still running"
    records = h.records()
    assert all(records[i].attempt_count == 1 for i in ids), "a job given back by the child spent an attempt"
    stop_all([supervisor])
    h.assert_clean()
