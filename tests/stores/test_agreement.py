"""Every store follows the lifecycle: the same calls give the same answers and leave the same records.

A Hypothesis state machine drives both stores (SqliteStore on a real file) through random
sequences of every write, including writes with stale and made-up fencing tokens and cron
fires with stale and made-up ``expected`` times, and compares answers after each call and
every job and schedule after each step.

How much it explores is a Hypothesis settings profile: "agreement-ci" when the CI
environment variable is set (200 examples of up to 30 steps, the same ones every run),
"agreement-dev" otherwise (as many, freshly random each run); JOBKIT_AGREEMENT_PROFILE
picks one by name, e.g. "agreement-thorough" (2,000 x 60) for a long hunt.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule, run_state_machine_as_test

from jobkit.model import Cancel, Complete, Fail, JobRecord, JobStatus, Lease, Postpone, Retry, Schedule, Transition
from tests.stores.agreement import SideBySide

T = TypeVar("T")

# Own profile names: re-registering Hypothesis' "ci" or "default" here would change every other
# property test in the run. "agreement-ci" builds on the built-in "ci" profile, which Hypothesis
# loads when CI is set: derandomized, no example database, reproduction blobs printed.
settings.register_profile("agreement-ci", settings.get_profile("ci"), max_examples=200, stateful_step_count=30)
settings.register_profile("agreement-dev", settings.get_profile("default"), max_examples=200, stateful_step_count=30)
settings.register_profile(
    "agreement-thorough", settings.get_profile("default"), max_examples=2_000, stateful_step_count=60
)
PROFILE = os.environ.get("JOBKIT_AGREEMENT_PROFILE") or ("agreement-ci" if os.environ.get("CI") else "agreement-dev")

IDS = tuple(f"job-{n:02d}" for n in range(16))
NAMES = ("app:resize", "app:email", "other:report")
QUEUES = ("default", "emails", "reports")
CORRELATIONS = (None, "order-1", "order-2")
MADE_UP_TOKENS = ("tok-made-up", "tok-0", "tok-1", "")
KINDS = ("complete", "retry", "fail", "cancel", "snooze", "retry late", "fail late")
UNIQUE_KEYS = (None, None, "k1", "k2")  # half the jobs hold a key; the keys are few, so they collide
DEFECTS = ("empty name", "no attempts", "progress over 100")
SECOND = 1_000_000  # microseconds

micros = st.integers(min_value=0, max_value=90 * SECOND)
lock_micros = st.integers(min_value=1, max_value=60 * SECOND)
# Half due at once, so that claims find work; the rest soon or far ahead.
offsets = st.one_of(
    st.just(0),
    st.integers(min_value=-5 * SECOND, max_value=0),
    st.integers(min_value=0, max_value=5 * SECOND),
    st.integers(min_value=0, max_value=3_600 * SECOND),
)
# Storable text, as the port is given it: stages.storable escapes U+0000 (which PostgreSQL
# cannot hold) and lone surrogates before any store sees an outcome's text.
texts = st.none() | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)

new_jobs = st.fixed_dictionaries(
    {
        "id": st.sampled_from(IDS),
        "job_name": st.sampled_from(NAMES),
        "params": st.sampled_from(("{}", '{"url": "a.png"}', '{"w": 3, "ü": [1, 2]}', '{"Sale": "50%_OFF"}')),
        "delay": offsets,
        "age": st.integers(min_value=0, max_value=2),
        "priority": st.integers(min_value=-2, max_value=2),
        "max_attempts": st.integers(min_value=1, max_value=3),
        "attempt_count": st.integers(min_value=0, max_value=2),
        "correlation_id": st.sampled_from(CORRELATIONS),
        "cancel_requested": st.booleans(),
        "queue": st.sampled_from(QUEUES),
        "unique_key": st.sampled_from(UNIQUE_KEYS),
        # Most jobs run after none; some after one or two others (often unknown: the add is refused).
        "depends_on": st.sampled_from(((),) * 4 + ((IDS[0],), (IDS[1], IDS[2]), (IDS[3],), (IDS[0], IDS[0]))),
    }
)
# One add in about seven carries a record that breaks a constraint: both stores must refuse the whole batch.
defects = st.integers(min_value=0, max_value=20).map(lambda n: DEFECTS[n - 18] if n >= 18 else None)
limits = st.sampled_from((1, 2, 3, 4, 1, 2, 3, 4, 0, -1))
name_filters = st.sampled_from(
    (None, None, None, None, ("app:resize",), ("app:email", "other:report"), ("nothing:here",), ())
)
# A worker's --queues: every queue, some queues each with the most it may take, one that has no jobs, none.
queue_filters = st.sampled_from(
    (None, None, None, {"emails": 1}, {"default": 2, "reports": 1}, {"default": 0, "emails": 3}, {"nowhere": 2}, {})
)


# Schedules: the stores never parse expressions, but put_schedule compares them (and the timezone)
# to decide whether to keep the stored next_run_at, so a few of each.
SCHEDULE_NAMES = ("five", "nightly", "hourly")
EXPRESSIONS = ("*/5 * * * *", "0 3 * * *")
ZONES = ("UTC", "Europe/Berlin")
EXPECTED = ("current", "current", "stale", "made up")

new_schedules = st.fixed_dictionaries(
    {
        "name": st.sampled_from(SCHEDULE_NAMES),
        "job_name": st.sampled_from(NAMES),
        "cron_expression": st.sampled_from(EXPRESSIONS),
        "params": st.sampled_from(("{}", '"today"')),
        "timezone": st.sampled_from(ZONES),
        "enabled": st.sampled_from((True, True, False)),
        "next_in": st.one_of(offsets, offsets, st.none()),
        "declared": st.booleans(),
    }
)


class StoresAgree(SideBySide):
    """Every operation gives the same answer on every store, and leaves the same jobs behind."""

    def __init__(self, postgres: str | None = None) -> None:
        super().__init__(postgres)
        self.made = 0  # schedules and cron jobs made, for unique ids
        self.next_run_ats: list[datetime] = []  # every next_run_at a schedule had: stale `expected` values

    # -- helpers --------------------------------------------------------------------
    def token(self) -> str:
        self.tokens += 1
        return f"tok-{self.tokens}"

    def remember(self, claimed: list[JobRecord] | None) -> None:
        for job in claimed or []:
            assert job.worker_id is not None
            self.leases.append(Lease(job.id, job.worker_id))

    def held(self) -> list[Lease]:
        """The leases that hold a running job now."""
        running = self.memory.list_jobs(status=JobStatus.RUNNING, limit=10**6)
        return [Lease(j.id, j.worker_id) for j in running if j.worker_id is not None]

    def lease_strategy(self) -> st.SearchStrategy[Lease]:
        """Half the time a lease still held; else one from any claim so far (often stale), or a made-up one."""
        choices = [st.builds(Lease, st.sampled_from(IDS), st.sampled_from(MADE_UP_TOKENS))]
        if self.leases:
            choices.insert(0, st.sampled_from(self.leases))
        if held := self.held():
            choices[:0] = [st.sampled_from(held)] * len(choices)
        return st.one_of(choices)

    def make_job(self, fields: dict[str, Any], defect: str | None = None) -> JobRecord:
        created = self.now - timedelta(microseconds=fields["age"])
        job = JobRecord(
            id=fields["id"],
            job_name=fields["job_name"],
            params=fields["params"],
            status=JobStatus.PENDING,
            scheduled_for=self.now + timedelta(microseconds=fields["delay"]),
            created_at=created,
            updated_at=created,
            max_attempts=fields["max_attempts"],
            attempt_count=fields["attempt_count"],
            priority=fields["priority"],
            correlation_id=fields["correlation_id"],
            cancel_requested=fields["cancel_requested"],
            queue=fields["queue"],
            unique_key=fields["unique_key"],
            depends_on=fields["depends_on"],
        )
        match defect:
            case "empty name":
                return attrs.evolve(job, job_name="")
            case "no attempts":
                return attrs.evolve(job, max_attempts=0)
            case "progress over 100":
                return attrs.evolve(job, progress=101)
        return job

    # -- writes ---------------------------------------------------------------------
    @initialize(jobs=st.lists(new_jobs, min_size=3, max_size=8, unique_by=lambda f: f["id"]))
    def start_with(self, jobs: list[dict[str, Any]]) -> None:
        self.add(jobs, defect=None)

    @rule(jobs=st.lists(new_jobs, max_size=3), defect=defects)
    def add(self, jobs: list[dict[str, Any]], defect: str | None) -> None:
        records = [self.make_job(fields) for fields in jobs[:-1]]
        records += [self.make_job(fields, defect) for fields in jobs[-1:]]
        known = {job.id for job in self.memory.list_jobs(limit=10**6)}
        self.both(lambda s: s.add(records), lambda r: r.add(records))
        ids = [job.id for job in records]
        taken = len(set(ids)) < len(ids) or bool(known & set(ids))
        event("add", "refused: id taken" if taken else "refused: invalid" if defect and jobs else "ok")

    @rule(limit=limits, names=name_filters, queues=queue_filters, lock=lock_micros)
    def claim(self, limit: int, names: tuple[str, ...] | None, queues: dict[str, int] | None, lock: int) -> None:
        token, until = self.token(), self.now + timedelta(microseconds=lock)
        claimed = self.both(
            lambda s: s.claim(limit=limit, now=self.now, token=token, lock_until=until, names=names, queues=queues),
            lambda r: r.claim(limit=limit, now=self.now, token=token, lock_until=until, names=names, queues=queues),
        )
        self.remember(claimed)
        event("claim", len(claimed) if claimed is not None else "raised")

    @rule(job_id=st.sampled_from(IDS), lock=lock_micros)
    def claim_job(self, job_id: str, lock: int) -> None:
        token, until = self.token(), self.now + timedelta(microseconds=lock)
        claimed = self.both(
            lambda s: s.claim_job(job_id, now=self.now, token=token, lock_until=until),
            lambda r: r.claim_job(job_id, now=self.now, token=token, lock_until=until),
        )
        self.remember([claimed] if claimed else [])

    @rule(data=st.data(), lock=lock_micros)
    def heartbeat(self, data: st.DataObject, lock: int) -> None:
        leases = data.draw(st.lists(self.lease_strategy(), min_size=1, max_size=3), label="leases")
        until = self.now + timedelta(microseconds=lock)
        held = self.both(
            lambda s: dict(s.heartbeat(leases, now=self.now, lock_until=until)),
            lambda r: r.heartbeat(leases, now=self.now, lock_until=until),
        )
        event("heartbeat held", len(held or {}))

    @rule(data=st.data(), percent=st.integers(min_value=-1, max_value=101), message=texts)
    def progress(self, data: st.DataObject, percent: int, message: str | None) -> None:
        lease = data.draw(self.lease_strategy(), label="lease")
        answer = self.both(
            lambda s: s.progress(lease, percent, message, now=self.now),
            lambda r: r.progress(lease, percent, message, now=self.now),
        )
        event("progress", str(answer))

    def outcome(self, lease: Lease, kind: str, text: str | None, delay: int) -> Transition:
        match kind:
            case "complete":
                return Complete(lease.job_id, lease.token, text or "null", at=self.now)
            case "retry" | "retry late":
                run_at = self.now + timedelta(microseconds=delay)
                late = kind == "retry late"
                return Retry(lease.job_id, lease.token, text or "boom", text, self.now, run_at, timed_out=late)
            case "fail" | "fail late":
                return Fail(lease.job_id, lease.token, text or "boom", text, at=self.now, timed_out=kind == "fail late")
            case "snooze":
                return Postpone(lease.job_id, lease.token, at=self.now, run_at=self.now + timedelta(microseconds=delay))
        return Cancel(lease.job_id, lease.token, text or "cancelled", at=self.now)

    def transitions(self, leases: st.SearchStrategy[Lease], data: st.DataObject, min_size: int = 1) -> list[Transition]:
        outcomes = st.tuples(leases, st.sampled_from(KINDS), texts, offsets)
        drawn = data.draw(st.lists(outcomes, min_size=min_size, max_size=3), label="outcomes")
        return [self.outcome(*args) for args in drawn]

    def finish_with(self, leases: st.SearchStrategy[Lease], data: st.DataObject) -> None:
        transitions = self.transitions(leases, data)
        applied = self.both(lambda s: s.finish(transitions), lambda r: r.finish(transitions))
        assert applied is not None
        for transition, done in zip(transitions, applied, strict=True):
            event("finish", f"{type(transition).__name__} {'applied' if done else 'lease lost'}")

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """Outcomes for any leases: held, stale or made up."""
        self.finish_with(self.lease_strategy(), data)

    @precondition(lambda self: self.held())
    @rule(data=st.data())
    def finish_held(self, data: st.DataObject) -> None:
        """Outcomes for leases still held (a job finished twice in one call loses the second)."""
        self.finish_with(st.sampled_from(self.held()), data)

    @rule(data=st.data(), limit=limits, names=name_filters, queues=queue_filters, lock=lock_micros)
    def finish_and_claim(
        self,
        data: st.DataObject,
        limit: int,
        names: tuple[str, ...] | None,
        queues: dict[str, int] | None,
        lock: int,
    ) -> None:
        transitions = self.transitions(self.lease_strategy(), data, min_size=0)
        token, until = self.token(), self.now + timedelta(microseconds=lock)
        options: dict[str, Any] = {"limit": limit, "now": self.now, "token": token, "lock_until": until}
        options.update(names=names, queues=queues)
        answer = self.both(
            lambda s: s.finish_and_claim(transitions, **options),
            lambda r: r.finish_and_claim(transitions, **options),
        )
        applied, claimed = answer or ([], [])
        self.remember(claimed)
        event("finish_and_claim", f"applied {sum(applied)} of {len(transitions)}, claimed {len(claimed)}")

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        leases = data.draw(st.lists(self.lease_strategy(), min_size=1, max_size=3), label="leases")
        for released in (
            self.both(lambda s: s.release(leases, now=self.now), lambda r: r.release(leases, now=self.now)) or []
        ):
            event("release", str(released))

    @rule()
    def reset_expired(self) -> None:
        report = self.both(lambda s: s.reset_expired(now=self.now), lambda r: r.reset_expired(now=self.now))
        assert report is not None
        event("reset_expired", f"retried {len(report.retried)}, failed {len(report.failed)}")

    # -- schedules ------------------------------------------------------------------
    def serial(self, prefix: str) -> str:
        self.made += 1
        return f"{prefix}-{self.made:03d}"

    @initialize(schedules=st.lists(new_schedules, max_size=3))
    def start_with_schedules(self, schedules: list[dict[str, Any]]) -> None:
        for fields in schedules:
            self.put_schedule(fields)

    @rule(fields=new_schedules)
    def put_schedule(self, fields: dict[str, Any]) -> None:
        fields = dict(fields)
        next_in = fields.pop("next_in")
        next_run_at = None if next_in is None else self.now + timedelta(microseconds=next_in)
        entry = Schedule(
            id=self.serial("schedule"), next_run_at=next_run_at, created_at=self.now, updated_at=self.now, **fields
        )
        before = self.memory.get_schedule(entry.name)
        stored = self.both(lambda s: s.put_schedule(entry))
        assert stored is not None
        self.next_run_ats += [t for t in (next_run_at, stored.next_run_at) if t is not None]
        kept = before is not None and stored.next_run_at != next_run_at
        event("put_schedule", "created" if before is None else "updated, next_run_at kept" if kept else "updated")

    @rule(name=st.sampled_from(SCHEDULE_NAMES))
    def remove_schedule(self, name: str) -> None:
        event("remove_schedule", str(self.both(lambda s: s.remove_schedule(name))))

    @rule()
    def due_schedules(self) -> None:
        due = self.both(lambda s: s.due_schedules(self.now))
        event("due_schedules", len(due or []))

    @rule(data=st.data(), name=st.sampled_from(SCHEDULE_NAMES), which=st.sampled_from(EXPECTED), next_in=micros)
    def fire_schedule(self, data: st.DataObject, name: str, which: str, next_in: int) -> None:
        """Fire with the schedule's own next_run_at, one it had before (or another one's), or a made-up time."""
        current = self.memory.get_schedule(name)
        if which == "current" and current is not None and current.next_run_at is not None:
            expected = current.next_run_at
        elif which == "stale" and self.next_run_ats:
            expected = data.draw(st.sampled_from(self.next_run_ats), label="stale expected")
        else:
            which, expected = "made up", self.now - timedelta(microseconds=1)
        self.fire(name, expected, next_in, which)

    @precondition(lambda self: self.memory.due_schedules(self.now))
    @rule(data=st.data(), next_in=micros)
    def fire_a_due_schedule(self, data: st.DataObject, next_in: int) -> None:
        """What a worker does: fire a schedule that due_schedules returned, with the next_run_at it read."""
        entry = data.draw(st.sampled_from(self.memory.due_schedules(self.now)), label="due schedule")
        assert entry.next_run_at is not None
        self.fire(entry.name, entry.next_run_at, next_in, "due")

    def fire(self, name: str, expected: datetime, next_in: int, which: str) -> None:
        job = JobRecord(
            id=self.serial("cron-job"),
            job_name=NAMES[self.made % len(NAMES)],
            params="{}",
            status=JobStatus.PENDING,
            scheduled_for=self.now,
            created_at=self.now,
            updated_at=self.now,
            correlation_id=f"cron:{name}@{expected.isoformat()}",
        )
        next_run_at = self.now + timedelta(microseconds=next_in + 1)
        fired = self.both(
            lambda s: s.fire_schedule(name, expected=expected, fire_time=expected, next_run_at=next_run_at, job=job)
        )
        if fired:
            self.reference.fire(job)
            self.next_run_ats.append(next_run_at)
        event("fire_schedule", f"{which}: {'fired' if fired else 'refused'}")

    @precondition(lambda self: self.upcoming_fires())
    @rule()
    def advance_to_next_fire(self) -> None:
        """Move the clock exactly onto the earliest next_run_at ahead: due_schedules' boundary."""
        self.now = self.upcoming_fires()[0]

    def upcoming_fires(self) -> list[datetime]:
        return sorted(
            s.next_run_at
            for s in self.memory.list_schedules()
            if s.enabled and s.next_run_at is not None and s.next_run_at > self.now
        )

    # -- the clock ------------------------------------------------------------------
    @rule(step=micros)
    def advance(self, step: int) -> None:
        self.now += timedelta(microseconds=step)

    def lock_ends(self) -> list[datetime]:
        return sorted(
            j.worker_expires_at
            for j in self.memory.list_jobs(status=JobStatus.RUNNING, limit=10**6)
            if j.worker_expires_at is not None and j.worker_expires_at > self.now
        )

    @precondition(lambda self: self.lock_ends())
    @rule(data=st.data(), early=st.sampled_from((0, 1)))
    def reap_at_a_lock_end(self, data: st.DataObject, early: int) -> None:
        """Reset expired locks exactly at (or a microsecond before) a lock's end: the reaper's boundary."""
        self.now = data.draw(st.sampled_from(self.lock_ends()), label="lock end") - timedelta(microseconds=early)
        self.reset_expired()

    @precondition(lambda self: (due := self.memory.next_due()) is not None and due > self.now)
    @rule()
    def advance_to_next_due(self) -> None:
        due = self.memory.next_due()
        assert due is not None
        self.now = due

    @rule(queue=st.sampled_from((*QUEUES, "paused-before-any-job")), paused=st.booleans())
    def pause(self, queue: str, paused: bool) -> None:
        self.both(lambda s: s.pause(queue, paused, now=self.now), lambda r: r.pause(queue, paused, now=self.now))

    # -- reads ----------------------------------------------------------------------
    @rule(keys=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(UNIQUE_KEYS[2:])), max_size=3))
    def holders(self, keys: list[tuple[str, str]]) -> None:
        self.both(lambda s: s.holders(keys), lambda r: r.holders(keys))

    @rule(job_id=st.sampled_from(IDS))
    def attempts(self, job_id: str) -> None:
        timeline = self.both(lambda s: s.attempts(job_id), lambda r: r.attempts(job_id))
        event("attempts", ",".join(a.outcome for a in timeline or []) or "none")

    @rule()
    def queues(self) -> None:
        self.both(lambda s: s.queues(), lambda r: r.queues())

    @rule(names=name_filters, queues=st.sampled_from((None, ("emails",), ("default", "reports"), ())))
    def next_due(self, names: tuple[str, ...] | None, queues: tuple[str, ...] | None) -> None:
        self.both(lambda s: s.next_due(names, queues), lambda r: r.next_due(names, queues))

    @invariant()
    def jobs_follow_the_lifecycle(self) -> None:
        self.follows_the_lifecycle()

    @invariant()
    def same_jobs(self) -> None:
        memory = self.memory
        for other in self.stores[1:]:
            assert memory.list_jobs(limit=10**6) == other.list_jobs(limit=10**6)
            assert [memory.get(i) for i in IDS] == [other.get(i) for i in IDS]
            assert memory.counts() == other.counts()
            assert memory.next_due() == other.next_due()

    @invariant()
    def same_schedules(self) -> None:
        memory = self.memory
        for other in self.stores[1:]:
            assert memory.list_schedules() == other.list_schedules()
            assert [memory.get_schedule(n) for n in SCHEDULE_NAMES] == [other.get_schedule(n) for n in SCHEDULE_NAMES]


SETTINGS = settings(settings.get_profile(PROFILE), deadline=None)
TestStoresAgree = StoresAgree.TestCase
TestStoresAgree.settings = SETTINGS


def test_stores_agree_with_postgres(pg_dsn: str) -> None:
    """The same machine with a PostgresStore (a fresh schema of the run's database) beside the other two."""
    run_state_machine_as_test(lambda: StoresAgree(pg_dsn), settings=SETTINGS)
