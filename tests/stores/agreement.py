"""What the stores-agree state machines share: the stores side by side, the lifecycle as their reference.

Each rule calls every store the same way (:meth:`SideBySide.both`) and, where the call
changes jobs, hands the same call to the :class:`Reference` (jobkit.lifecycle over a
dict): every store must answer as the reference does and, after every step, hold the
very records it holds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

import jobkit
from jobkit.model import JobRecord, JobStatus, Lease, LeaseMark
from jobkit.store import Store
from tests.pg import drop_store, schema_store
from tests.stores.reference import Reference
from tests.support import T0

T = TypeVar("T")
MICROSECOND = timedelta(microseconds=1)


class SideBySide(RuleBasedStateMachine):
    """A MemoryStore, a SqliteStore on a fresh file and (when the run has a PostgreSQL database) a
    PostgresStore in a fresh schema, driven by the same calls."""

    folder_prefix = "jobkit-agree-"

    def __init__(self, postgres: str | None = None) -> None:
        """*postgres*: the URL of a database to add a PostgresStore in (a fresh schema of it)."""
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix=self.folder_prefix))
        self.memory = jobkit.MemoryStore()
        self.sqlite = jobkit.SqliteStore(self.folder / "jobs.sqlite")
        self.postgres = schema_store(postgres) if postgres else None
        self.stores: tuple[Store, ...] = (self.memory, self.sqlite, *([self.postgres] if self.postgres else []))
        self.now: datetime = T0
        self.tokens = 0
        self.leases: list[Lease] = []
        self.marks: list[LeaseMark] = []  # every lease mark read so far: many stale by now
        self.reference = Reference()

    def teardown(self) -> None:
        self.sqlite.close()
        if self.postgres is not None:
            drop_store(self.postgres)
        shutil.rmtree(self.folder, ignore_errors=True)

    def both(self, call: Callable[[Store], T], expect: Callable[[Reference], Any] | None = None) -> T | None:
        """Call every store; they must return equal values or raise the same type of error.

        With *expect*, the same call on the reference: when the stores answer, they must
        answer as it does (and it changes its records as they must have).
        """
        outcomes: list[tuple[str, Any]] = []
        for store in self.stores:
            try:
                outcomes.append(("returned", call(store)))
            except Exception as exc:
                outcomes.append(("raised", type(exc)))
        memory = outcomes[0]
        for store, outcome in zip(self.stores[1:], outcomes[1:], strict=True):
            assert outcome == memory, f"MemoryStore {memory} but {type(store).__name__} {outcome}"
        if memory[0] != "returned":
            return None
        if expect is not None:
            expected = expect(self.reference)
            assert memory[1] == expected, f"the stores answered {memory[1]} but the lifecycle says {expected}"
        return memory[1]  # type: ignore[no-any-return]

    def follows_the_lifecycle(self) -> None:
        """Every store holds exactly the records the reference holds."""
        expected = sorted(self.reference.jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)
        for store in self.stores:
            assert store.list_jobs(limit=10**6) == expected, f"{store!r} left other jobs than the lifecycle"

    # -- watching leases: the rules every machine shares ------------------------------
    @rule()
    def watch_leases(self) -> None:
        """Every store lists the running jobs' leases (token, expiry, last write) as the lifecycle does."""
        marks = self.both(lambda s: s.leases(), lambda r: r.leases())
        self.marks.extend(marks or [])
        event("leases", len(marks or []))

    @precondition(lambda self: self.marks)
    @rule(data=st.data())
    def reset_unrenewed(self, data: st.DataObject) -> None:
        """Reset by marks as they stand, read earlier (many renewed, finished or claimed again since), or made up."""
        seen = st.sampled_from(self.marks)
        other_token = seen.map(lambda m: attrs.evolve(m, token=f"{m.token}-other"))
        other_expiry = seen.map(lambda m: attrs.evolve(m, expires_at=(m.expires_at or self.now) + MICROSECOND))
        choices = [seen, other_token, other_expiry]
        if current := self.memory.leases():  # as if nothing changed since the reaper looked
            choices[:0] = [st.sampled_from(current)] * 3
        marks = data.draw(st.lists(st.one_of(choices), max_size=4), label="marks")
        report = self.both(
            lambda s: s.reset_unrenewed(marks, now=self.now), lambda r: r.reset_unrenewed(marks, now=self.now)
        )
        assert report is not None
        event("reset_unrenewed", f"reset {len(report.retried) + len(report.failed) + len(report.cancelled)}")

    # -- reading and deleting: the rules every machine shares -------------------------
    def jobs_now(self) -> list[JobRecord]:
        return self.memory.list_jobs(limit=10**6)

    def around(self, times: list[datetime]) -> st.SearchStrategy[datetime]:
        """One of *times*, or a microsecond either side of one; or now when there are none."""
        if not times:
            return st.just(self.now)
        return st.tuples(st.sampled_from(times), st.sampled_from((-1, 0, 0, 1))).map(
            lambda t: t[0] + t[1] * MICROSECOND
        )

    def texts(self, jobs: list[JobRecord]) -> st.SearchStrategy[str]:
        """A piece of some job's params or error, often in other case (non-ASCII letters too); or a text
        no job holds, a wildcard of LIKE, or the empty text every store refuses."""
        held = sorted({t for j in jobs for t in (j.params, j.error) if t})
        odd = st.sampled_from(("", "%", "_", "%_", "A", "ü", "Ü", "nothing here", "\\", '"'))
        if not held:
            return odd
        pieces = st.sampled_from(held).flatmap(
            lambda t: st.tuples(st.integers(0, len(t) - 1), st.integers(1, 5)).map(lambda c: t[c[0] : c[0] + c[1]])
        )
        return st.one_of(pieces, pieces.map(str.swapcase), pieces.map(str.upper), odd)

    @rule(data=st.data(), limit=st.integers(min_value=-1, max_value=6))
    def list_jobs(self, data: st.DataObject, limit: int) -> None:
        """A listing with any mix of filters (each given one time in three), a cursor and a limit: every
        store lists what the reference keeps."""
        jobs = self.jobs_now()

        def maybe(given: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
            return st.one_of(st.none(), st.none(), given)

        def one_of(values: set[Any]) -> st.SearchStrategy[Any]:
            return maybe(st.sampled_from(sorted(values)))

        created = sorted({j.created_at for j in jobs})
        cursors = [(j.created_at, j.id) for j in jobs] + [(j.created_at, f"{j.id}~") for j in jobs]
        options = {
            "status": maybe(st.sampled_from(JobStatus)),
            "name": one_of({j.job_name for j in jobs} | {"no:such"}),
            "correlation_id": one_of({j.correlation_id for j in jobs if j.correlation_id} | {"c"}),
            "queue": one_of({j.queue for j in jobs} | {"nowhere"}),
            "text": maybe(self.texts(jobs)),
            "created_from": maybe(self.around(created)),
            "created_until": maybe(self.around(created)),
            "after": maybe(st.sampled_from(cursors)) if cursors else st.none(),
        }
        filters = {name: data.draw(given, label=name) for name, given in options.items()}
        listed = self.both(lambda s: s.list_jobs(**filters, limit=limit), lambda r: r.list_jobs(**filters, limit=limit))
        given = sorted(name for name, value in filters.items() if value is not None)
        shown = "refused" if listed is None else "none listed" if not listed else "some listed"
        event("list_jobs", f"{len(given)} filters: {shown}")
        if "text" in given:
            event("list_jobs by text", shown)

    @rule(data=st.data(), limit=st.integers(min_value=-1, max_value=4))
    def finished(self, data: st.DataObject, limit: int) -> None:
        """Finished jobs in the order they ended, after a cursor (often a job's own), before a time."""
        ended = sorted((j.completed_at, j.id) for j in self.jobs_now() if j.completed_at is not None)
        until = data.draw(self.around([t for t, _ in ended] + [self.now]), label="until")
        cursors = st.sampled_from(ended) | st.sampled_from(ended).map(lambda c: (c[0], f"{c[1]}~")) if ended else None
        after = data.draw(st.none() | cursors if cursors is not None else st.none(), label="after")
        found = self.both(
            lambda s: s.finished(after=after, until=until, limit=limit),
            lambda r: r.finished(after=after, until=until, limit=limit),
        )
        event("finished", "refused" if found is None else min(len(found), 3))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        """Delete by id: mostly finished jobs, among unfinished and unknown ones; now and then a bare id (refused)."""
        jobs = self.jobs_now()
        ended = [j.id for j in jobs if j.status.finished]
        choices = [st.sampled_from([j.id for j in jobs] or ["job-unknown"]), st.just("job-unknown")]
        if ended:
            choices[:0] = [st.sampled_from(ended)] * 2
        lists = st.lists(st.one_of(choices), max_size=4)
        ids: Any = data.draw(st.one_of(lists, lists, lists, lists, lists, st.one_of(choices)), label="job ids")
        deleted = self.both(lambda s: s.delete(ids), lambda r: r.delete(ids))
        event("delete", "refused" if deleted is None else len(deleted))
